#include "app/campaigns/send_window.h"

#include <fmt/format.h>

#include <algorithm>
#include <regex>
#include <stdexcept>

namespace mailer::app {
namespace {

constexpr int kMinutesPerDay = 24 * 60;

int to_int(std::string_view digits) {
  int v = 0;
  for (char c : digits) v = v * 10 + (c - '0');
  return v;
}

}  // namespace

std::optional<int> parse_clock_minutes(std::string_view text) {
  if (text.size() != 5 || text[2] != ':') return std::nullopt;
  for (int i : {0, 1, 3, 4}) {
    if (text[i] < '0' || text[i] > '9') return std::nullopt;
  }
  const int h = to_int(text.substr(0, 2)), m = to_int(text.substr(3, 2));
  if (h > 23 || m > 59) return std::nullopt;
  return h * 60 + m;
}

std::string format_clock_minutes(int minutes) {
  return fmt::format("{:02}:{:02}", minutes / 60, minutes % 60);
}

const date::time_zone* find_zone(std::string_view name) {
  try {
    return date::locate_zone(name);
  } catch (const std::exception&) {
    throw std::invalid_argument(
        fmt::format("unknown time zone \"{}\" (expected an IANA name like Europe/Berlin)", name));
  }
}

SendWindow SendWindow::parse(std::string_view window, std::string_view zone) {
  const auto dash = window.find('-');
  std::optional<int> start, end;
  if (dash != std::string_view::npos) {
    start = parse_clock_minutes(window.substr(0, dash));
    end = parse_clock_minutes(window.substr(dash + 1));
  }
  if (!start || !end) {
    throw std::invalid_argument(
        fmt::format("expected HH:MM-HH:MM (e.g. 22:00-06:00), got \"{}\"", window));
  }
  if (*start == *end) {
    throw std::invalid_argument(
        fmt::format("window \"{}\" starts and ends at the same time; omit --window to send "
                    "around the clock",
                    window));
  }
  return SendWindow(*start, *end, find_zone(zone));
}

SendWindow::SendWindow(int start_minute, int end_minute, const date::time_zone* zone)
    : start_(start_minute), end_(end_minute), zone_(zone) {}

std::string SendWindow::text() const {
  return format_clock_minutes(start_) + "-" + format_clock_minutes(end_);
}

bool SendWindow::contains(SysTime t) const {
  const auto local = zone_->to_local(date::floor<std::chrono::seconds>(t));
  const auto day = date::floor<date::days>(local);
  const int minute =
      static_cast<int>(std::chrono::duration_cast<std::chrono::minutes>(local - day).count());
  if (start_ < end_) return minute >= start_ && minute < end_;
  return minute >= start_ || minute < end_;
}

SysTime SendWindow::next_edge(SysTime t, bool inside) const {
  if (contains(t) == inside) return t;
  // Candidates: the window's local start (or end) on the days around t, as
  // UTC instants. A local time skipped by a DST jump maps to the jump itself.
  const auto local = zone_->to_local(date::floor<std::chrono::seconds>(t));
  const auto day = date::floor<date::days>(local);
  const int minute = inside ? start_ : end_;
  std::optional<SysTime> best;
  for (int offset = -1; offset <= 2; ++offset) {
    const auto at = day + date::days(offset) + std::chrono::minutes(minute);
    // A repeated local time (clocks going back) is an edge both times.
    for (auto choice : {date::choose::earliest, date::choose::latest}) {
      const SysTime candidate = zone_->to_sys(at, choice);
      if (candidate < t || contains(candidate) != inside) continue;
      if (!best || candidate < *best) best = candidate;
    }
  }
  if (best) return *best;
  // Unreachable for real zones (a window edge occurs every day); stay safe.
  return t + std::chrono::minutes(1);
}

SysTime SendWindow::next_open(SysTime t) const {
  return next_edge(t, true);
}

SysTime SendWindow::next_close(SysTime t) const {
  return next_edge(t, false);
}

SysTime parse_start_time(std::string_view text, const date::time_zone* zone) {
  static const std::regex kIso(
      R"(^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2}))?(Z|z|[+-]\d{2}:?\d{2})?$)");
  std::cmatch m;
  if (!std::regex_match(text.begin(), text.end(), m, kIso)) {
    throw std::invalid_argument(
        fmt::format("expected ISO 8601 like 2026-03-01T09:00:00+01:00, or local time like "
                    "2026-03-01T09:00 with --tz, got \"{}\"",
                    text));
  }
  const date::year_month_day ymd{date::year(std::stoi(m[1])),
                                 date::month(static_cast<unsigned>(std::stoi(m[2]))),
                                 date::day(static_cast<unsigned>(std::stoi(m[3])))};
  const int h = std::stoi(m[4]), min = std::stoi(m[5]), s = m[6].matched ? std::stoi(m[6]) : 0;
  if (!ymd.ok() || h > 23 || min > 59 || s > 59) {
    throw std::invalid_argument(fmt::format("\"{}\" is not a valid date and time", text));
  }
  const auto clock = std::chrono::hours(h) + std::chrono::minutes(min) + std::chrono::seconds(s);
  if (m[7].matched) {
    std::string off = m[7].str();
    std::chrono::minutes offset{0};
    if (off != "Z" && off != "z") {
      off.erase(std::remove(off.begin(), off.end(), ':'), off.end());
      const int oh = std::stoi(off.substr(1, 2)), om = std::stoi(off.substr(3, 2));
      offset = std::chrono::minutes(oh * 60 + om) * (off[0] == '-' ? -1 : 1);
    }
    return date::sys_days(ymd) + clock - offset;
  }
  const date::local_seconds local = date::local_days(ymd) + clock;
  const date::local_info info = zone->get_info(local);
  if (info.result == date::local_info::nonexistent) {
    throw std::invalid_argument(fmt::format(
        "\"{}\" does not exist in {} (skipped by a daylight saving change)", text, zone->name()));
  }
  return zone->to_sys(local, date::choose::earliest);
}

std::string format_utc(SysTime t) {
  return date::format("%FT%TZ", date::floor<std::chrono::seconds>(t));
}

}  // namespace mailer::app
