#include "throttle/duration.h"

#include <cmath>
#include <cstdint>
#include <limits>

namespace mailer::throttle {
namespace {

struct Unit {
  std::string_view suffix;
  std::int64_t millis;
};

// Longest suffix first so "ms" is not read as "m" followed by garbage.
constexpr Unit kUnits[] = {
    {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 3600 * 1000}, {"d", 86400 * 1000},
};

}  // namespace

std::optional<Duration> parse_duration(std::string_view text) {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 15) return std::nullopt;
  std::string_view suffix = text.substr(digits);
  std::int64_t value = 0;
  for (std::size_t i = 0; i < digits; ++i) value = value * 10 + (text[i] - '0');
  for (const Unit& unit : kUnits) {
    if (suffix != unit.suffix) continue;
    // Microseconds in an int64 last ~292000 years; refuse anything beyond.
    constexpr std::int64_t kMaxMillis = std::numeric_limits<std::int64_t>::max() / 1000;
    if (value > kMaxMillis / unit.millis) return std::nullopt;
    return std::chrono::milliseconds(value * unit.millis);
  }
  return std::nullopt;
}

std::string format_duration(Duration d) {
  std::int64_t millis = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  if (millis < 0) millis = 0;
  if (millis == 0) return "0s";
  for (int i = static_cast<int>(std::size(kUnits)) - 1; i >= 0; --i) {
    if (millis % kUnits[i].millis == 0) {
      return std::to_string(millis / kUnits[i].millis) + std::string(kUnits[i].suffix);
    }
  }
  return std::to_string(millis) + "ms";
}

Duration from_seconds(double seconds) {
  if (!(seconds > 0)) return Duration::zero();
  constexpr double kMaxSeconds = 1e12;  // ~31700 years: far beyond any configuration
  if (seconds > kMaxSeconds) seconds = kMaxSeconds;
  return Duration(static_cast<std::int64_t>(std::llround(seconds * 1e6)));
}

}  // namespace mailer::throttle
