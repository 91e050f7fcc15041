#include "throttle/aimd_controller.h"

#include <gtest/gtest.h>

#include <random>

namespace mailer::throttle {
namespace {

using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

const TimePoint t0 = TimePoint(seconds(1'700'000'000));

Classification signal(Signal s) {
  Classification c;
  c.signal = s;
  return c;
}

ProviderPolicy policy() {
  ProviderPolicy p;
  p.initial_rate = 50;
  p.min_rate = 5;
  p.max_rate = 400;
  p.max_connections = 8;
  return p;
}

// Feeds `n` accepted replies evenly over `over`, starting at `from`.
TimePoint accept_many(AimdController& c, int n, TimePoint from, Duration over) {
  for (int i = 0; i < n; ++i) {
    TimePoint t = from + over * i / n;
    c.on_reply(signal(Signal::kAccepted), t - milliseconds(80), t);
  }
  return from + over;
}

TEST(AimdController, SlowStartGrowsExponentiallyWhileClean) {
  AimdController c(policy(), t0);
  EXPECT_TRUE(c.in_slow_start());
  accept_many(c, 50, t0, seconds(1));
  EXPECT_NEAR(c.rate(), 50 + 50 * 0.25, 1e-9);
}

TEST(AimdController, IncreasesAdditivelyAfterTheFirstCut) {
  AimdController c(policy(), t0);
  TimePoint t = accept_many(c, 100, t0, seconds(2));
  EXPECT_EQ(c.on_reply(signal(Signal::kThrottle), t, t), Reaction::kDecreased);
  EXPECT_FALSE(c.in_slow_start());
  double cut = c.rate();
  accept_many(c, static_cast<int>(cut), t, seconds(1));
  // One second of clean replies at the full rate adds about increase_step.
  EXPECT_NEAR(c.rate(), cut + policy().increase_step, 0.1);
}

TEST(AimdController, DecreasesOncePerReactionWindow) {
  ProviderPolicy p = policy();
  p.slow_start_growth = 0;  // hold the rate at 50/s
  AimdController c(p, t0);
  TimePoint t = accept_many(c, 250, t0, seconds(5));
  ASSERT_EQ(c.on_reply(signal(Signal::kThrottle), t, t), Reaction::kDecreased);
  double after_first = c.rate();
  EXPECT_NEAR(after_first, 50 * 0.85, 1.0);
  // More deferrals inside the window, and deferrals of messages sent before
  // the cut, carry no news.
  EXPECT_EQ(c.on_reply(signal(Signal::kThrottle), t + milliseconds(10), t + milliseconds(500)),
            Reaction::kStale);
  EXPECT_EQ(c.on_reply(signal(Signal::kThrottle), t - milliseconds(1), t + seconds(2)),
            Reaction::kStale);
  EXPECT_EQ(c.rate(), after_first);
  TimePoint later = t + seconds(2);
  EXPECT_EQ(c.on_reply(signal(Signal::kThrottle), later - milliseconds(80), later),
            Reaction::kDecreased);
  EXPECT_LT(c.rate(), after_first);
}

TEST(AimdController, StaysBetweenFloorAndCeiling) {
  AimdController c(policy(), t0);
  TimePoint t = t0;
  for (int i = 0; i < 100; ++i) {
    t += seconds(2);
    c.on_reply(signal(Signal::kThrottle), t, t);
  }
  EXPECT_DOUBLE_EQ(c.rate(), policy().min_rate);
  AimdController up(policy(), t0);
  accept_many(up, 15000, t0, seconds(60));  // 250/s accepted: more than half the ceiling
  EXPECT_DOUBLE_EQ(up.rate(), policy().max_rate);
}

TEST(AimdController, DoesNotGrowARateItDoesNotUse) {
  AimdController c(policy(), t0);
  accept_many(c, 6000, t0, seconds(600));  // only 10 messages/s to send
  EXPECT_LT(c.rate(), 60);                 // started at 50: it must not climb towards the ceiling
}

TEST(AimdController, CutsToWhatTheProviderAcceptsAfterACapacityDrop) {
  ProviderPolicy p = policy();
  p.slow_start_growth = 0;
  AimdController c(p, t0);
  TimePoint t = accept_many(c, 250, t0, seconds(5));
  // The provider now takes 20/s while we send 50/s: two cuts at most per
  // window, and within a few windows the rate is below 20.
  for (int i = 0; i < 6 && c.rate() > 20; ++i) {
    t = accept_many(c, 20, t, seconds(1));
    c.on_reply(signal(Signal::kThrottle), t, t);
  }
  EXPECT_LT(c.rate(), 20);
  EXPECT_GE(c.rate(), 20 * 0.85 * 0.85);
}

TEST(AimdController, RecipientTempfailDoesNotSlowTheProvider) {
  AimdController c(policy(), t0);
  for (int i = 0; i < 1000; ++i) {
    TimePoint t = t0 + milliseconds(i * 10);
    EXPECT_EQ(c.on_reply(signal(Signal::kRecipientTempfail), t, t), Reaction::kNone);
    EXPECT_EQ(c.on_reply(signal(Signal::kTransient), t, t), Reaction::kNone);
    EXPECT_EQ(c.on_reply(signal(Signal::kHardBounce), t, t), Reaction::kNone);
  }
  EXPECT_DOUBLE_EQ(c.rate(), 50);
  EXPECT_FALSE(c.suspended());
}

TEST(AimdController, SuspendsAndRestartsCarefully) {
  AimdController c(policy(), t0);
  TimePoint t = t0 + seconds(10);
  accept_many(c, 500, t0, seconds(10));
  double before = c.rate();
  ASSERT_EQ(c.on_reply(signal(Signal::kSuspend), t, t), Reaction::kSuspended);
  EXPECT_TRUE(c.suspended());
  EXPECT_EQ(c.sending_rate(), 0);
  EXPECT_EQ(c.suspended_until(), t + policy().suspend_for);
  EXPECT_EQ(c.phase(), ControllerPhase::kSuspended);
  // Replies to messages already in flight neither extend nor lift it.
  EXPECT_EQ(c.on_reply(signal(Signal::kSuspend), t - milliseconds(5), t + seconds(1)),
            Reaction::kStale);
  c.advance(t + policy().suspend_for - seconds(1));
  EXPECT_TRUE(c.suspended());
  c.advance(t + policy().suspend_for);
  EXPECT_FALSE(c.suspended());
  EXPECT_NEAR(c.rate(), before * policy().restart_factor, 1e-9);
  EXPECT_FALSE(c.in_slow_start());
  EXPECT_EQ(c.phase(), ControllerPhase::kBackoff);
}

TEST(AimdController, OperatorSuspendDurationWins) {
  AimdController c(policy(), t0);
  Classification s = signal(Signal::kSuspend);
  s.suspend_for = minutes(30);
  c.on_reply(s, t0, t0);
  EXPECT_EQ(c.suspended_until(), t0 + minutes(30));
}

TEST(AimdController, AuthPolicyDoesNotHammer) {
  AimdController c(policy(), t0);
  EXPECT_EQ(c.on_reply(signal(Signal::kAuthPolicy), t0, t0), Reaction::kSuspended);
  EXPECT_EQ(c.sending_rate(), 0);
  EXPECT_EQ(c.suspended_until(), t0 + policy().auth_pause);
  EXPECT_EQ(c.state().suspend_reason, "auth_policy");
  AimdController b(policy(), t0);
  b.on_reply(signal(Signal::kBlock), t0, t0);
  EXPECT_EQ(b.suspended_until(), t0 + policy().block_pause);
}

TEST(AimdController, ConnectionComplaintsHalveTheConnectionLimit) {
  AimdController c(policy(), t0);
  Classification rp003 = signal(Signal::kThrottle);
  rp003.connection_limit = true;
  TimePoint t = t0 + seconds(2);
  c.on_reply(rp003, t, t);
  EXPECT_EQ(c.connections(), 4);
  c.on_reply(rp003, t, t + milliseconds(100));  // same window: no news
  EXPECT_EQ(c.connections(), 4);
  for (int i = 0; i < 5; ++i) {
    t += seconds(2);
    c.on_reply(rp003, t, t);
  }
  EXPECT_EQ(c.connections(), 1);
  // Clean periods give connections back one at a time.
  c.advance(t + policy().connection_recovery);
  EXPECT_EQ(c.connections(), 2);
}

TEST(AimdController, StateSurvivesARestart) {
  AimdController c(policy(), t0);
  accept_many(c, 2000, t0, seconds(20));
  TimePoint t = t0 + seconds(21);
  c.on_reply(signal(Signal::kThrottle), t, t);
  c.on_reply(signal(Signal::kSuspend), t, t + seconds(1));
  std::string saved = to_json(c.state());
  std::string error;
  auto restored = controller_state_from_json(saved, &error);
  ASSERT_TRUE(restored) << error;
  AimdController again(policy(), *restored, t + seconds(2));
  EXPECT_DOUBLE_EQ(again.rate(), c.rate());
  EXPECT_EQ(again.suspended_until(), c.suspended_until());
  EXPECT_EQ(again.connections(), c.connections());
  EXPECT_EQ(to_json(again.state()), saved);
}

TEST(AimdController, RestoredStateIsClampedIntoTheCurrentPolicy) {
  ControllerState s;
  s.rate = 10000;
  s.ssthresh = 10000;
  s.connections = 99;
  AimdController c(policy(), s, t0);
  EXPECT_DOUBLE_EQ(c.rate(), policy().max_rate);
  EXPECT_EQ(c.connections(), policy().max_connections);
}

TEST(AimdController, RejectsMalformedState) {
  std::string error;
  EXPECT_FALSE(controller_state_from_json("{not json", &error));
  EXPECT_EQ(error, "controller state: not a JSON object");
  EXPECT_FALSE(controller_state_from_json(R"({"rate":"fast"})", &error));
  EXPECT_EQ(error, "controller state: missing number \"rate\"");
}

TEST(AimdController, RateStaysWithinBoundsUnderRandomReplies) {
  std::mt19937 rng(42);
  const Signal signals[] = {Signal::kAccepted,          Signal::kThrottle,  Signal::kSuspend,
                            Signal::kRecipientTempfail, Signal::kTransient, Signal::kAuthPolicy,
                            Signal::kHardBounce,        Signal::kBlock};
  for (int run = 0; run < 20; ++run) {
    ProviderPolicy p = policy();
    p.suspend_for = seconds(30);
    p.auth_pause = seconds(30);
    p.block_pause = seconds(30);
    AimdController c(p, t0);
    TimePoint t = t0;
    for (int i = 0; i < 20000; ++i) {
      t += milliseconds(rng() % 50);
      // Mostly clean, some throttles, rare suspensions.
      unsigned roll = rng() % 1000;
      Signal s = roll < 900   ? Signal::kAccepted
                 : roll < 990 ? Signal::kThrottle
                              : signals[rng() % 8];
      c.on_reply(signal(s), t - milliseconds(rng() % 2000), t);
      ASSERT_GE(c.rate(), p.min_rate);
      ASSERT_LE(c.rate(), p.max_rate);
      ASSERT_GE(c.connections(), 1);
      ASSERT_LE(c.connections(), p.max_connections);
    }
  }
}

}  // namespace
}  // namespace mailer::throttle
