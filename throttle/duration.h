// Time as the throttle sees it: an injected clock's time points and the
// duration strings of configuration and scenario files ("500ms", "30s", "5m",
// "4h", "3d"). The throttle never reads a clock itself; every decision takes
// `now` from its caller.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace mailer::throttle {

// Microseconds: pacing at hundreds of messages per second needs sub-millisecond
// intervals without rounding the rate noticeably.
using Duration = std::chrono::microseconds;
// Wall-clock based so that persisted instants (a suspension's end) survive a
// restart; the simulator starts at the epoch.
using TimePoint = std::chrono::time_point<std::chrono::system_clock, Duration>;

// Parses one non-negative integer followed by a unit: ms, s, m, h, d.
// Returns nullopt for anything else (empty, sign, fraction, spaces, unknown
// unit, overflow). Never throws.
std::optional<Duration> parse_duration(std::string_view text);

// The largest unit that spells `d` exactly: 90s -> "90s", 7200s -> "2h",
// 1500ms -> "1500ms". parse_duration(format_duration(d)) == d for every
// non-negative whole number of milliseconds. Sub-millisecond parts are
// truncated.
std::string format_duration(Duration d);

// Seconds as a double, for rates and reports.
inline double to_seconds(Duration d) {
  return std::chrono::duration<double>(d).count();
}

// The duration closest to `seconds` (negative and NaN become zero).
Duration from_seconds(double seconds);

}  // namespace mailer::throttle
