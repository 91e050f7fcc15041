#include "app/duration.h"

#include <array>
#include <charconv>
#include <cstdint>

namespace mailer::app {
namespace {

struct Unit {
  std::string_view suffix;
  std::int64_t ms;
};
// Longest suffix first so "ms" is not read as "m".
constexpr std::array<Unit, 5> kUnits{
    {{"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}, {"d", 86'400'000}}};

}  // namespace

std::optional<Duration> parse_duration(std::string_view text) {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 15) return std::nullopt;
  std::int64_t value = 0;
  std::from_chars(text.data(), text.data() + digits, value);
  const std::string_view suffix = text.substr(digits);
  for (const Unit& u : kUnits) {
    if (suffix == u.suffix) return Duration(value * u.ms);
  }
  return std::nullopt;
}

std::string format_duration(Duration d) {
  const std::int64_t ms = d.count();
  for (auto it = kUnits.rbegin(); it != kUnits.rend(); ++it) {
    if (ms != 0 && ms % it->ms == 0) return std::to_string(ms / it->ms) + std::string(it->suffix);
  }
  return std::to_string(ms) + "ms";
}

}  // namespace mailer::app
