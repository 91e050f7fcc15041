#include "throttle/retry_schedule.h"

#include <gtest/gtest.h>

namespace mailer::throttle {
namespace {

using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;

const TimePoint t0 = TimePoint(seconds(1'700'000'000));
constexpr double kNoJitter = 0.5;  // the middle of the jitter range

TEST(RetrySchedule, BacksOffExponentiallyUpToTheCap) {
  RetrySchedule s;
  auto delay = [&](int attempt) {
    return s.next(Signal::kThrottle, attempt, t0, t0, std::nullopt, kNoJitter).at - t0;
  };
  EXPECT_EQ(delay(1), Duration(minutes(5)));
  EXPECT_EQ(delay(2), Duration(minutes(10)));
  EXPECT_EQ(delay(3), Duration(minutes(20)));
  EXPECT_EQ(delay(7), Duration(hours(4)));  // 320m capped
  EXPECT_EQ(delay(1000), Duration(hours(4)));
}

TEST(RetrySchedule, JitterSpreadsWithinBounds) {
  RetrySchedule s;
  auto low = s.next(Signal::kThrottle, 2, t0, t0, std::nullopt, 0.0).at - t0;
  auto high = s.next(Signal::kThrottle, 2, t0, t0, std::nullopt, 0.999).at - t0;
  EXPECT_EQ(low, Duration(minutes(8)));
  EXPECT_GT(high, Duration(minutes(11)));
  EXPECT_LE(high, Duration(minutes(12)));
  // Never below min_backoff, even with the lowest draw.
  EXPECT_EQ(s.next(Signal::kThrottle, 1, t0, t0, std::nullopt, 0.0).at - t0, Duration(minutes(5)));
}

TEST(RetrySchedule, ExpiresAfterMaxAge) {
  RetrySchedule s;
  TimePoint late = t0 + hours(71);
  RetryDecision last = s.next(Signal::kThrottle, 30, t0, late, std::nullopt, kNoJitter);
  EXPECT_EQ(last.kind, RetryDecision::Kind::kRetry);
  EXPECT_EQ(last.at, t0 + hours(72));  // the last try at the deadline
  EXPECT_EQ(s.next(Signal::kThrottle, 31, t0, t0 + hours(72), std::nullopt, kNoJitter).kind,
            RetryDecision::Kind::kExpired);
}

TEST(RetrySchedule, HonoursRetryHints) {
  RetrySchedule s;
  EXPECT_EQ(s.next(Signal::kThrottle, 1, t0, t0, minutes(17), kNoJitter).at, t0 + minutes(17));
  // Within bounds: a hint below min_backoff waits min_backoff.
  EXPECT_EQ(s.next(Signal::kThrottle, 1, t0, t0, seconds(10), kNoJitter).at, t0 + minutes(5));
}

TEST(RetrySchedule, UsesPerSignalSchedules) {
  RetryPolicy fast;
  fast.min_backoff = minutes(1);
  fast.max_backoff = minutes(30);
  RetrySchedule s(RetryPolicy{}, {{Signal::kRecipientTempfail, fast}});
  EXPECT_EQ(s.next(Signal::kRecipientTempfail, 1, t0, t0, std::nullopt, kNoJitter).at,
            t0 + minutes(1));
  EXPECT_EQ(s.next(Signal::kThrottle, 1, t0, t0, std::nullopt, kNoJitter).at, t0 + minutes(5));
}

TEST(RetrySchedule, NeverRetriesHardBounces) {
  RetrySchedule s;
  EXPECT_EQ(s.next(Signal::kHardBounce, 1, t0, t0, std::nullopt, 0.5).kind,
            RetryDecision::Kind::kFinal);
}

TEST(Policy, DefaultsAreValid) {
  EXPECT_TRUE(validate_provider_policy(ProviderPolicy{}, "providers.gmail").empty());
  EXPECT_TRUE(validate_retry_policy(RetryPolicy{}, "retry").empty());
}

TEST(Policy, NamesTheOffendingKey) {
  ProviderPolicy p;
  p.min_rate = 10;
  p.max_rate = 5;
  p.initial_rate = 7;
  p.decrease_factor = 1.5;
  auto errors = validate_provider_policy(p, "providers.gmail");
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0], "providers.gmail.max_rate must be >= min_rate (10)");
  EXPECT_EQ(errors[1], "providers.gmail.decrease_factor must lie strictly between 0 and 1");
  RetryPolicy r;
  r.max_backoff = minutes(1);
  EXPECT_EQ(validate_retry_policy(r, "retry"),
            std::vector<std::string>{"retry.max_backoff must be >= min_backoff"});
}

}  // namespace
}  // namespace mailer::throttle
