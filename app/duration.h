// Durations as configuration writes them: "500ms", "30s", "5m", "4h", "3d".
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace mailer::app {

using Duration = std::chrono::milliseconds;

// Parses one integer followed by a unit (ms, s, m, h, d). Returns nullopt for
// anything else (empty, negative, fractional, unknown unit, overflow).
std::optional<Duration> parse_duration(std::string_view text);

// The shortest exact spelling: 90000ms -> "90s", 7200000ms -> "2h".
std::string format_duration(Duration d);

}  // namespace mailer::app
