// The send-rate controller of one (provider, egress) key: slow start from the
// initial rate, additive increase while replies are clean, multiplicative
// decrease on a throttle signal at most once per reaction window, suspension
// on suspend / auth_policy / block signals with a careful restart, and a
// connection limit lowered on connection-count complaints. Pure: time comes in
// as arguments; not thread-safe (one owner per key).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "throttle/duration.h"
#include "throttle/policy.h"
#include "throttle/reply_classifier.h"

namespace mailer::throttle {

// Everything the controller learned; the caller persists it (to_json) so that
// a restarted worker resumes at the learned rate instead of bursting.
struct ControllerState {
  // Messages/s, within [min_rate, max_rate].
  double rate = 0;
  // Slow start runs while rate < ssthresh.
  double ssthresh = 0;
  int connections = 1;
  // When the rate was last cut (the epoch: never), and what it was before.
  TimePoint last_decrease{};
  double rate_before_decrease = 0;
  // Accepted replies per second, an exponentially decaying estimate with the
  // reaction window as time constant, as of estimate_at.
  double accepted_estimate = 0;
  TimePoint estimate_at{};
  // Set while suspended; the reason is a signal name (suspend, auth_policy, block).
  std::optional<TimePoint> suspended_until;
  TimePoint suspended_since{};
  std::string suspend_reason;
  double rate_before_suspend = 0;
  // Last change of the connection limit.
  TimePoint connections_changed{};
};

// JSON text of a state, and back. Parsing returns nullopt and sets *error on
// malformed input; it never throws.
std::string to_json(const ControllerState& state);
std::optional<ControllerState> controller_state_from_json(std::string_view text,
                                                          std::string* error = nullptr);

// What a reply did to the controller.
enum class Reaction {
  kNone,       // no rate change (recipient_tempfail, transient, hard_bounce, ...)
  kIncreased,  // clean reply: rate went up (slow start or additive increase)
  kDecreased,  // throttle: rate cut
  kStale,      // throttle inside the reaction window or for a message sent before the cut
  kSuspended,  // sending to this provider stopped (suspend, auth_policy, block)
};

// The provider state as `mailer status` shows it.
enum class ControllerPhase { kNormal, kBackoff, kSuspended };
std::string_view phase_name(ControllerPhase phase);  // normal, backoff, suspended

class AimdController {
 public:
  // Starts fresh: initial_rate, slow start, max_connections.
  AimdController(ProviderPolicy policy, TimePoint now);
  // Resumes a persisted state, clamped into the policy's floors and caps
  // (the configuration may have changed since it was saved).
  AimdController(ProviderPolicy policy, ControllerState state, TimePoint now);

  // Feeds one classified reply to a message sent at `sent_at`.
  Reaction on_reply(const Classification& reply, TimePoint sent_at, TimePoint now);

  // Ends a suspension whose time has come and restores connections after
  // clean periods. on_reply calls it; call it before reading the state when
  // no reply arrived for a while.
  void advance(TimePoint now);

  // The learned rate (kept during a suspension: the restart starts from it).
  double rate() const { return state_.rate; }
  // The rate to send at now: 0 while suspended.
  double sending_rate() const { return state_.suspended_until ? 0 : state_.rate; }
  bool suspended() const { return state_.suspended_until.has_value(); }
  std::optional<TimePoint> suspended_until() const { return state_.suspended_until; }
  bool in_slow_start() const { return state_.rate < state_.ssthresh; }
  int connections() const { return state_.connections; }
  ControllerPhase phase() const;
  const ControllerState& state() const { return state_; }
  const ProviderPolicy& policy() const { return policy_; }

 private:
  void observe(bool accepted, TimePoint now);
  Reaction increase(TimePoint now);
  Reaction decrease(const Classification& reply, TimePoint sent_at, TimePoint now);
  Reaction suspend(Duration how_long, std::string_view reason, TimePoint sent_at, TimePoint now);
  double clamp_rate(double rate) const;

  ProviderPolicy policy_;
  ControllerState state_;
};

}  // namespace mailer::throttle
