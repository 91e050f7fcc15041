// When a deferred message is tried again: exponential backoff with jitter
// between min_backoff and max_backoff, expiry after max_age, a separate
// schedule per signal when configured, and the reply's own "try again in N
// minutes" hint when it gives one. Pure: the caller passes the time and the
// jitter draw.
#pragma once

#include <map>
#include <optional>

#include "throttle/duration.h"
#include "throttle/policy.h"
#include "throttle/signal.h"

namespace mailer::throttle {

struct RetryDecision {
  enum class Kind {
    kRetry,    // try again at `at`
    kExpired,  // older than max_age: fail the delivery as an expired soft bounce
    kFinal,    // no retry makes sense (accepted, hard_bounce)
  };
  Kind kind = Kind::kRetry;
  TimePoint at{};
};

class RetrySchedule {
 public:
  // `per_signal` overrides `base` for the signals it names
  // ([retry.recipient_tempfail], [retry.throttle], ...).
  explicit RetrySchedule(RetryPolicy base = {}, std::map<Signal, RetryPolicy> per_signal = {});

  const RetryPolicy& policy_for(Signal signal) const;

  // After the `attempts`-th failed attempt (1 for the first) of a message
  // first tried at `first_attempt`: the delay is min_backoff * multiplier^
  // (attempts-1), spread by +/- jitter using `jitter_unit` (a uniform draw in
  // [0, 1) from the caller's random source), or the reply's `hint` when given;
  // either is kept within [min_backoff, max_backoff]. The last retry happens
  // at first_attempt + max_age; a failure at or after that expires.
  RetryDecision next(Signal signal, int attempts, TimePoint first_attempt, TimePoint now,
                     std::optional<Duration> hint, double jitter_unit) const;

 private:
  RetryPolicy base_;
  std::map<Signal, RetryPolicy> per_signal_;
};

}  // namespace mailer::throttle
