// The throttle's configuration values: how fast to send to one provider
// (ProviderPolicy) and when to retry a deferred message (RetryPolicy), each
// knob with its documented default, and pure validation functions that name
// the offending key ("providers.gmail.min_rate must be <= max_rate").
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "throttle/duration.h"
#include "throttle/signal.h"

namespace mailer::throttle {

// [providers.NAME]: the rate controller and pacer of one provider.
struct ProviderPolicy {
  // Messages/s a provider starts at when nothing was learned yet.
  double initial_rate = 20;
  // Floor: the controller never sends slower (except while suspended).
  double min_rate = 1;
  // Ceiling: the controller never sends faster.
  double max_rate = 2000;
  // Simultaneous SMTP connections to the provider at most.
  int max_connections = 20;
  // How long a suspend signal (Yahoo [TSS04]) stops this provider; an operator
  // rule may name its own duration.
  Duration suspend_for = std::chrono::hours(2);

  // Additive increase: messages/s gained per second of clean sending at the
  // full rate (each accepted reply adds increase_step / rate). 2/s climbs
  // back the 15 % a cut takes from a 300/s provider in about 20 s while keeping
  // the overshoot past a provider's limit to a few messages.
  double increase_step = 2;
  // Multiplicative decrease: the rate is multiplied by this on a throttle
  // signal. 0.85 keeps the average of the sawtooth near 92 % of the limit.
  double decrease_factor = 0.85;
  // At most one decrease per window; replies to messages sent before the last
  // cut carry no news either (TCP cuts once per round trip for the same reason).
  // Also the time constant of the accepted-rate estimate.
  Duration reaction_window = std::chrono::seconds(1);
  // Slow start: each accepted reply adds this many messages/s, so the rate
  // grows by a factor e^0.25 (28 %) per second while replies are clean: from
  // 10 % to 90 % of a provider's capacity in under 10 s.
  double slow_start_growth = 0.25;
  // Slow start ends at this rate (or at the first throttle signal); 0 means
  // max_rate, i.e. only a throttle signal ends it.
  double slow_start_threshold = 0;
  // After a suspension the rate restarts at this fraction of the rate before
  // it, in additive increase: the provider just said we were too much.
  double restart_factor = 0.5;
  // An auth_policy signal (SPF, DKIM, TLS) stops the provider this long: every
  // further message would get the same answer until an operator fixes the setup.
  Duration auth_pause = std::chrono::minutes(10);
  // A block signal (blocklist, reputation) stops the provider this long.
  Duration block_pause = std::chrono::hours(6);
  // Clean sending time after which one connection taken away by a
  // connection-count complaint is given back.
  Duration connection_recovery = std::chrono::minutes(5);
  // Pacer burst: messages that may go back to back after an idle period.
  double burst = 5;
};

// [retry] (and [retry.SIGNAL] overrides): when a deferred message is retried.
struct RetryPolicy {
  // First retry delay; grows by `multiplier` per attempt.
  Duration min_backoff = std::chrono::minutes(5);
  // Longest delay between two attempts.
  Duration max_backoff = std::chrono::hours(4);
  // A message still deferred this long after its first attempt fails (expired).
  Duration max_age = std::chrono::hours(72);
  // Growth of the delay per attempt.
  double multiplier = 2;
  // Each delay is spread by up to +/- this fraction so that retries of one
  // batch do not arrive together.
  double jitter = 0.2;
};

// One problem with one knob: key "max_rate", message "must be >= min_rate (10)".
struct PolicyError {
  std::string key;
  std::string message;
};

// The problems of a policy, empty when it is usable (configuration readers
// attach file and line to the key).
std::vector<PolicyError> check_provider_policy(const ProviderPolicy& policy);
std::vector<PolicyError> check_retry_policy(const RetryPolicy& policy);

// The same as sentences naming the key under `prefix`:
// "providers.gmail.max_rate must be >= min_rate (10)".
std::vector<std::string> validate_provider_policy(const ProviderPolicy& policy,
                                                  std::string_view prefix);
std::vector<std::string> validate_retry_policy(const RetryPolicy& policy, std::string_view prefix);

}  // namespace mailer::throttle
