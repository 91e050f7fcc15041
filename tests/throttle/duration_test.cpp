#include "throttle/duration.h"

#include <gtest/gtest.h>

namespace mailer::throttle {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

TEST(Duration, ParsesEveryUnit) {
  EXPECT_EQ(parse_duration("500ms"), Duration(milliseconds(500)));
  EXPECT_EQ(parse_duration("30s"), Duration(seconds(30)));
  EXPECT_EQ(parse_duration("5m"), Duration(minutes(5)));
  EXPECT_EQ(parse_duration("4h"), Duration(hours(4)));
  EXPECT_EQ(parse_duration("3d"), Duration(hours(72)));
  EXPECT_EQ(parse_duration("0s"), Duration::zero());
}

TEST(Duration, RejectsMalformedText) {
  for (const char* bad : {"", "s", "5", "-5s", "+5s", "1.5s", "5 s", " 5s", "5s ", "5sec", "5M",
                          "5w", "99999999999999999d", "1000000000000000ms"}) {
    EXPECT_EQ(parse_duration(bad), std::nullopt) << bad;
  }
}

TEST(Duration, PrintsLargestExactUnit) {
  EXPECT_EQ(format_duration(milliseconds(500)), "500ms");
  EXPECT_EQ(format_duration(milliseconds(1500)), "1500ms");
  EXPECT_EQ(format_duration(seconds(90)), "90s");
  EXPECT_EQ(format_duration(seconds(7200)), "2h");
  EXPECT_EQ(format_duration(hours(72)), "3d");
  EXPECT_EQ(format_duration(Duration::zero()), "0s");
}

TEST(Duration, RoundTripsThroughText) {
  for (const char* text : {"500ms", "30s", "5m", "4h", "3d", "1ms", "61s", "25h", "1500ms"}) {
    auto parsed = parse_duration(text);
    ASSERT_TRUE(parsed) << text;
    EXPECT_EQ(format_duration(*parsed), text);
  }
  for (long ms : {1L, 999L, 1001L, 60000L, 86400000L, 123456789L}) {
    Duration d = milliseconds(ms);
    EXPECT_EQ(parse_duration(format_duration(d)), d) << ms;
  }
}

TEST(Duration, ConvertsSecondsBothWays) {
  EXPECT_DOUBLE_EQ(to_seconds(milliseconds(1500)), 1.5);
  EXPECT_EQ(from_seconds(0.25), Duration(milliseconds(250)));
  EXPECT_EQ(from_seconds(-3), Duration::zero());
}

}  // namespace
}  // namespace mailer::throttle
