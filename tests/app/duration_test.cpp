#include "app/duration.h"

#include <gtest/gtest.h>

namespace mailer::app {
namespace {

using namespace std::chrono_literals;

TEST(Duration, ParsesEveryUnit) {
  EXPECT_EQ(parse_duration("500ms"), Duration(500));
  EXPECT_EQ(parse_duration("30s"), Duration(30s));
  EXPECT_EQ(parse_duration("5m"), Duration(5min));
  EXPECT_EQ(parse_duration("4h"), Duration(4h));
  EXPECT_EQ(parse_duration("3d"), Duration(72h));
  EXPECT_EQ(parse_duration("0s"), Duration(0));
}

TEST(Duration, RejectsMalformedText) {
  for (const char* bad : {"", "5", "m", "-5m", "1.5h", "5 m", "5min", "5M", "99999999999999999d"}) {
    EXPECT_FALSE(parse_duration(bad).has_value()) << bad;
  }
}

TEST(Duration, FormatRoundTrips) {
  for (const char* text : {"500ms", "30s", "90s", "5m", "4h", "3d", "1500ms"}) {
    auto d = parse_duration(text);
    ASSERT_TRUE(d) << text;
    EXPECT_EQ(format_duration(*d), text);
  }
  EXPECT_EQ(format_duration(Duration(120000)), "2m");
}

}  // namespace
}  // namespace mailer::app
