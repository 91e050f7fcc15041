#include "throttle/pacer.h"

#include <gtest/gtest.h>

#include <random>

namespace mailer::throttle {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const TimePoint t0 = TimePoint(seconds(1'700'000'000));

TEST(Pacer, SpacesPermitsAtTheRate) {
  Pacer p(10, 1);
  EXPECT_TRUE(p.try_acquire(t0));
  EXPECT_FALSE(p.try_acquire(t0));
  EXPECT_EQ(p.next_permit(t0), t0 + milliseconds(100));
  EXPECT_TRUE(p.try_acquire(t0 + milliseconds(100)));
}

TEST(Pacer, AllowsASmallBurstAfterIdling) {
  Pacer p(10, 3);
  int granted = 0;
  while (p.try_acquire(t0)) ++granted;
  EXPECT_EQ(granted, 3);
  EXPECT_EQ(p.next_permit(t0), t0 + milliseconds(100));
}

TEST(Pacer, GivesNoPermitAtRateZero) {
  Pacer p(0, 3);
  EXPECT_EQ(p.next_permit(t0), std::nullopt);
  EXPECT_FALSE(p.try_acquire(t0));
}

TEST(Pacer, NeverExceedsRateTimesTimePlusBurst) {
  std::mt19937 rng(7);
  for (int run = 0; run < 50; ++run) {
    double rate = 1 + rng() % 500;
    double burst = 1 + rng() % 10;
    Pacer p(rate, burst);
    TimePoint t = t0;
    int granted = 0;
    for (int i = 0; i < 5000; ++i) {
      t += std::chrono::microseconds(rng() % 20000);
      if (p.try_acquire(t)) ++granted;
    }
    double allowed = rate * to_seconds(t - t0) + burst;
    EXPECT_LE(granted, allowed + 1e-6) << "rate " << rate << " burst " << burst;
  }
}

TEST(PermitQueue, OneProvidersBackoffNeverDelaysAnother) {
  PermitQueue q;
  q.set("gmail", Pacer(100, 1));
  q.set("yahoo", Pacer(100, 1));
  auto everyone = [](const std::string&) { return true; };
  // Yahoo's rate collapses; gmail's permits come exactly as before.
  q.find("yahoo")->set_rate(0.01);
  TimePoint t = t0;
  int gmail = 0;
  for (int i = 0; i < 1000; ++i) {
    auto next = q.next(t, everyone);
    ASSERT_TRUE(next);
    t = next->at;
    ASSERT_TRUE(q.acquire(next->provider, t));
    if (next->provider == "gmail") ++gmail;
  }
  EXPECT_GE(gmail, 998);
  EXPECT_NEAR(to_seconds(t - t0), 998 * 0.01, 0.05);
}

TEST(PermitQueue, SharesTiesRoundRobin) {
  PermitQueue q;
  for (const char* name : {"a", "b", "c"}) q.set(name, Pacer(10, 1));
  auto everyone = [](const std::string&) { return true; };
  std::string order;
  for (int i = 0; i < 6; ++i) {
    auto next = q.next(t0 + seconds(i / 3), everyone);
    ASSERT_TRUE(next);
    ASSERT_TRUE(q.acquire(next->provider, next->at));
    order += next->provider;
  }
  EXPECT_EQ(order, "abcabc");
  auto only_b = [](const std::string& p) { return p == "b"; };
  EXPECT_EQ(q.next(t0 + seconds(5), only_b)->provider, "b");
}

}  // namespace
}  // namespace mailer::throttle
