// Send windows and start times: midnight crossing, DST jumps in both
// directions, ISO 8601 and local --at times. Pure: no clock, no database.
#include <gtest/gtest.h>

#include "app/campaigns/send_window.h"

namespace mailer::app {
namespace {

SysTime utc(const std::string& text) {
  return parse_start_time(text, find_zone("UTC"));
}

TEST(SendWindow, DaytimeWindowContainsStartButNotEnd) {
  const SendWindow w = SendWindow::parse("09:00-17:00", "UTC");
  EXPECT_FALSE(w.contains(utc("2026-01-05T08:59:59Z")));
  EXPECT_TRUE(w.contains(utc("2026-01-05T09:00:00Z")));
  EXPECT_TRUE(w.contains(utc("2026-01-05T16:59:59Z")));
  EXPECT_FALSE(w.contains(utc("2026-01-05T17:00:00Z")));
  EXPECT_EQ(w.next_open(utc("2026-01-05T17:30:00Z")), utc("2026-01-06T09:00:00Z"));
  EXPECT_EQ(w.next_close(utc("2026-01-05T10:00:00Z")), utc("2026-01-05T17:00:00Z"));
  EXPECT_EQ(w.next_open(utc("2026-01-05T10:00:00Z")), utc("2026-01-05T10:00:00Z"));
}

TEST(SendWindow, WindowCrossingMidnightSpansTwoDates) {
  const SendWindow w = SendWindow::parse("22:00-06:00", "Europe/Berlin");  // UTC+1 in January
  EXPECT_TRUE(w.contains(utc("2026-01-05T21:30:00Z")));                    // 22:30 local
  EXPECT_TRUE(w.contains(utc("2026-01-05T23:30:00Z")));                    // 00:30 local, next day
  EXPECT_TRUE(w.contains(utc("2026-01-06T04:59:00Z")));                    // 05:59 local
  EXPECT_FALSE(w.contains(utc("2026-01-06T05:00:00Z")));                   // 06:00 local
  EXPECT_FALSE(w.contains(utc("2026-01-06T12:00:00Z")));
  EXPECT_EQ(w.next_close(utc("2026-01-05T23:30:00Z")), utc("2026-01-06T05:00:00Z"));
  EXPECT_EQ(w.next_open(utc("2026-01-06T12:00:00Z")), utc("2026-01-06T21:00:00Z"));
}

TEST(SendWindow, FollowsLocalTimeAcrossSpringForward) {
  // New York jumps 02:00 EST -> 03:00 EDT on 2026-03-08.
  const SendWindow w = SendWindow::parse("01:00-05:00", "America/New_York");
  // The day before: 01:00 EST = 06:00Z. The day after: 01:00 EDT = 05:00Z.
  EXPECT_EQ(w.next_open(utc("2026-03-07T12:00:00Z")), utc("2026-03-08T06:00:00Z"));
  EXPECT_EQ(w.next_close(utc("2026-03-08T06:00:00Z")), utc("2026-03-08T09:00:00Z"));  // 05:00 EDT
  EXPECT_EQ(w.next_open(utc("2026-03-08T12:00:00Z")), utc("2026-03-09T05:00:00Z"));
  // Three real hours of sending that night instead of four: the wall clock rules.
}

TEST(SendWindow, WindowStartingInsideTheSkippedHourOpensAtTheJump) {
  const SendWindow w = SendWindow::parse("02:30-04:00", "America/New_York");
  // 02:30 does not exist on 2026-03-08; the window opens at 03:00 EDT = 07:00Z.
  const SysTime open = w.next_open(utc("2026-03-08T00:00:00Z"));
  EXPECT_EQ(open, utc("2026-03-08T07:00:00Z"));
  EXPECT_TRUE(w.contains(open));
  EXPECT_EQ(w.next_close(open), utc("2026-03-08T08:00:00Z"));
}

TEST(SendWindow, RepeatedHourAtFallBackIsInsideBothTimes) {
  // Berlin goes back 03:00 CEST -> 02:00 CET on 2026-10-25.
  const SendWindow w = SendWindow::parse("02:00-02:30", "Europe/Berlin");
  EXPECT_TRUE(w.contains(utc("2026-10-25T00:15:00Z")));   // 02:15 CEST
  EXPECT_FALSE(w.contains(utc("2026-10-25T00:45:00Z")));  // 02:45 CEST
  EXPECT_TRUE(w.contains(utc("2026-10-25T01:15:00Z")));   // 02:15 CET
  EXPECT_EQ(w.next_open(utc("2026-10-25T00:45:00Z")), utc("2026-10-25T01:00:00Z"));
}

TEST(SendWindow, RejectsMalformedWindowsAndZones) {
  EXPECT_THROW(SendWindow::parse("9-17", "UTC"), std::invalid_argument);
  EXPECT_THROW(SendWindow::parse("24:00-06:00", "UTC"), std::invalid_argument);
  EXPECT_THROW(SendWindow::parse("10:00-10:00", "UTC"), std::invalid_argument);
  try {
    SendWindow::parse("09:00-17:00", "Mars/Olympus");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("Mars/Olympus"), std::string::npos);
  }
}

TEST(StartTime, ParsesOffsetsZuluAndLocalTimeInAZone) {
  EXPECT_EQ(utc("2026-03-01T09:00:00+01:00"), utc("2026-03-01T08:00:00Z"));
  EXPECT_EQ(utc("2026-03-01T09:00-0530"), utc("2026-03-01T14:30:00Z"));
  EXPECT_EQ(utc("2026-03-01 09:00"), utc("2026-03-01T09:00:00Z"));
  const auto* paris = find_zone("Europe/Paris");
  EXPECT_EQ(parse_start_time("2026-07-01T09:00", paris), utc("2026-07-01T07:00:00Z"));
  EXPECT_EQ(parse_start_time("2026-01-01T09:00", paris), utc("2026-01-01T08:00:00Z"));
  // An offset wins over the zone.
  EXPECT_EQ(parse_start_time("2026-07-01T09:00Z", paris), utc("2026-07-01T09:00:00Z"));
}

TEST(StartTime, RejectsTimesSkippedByDstAndMalformedInput) {
  const auto* ny = find_zone("America/New_York");
  EXPECT_THROW(parse_start_time("2026-03-08T02:30", ny), std::invalid_argument);
  // The repeated hour at fall back takes its first occurrence (EDT).
  EXPECT_EQ(parse_start_time("2026-11-01T01:30", ny), utc("2026-11-01T05:30:00Z"));
  EXPECT_THROW(utc("tomorrow"), std::invalid_argument);
  EXPECT_THROW(utc("2026-02-30T09:00Z"), std::invalid_argument);
  EXPECT_THROW(utc("2026-02-01T25:00Z"), std::invalid_argument);
}

}  // namespace
}  // namespace mailer::app
