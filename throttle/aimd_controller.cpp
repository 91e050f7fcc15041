#include "throttle/aimd_controller.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

namespace mailer::throttle {
namespace {

// Increases stop while the rate is more than this many times what is being
// accepted: the sender is not using its rate (small backlog), so clean replies
// say nothing about a higher one.
constexpr double kUnusedRateRatio = 2.0;
// A connection-count complaint halves the connection limit: the provider
// names no number, and halving finds any limit in a few steps.
constexpr double kConnectionCut = 0.5;

double slow_start_end(const ProviderPolicy& p) {
  return p.slow_start_threshold > 0 ? std::min(p.slow_start_threshold, p.max_rate) : p.max_rate;
}

std::int64_t micros(TimePoint t) {
  return t.time_since_epoch().count();
}
TimePoint from_micros(std::int64_t v) {
  return TimePoint(Duration(v));
}

}  // namespace

std::string_view phase_name(ControllerPhase phase) {
  switch (phase) {
    case ControllerPhase::kNormal:
      return "normal";
    case ControllerPhase::kBackoff:
      return "backoff";
    case ControllerPhase::kSuspended:
      return "suspended";
  }
  return "normal";
}

AimdController::AimdController(ProviderPolicy policy, TimePoint now) : policy_(std::move(policy)) {
  state_.rate = clamp_rate(policy_.initial_rate);
  state_.ssthresh = slow_start_end(policy_);
  state_.connections = std::max(1, policy_.max_connections);
  // Assume the first replies will come at the rate we start with, so that the
  // first cut has a sensible basis.
  state_.accepted_estimate = state_.rate;
  state_.estimate_at = now;
  state_.connections_changed = now;
}

AimdController::AimdController(ProviderPolicy policy, ControllerState state, TimePoint now)
    : policy_(std::move(policy)), state_(std::move(state)) {
  state_.rate = clamp_rate(std::isfinite(state_.rate) ? state_.rate : policy_.initial_rate);
  if (!std::isfinite(state_.ssthresh) || state_.ssthresh <= 0) state_.ssthresh = state_.rate;
  state_.ssthresh = std::min(state_.ssthresh, slow_start_end(policy_));
  state_.connections = std::clamp(state_.connections, 1, std::max(1, policy_.max_connections));
  if (!std::isfinite(state_.accepted_estimate) || state_.accepted_estimate < 0 ||
      state_.estimate_at > now) {
    state_.accepted_estimate = state_.rate;
    state_.estimate_at = now;
  }
  advance(now);
}

double AimdController::clamp_rate(double rate) const {
  return std::clamp(rate, policy_.min_rate, std::max(policy_.min_rate, policy_.max_rate));
}

ControllerPhase AimdController::phase() const {
  if (state_.suspended_until) return ControllerPhase::kSuspended;
  if (state_.rate < state_.rate_before_decrease) return ControllerPhase::kBackoff;
  return ControllerPhase::kNormal;
}

void AimdController::observe(bool accepted, TimePoint now) {
  if (now > state_.estimate_at) {
    double tau = to_seconds(policy_.reaction_window);
    state_.accepted_estimate *= std::exp(-to_seconds(now - state_.estimate_at) / tau);
    state_.estimate_at = now;
  }
  if (accepted) state_.accepted_estimate += 1.0 / to_seconds(policy_.reaction_window);
}

void AimdController::advance(TimePoint now) {
  if (state_.suspended_until && now >= *state_.suspended_until) {
    // Careful restart: below the rate that got us suspended, no slow start.
    state_.rate = clamp_rate(state_.rate_before_suspend * policy_.restart_factor);
    state_.ssthresh = state_.rate;
    state_.rate_before_decrease = state_.rate_before_suspend;
    state_.last_decrease = now;
    state_.accepted_estimate = state_.rate;
    state_.estimate_at = now;
    state_.suspended_until.reset();
    state_.suspend_reason.clear();
  }
  if (!state_.suspended_until && state_.connections < policy_.max_connections &&
      now - state_.connections_changed >= policy_.connection_recovery) {
    ++state_.connections;
    state_.connections_changed = now;
  }
}

Reaction AimdController::on_reply(const Classification& reply, TimePoint sent_at, TimePoint now) {
  advance(now);
  switch (reply.signal) {
    case Signal::kAccepted:
      observe(true, now);
      return increase(now);
    case Signal::kThrottle:
      observe(false, now);
      return decrease(reply, sent_at, now);
    case Signal::kSuspend:
      return suspend(reply.suspend_for.value_or(policy_.suspend_for), "suspend", sent_at, now);
    case Signal::kAuthPolicy:
      return suspend(policy_.auth_pause, "auth_policy", sent_at, now);
    case Signal::kBlock:
      return suspend(policy_.block_pause, "block", sent_at, now);
    case Signal::kRecipientTempfail:
    case Signal::kTransient:
    case Signal::kHardBounce:
      return Reaction::kNone;
  }
  return Reaction::kNone;
}

Reaction AimdController::increase(TimePoint) {
  if (state_.suspended_until) return Reaction::kNone;
  if (state_.rate > kUnusedRateRatio * state_.accepted_estimate) return Reaction::kNone;
  double before = state_.rate;
  if (state_.rate < state_.ssthresh) {
    state_.rate = std::min(state_.rate + policy_.slow_start_growth, state_.ssthresh);
  } else {
    state_.rate += policy_.increase_step / state_.rate;
  }
  state_.rate = clamp_rate(state_.rate);
  return state_.rate > before ? Reaction::kIncreased : Reaction::kNone;
}

Reaction AimdController::decrease(const Classification& reply, TimePoint sent_at, TimePoint now) {
  if (state_.suspended_until) return Reaction::kStale;
  bool fresh =
      sent_at >= state_.last_decrease && now - state_.last_decrease >= policy_.reaction_window;
  if (reply.connection_limit && sent_at >= state_.connections_changed &&
      now - state_.connections_changed >= policy_.reaction_window) {
    int reduced = static_cast<int>(std::floor(state_.connections * kConnectionCut));
    state_.connections = std::max(1, reduced);
    state_.connections_changed = now;
  }
  if (!fresh) return Reaction::kStale;
  // Cut from what the provider actually accepts when that is clearly below
  // the sending rate (a capacity drop, an overshoot in slow start), but never
  // more than two ordinary cuts at once: the estimate is noisy at low rates.
  double f = policy_.decrease_factor;
  double basis = std::clamp(state_.accepted_estimate, state_.rate * f, state_.rate);
  state_.rate_before_decrease = state_.rate;
  state_.rate = clamp_rate(basis * f);
  state_.ssthresh = state_.rate;
  state_.last_decrease = now;
  return Reaction::kDecreased;
}

Reaction AimdController::suspend(Duration how_long, std::string_view reason, TimePoint sent_at,
                                 TimePoint now) {
  // Replies to messages sent before the current suspension began repeat it.
  if (state_.suspended_until && sent_at < state_.suspended_since) return Reaction::kStale;
  TimePoint until = now + how_long;
  if (!state_.suspended_until) {
    state_.rate_before_suspend = state_.rate;
    state_.suspended_since = now;
  }
  if (!state_.suspended_until || until > *state_.suspended_until) {
    state_.suspended_until = until;
    state_.suspend_reason = std::string(reason);
  }
  return Reaction::kSuspended;
}

std::string to_json(const ControllerState& s) {
  nlohmann::json j = {
      {"rate", s.rate},
      {"ssthresh", s.ssthresh},
      {"connections", s.connections},
      {"last_decrease_us", micros(s.last_decrease)},
      {"rate_before_decrease", s.rate_before_decrease},
      {"accepted_estimate", s.accepted_estimate},
      {"estimate_at_us", micros(s.estimate_at)},
      {"suspended_since_us", micros(s.suspended_since)},
      {"suspend_reason", s.suspend_reason},
      {"rate_before_suspend", s.rate_before_suspend},
      {"connections_changed_us", micros(s.connections_changed)},
  };
  j["suspended_until_us"] =
      s.suspended_until ? nlohmann::json(micros(*s.suspended_until)) : nlohmann::json(nullptr);
  return j.dump();
}

std::optional<ControllerState> controller_state_from_json(std::string_view text,
                                                          std::string* error) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  auto fail = [&](std::string message) -> std::optional<ControllerState> {
    if (error) *error = "controller state: " + std::move(message);
    return std::nullopt;
  };
  if (!j.is_object()) return fail("not a JSON object");
  ControllerState s;
  auto number = [&](const char* key, double& out) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number()) return false;
    out = it->get<double>();
    return true;
  };
  auto instant = [&](const char* key, TimePoint& out) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer()) return false;
    out = from_micros(it->get<std::int64_t>());
    return true;
  };
  double connections = 0;
  if (!number("rate", s.rate)) return fail("missing number \"rate\"");
  if (!number("ssthresh", s.ssthresh)) return fail("missing number \"ssthresh\"");
  if (!number("connections", connections)) return fail("missing number \"connections\"");
  s.connections = static_cast<int>(std::clamp(connections, 1.0, 1e6));
  if (!number("rate_before_decrease", s.rate_before_decrease) ||
      !number("accepted_estimate", s.accepted_estimate) ||
      !number("rate_before_suspend", s.rate_before_suspend)) {
    return fail("missing rate fields");
  }
  if (!instant("last_decrease_us", s.last_decrease) || !instant("estimate_at_us", s.estimate_at) ||
      !instant("suspended_since_us", s.suspended_since) ||
      !instant("connections_changed_us", s.connections_changed)) {
    return fail("missing time fields");
  }
  auto until = j.find("suspended_until_us");
  if (until != j.end() && until->is_number_integer()) {
    s.suspended_until = from_micros(until->get<std::int64_t>());
  }
  auto reason = j.find("suspend_reason");
  if (reason != j.end() && reason->is_string()) s.suspend_reason = reason->get<std::string>();
  return s;
}

}  // namespace mailer::throttle
