// A campaign's daily send window: local wall-clock times HH:MM-HH:MM in an
// IANA time zone, possibly crossing midnight (22:00-06:00). Membership is
// decided on the local time of day, so the window follows DST changes: on a
// day whose clocks jump forward into the window it opens at the jump, and an
// hour that repeats when clocks go back is inside the window both times.
#pragma once

#include <date/tz.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace mailer::app {

using SysTime = std::chrono::system_clock::time_point;

class SendWindow {
 public:
  // Parses "HH:MM-HH:MM" (00:00-23:59; start != end) and an IANA zone name.
  // Throws std::invalid_argument with a message naming the bad part.
  static SendWindow parse(std::string_view window, std::string_view zone);

  // Minutes after local midnight.
  SendWindow(int start_minute, int end_minute, const date::time_zone* zone);

  // True when `t` falls inside the window (start inclusive, end exclusive).
  bool contains(SysTime t) const;
  // The first instant at or after `t` inside the window.
  SysTime next_open(SysTime t) const;
  // The first instant at or after `t` outside the window.
  SysTime next_close(SysTime t) const;

  int start_minute() const { return start_; }
  int end_minute() const { return end_; }
  const date::time_zone* zone() const { return zone_; }
  // "HH:MM-HH:MM".
  std::string text() const;

 private:
  // The first instant >= t where contains() equals `inside`.
  SysTime next_edge(SysTime t, bool inside) const;

  int start_;
  int end_;
  const date::time_zone* zone_;
};

// "HH:MM" -> minutes after midnight; nullopt when malformed.
std::optional<int> parse_clock_minutes(std::string_view text);
// Minutes after midnight -> "HH:MM".
std::string format_clock_minutes(int minutes);

// The IANA zone `name`; throws std::invalid_argument naming it when unknown.
const date::time_zone* find_zone(std::string_view name);

// A campaign's --at: ISO 8601 "YYYY-MM-DDTHH:MM[:SS]" followed by "Z" or an
// offset ("+02:00", "+0200"), or without one as local time in `zone` (a time
// skipped by a DST jump is an error; a repeated one takes the first). A space
// may replace the "T". Throws std::invalid_argument naming the problem.
SysTime parse_start_time(std::string_view text, const date::time_zone* zone);

// "2026-03-01T09:00:00Z".
std::string format_utc(SysTime t);

}  // namespace mailer::app
