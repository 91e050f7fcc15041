#include "throttle/retry_schedule.h"

#include <algorithm>
#include <cmath>

namespace mailer::throttle {

RetrySchedule::RetrySchedule(RetryPolicy base, std::map<Signal, RetryPolicy> per_signal)
    : base_(base), per_signal_(std::move(per_signal)) {}

const RetryPolicy& RetrySchedule::policy_for(Signal signal) const {
  auto it = per_signal_.find(signal);
  return it == per_signal_.end() ? base_ : it->second;
}

RetryDecision RetrySchedule::next(Signal signal, int attempts, TimePoint first_attempt,
                                  TimePoint now, std::optional<Duration> hint,
                                  double jitter_unit) const {
  if (signal == Signal::kAccepted || signal == Signal::kHardBounce) {
    return {RetryDecision::Kind::kFinal, now};
  }
  const RetryPolicy& p = policy_for(signal);
  TimePoint deadline = first_attempt + p.max_age;
  if (now >= deadline) return {RetryDecision::Kind::kExpired, now};

  double min_s = to_seconds(p.min_backoff);
  double max_s = std::max(min_s, to_seconds(p.max_backoff));
  double delay_s = 0;
  if (hint) {
    delay_s = to_seconds(*hint);
  } else {
    // Exponent capped: beyond 2^64 the delay is long past any max_backoff.
    double exponent = std::clamp(attempts - 1, 0, 64);
    delay_s = min_s * std::pow(std::max(1.0, p.multiplier), exponent);
    double u = std::clamp(jitter_unit, 0.0, 1.0);
    delay_s *= 1.0 + p.jitter * (2.0 * u - 1.0);
  }
  delay_s = std::clamp(delay_s, min_s, max_s);
  TimePoint at = std::min(now + from_seconds(delay_s), deadline);
  return {RetryDecision::Kind::kRetry, at};
}

}  // namespace mailer::throttle
