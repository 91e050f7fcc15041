#include "app/http/dashboard_chart.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <utility>
#include <vector>

#include "sender/html_escape.h"

namespace mailer::app {
namespace {

// Room around the plot for the axis labels.
constexpr int kLeft = 56;
constexpr int kRight = 56;
constexpr int kTop = 14;
constexpr int kBottom = 30;

// "HH:MM" in UTC, or "MM-DD HH:MM" for charts longer than a day.
std::string time_label(db::SysTime t, bool with_date) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, with_date ? "%m-%d %H:%M" : "%H:%M", &tm);
  return buf;
}

std::string number_label(double v) {
  if (v >= 100 || v == std::floor(v)) return fmt::format("{:.0f}", v);
  return fmt::format("{:.1f}", v);
}

struct Plot {
  double x0, y0, w, h;  // plot area
  double t0, span;      // seconds since epoch at the left edge, seconds shown
  double x_of(db::SysTime t) const {
    const double s = std::chrono::duration<double>(t.time_since_epoch()).count();
    return x0 + std::clamp((s - t0) / span, 0.0, 1.0) * w;
  }
  double y_of(double v, double max) const { return y0 + h - std::clamp(v / max, 0.0, 1.0) * h; }
};

// Lines of one series, broken where buckets are missing (no samples there:
// the worker was not running) rather than drawn across the gap.
void polylines(std::string& out, const Plot& p, const HistorySeries& s, double bucket_s, double max,
               const char* cls, double (*value)(const HistoryPoint&, double)) {
  std::vector<std::pair<double, double>> run;
  auto flush = [&] {
    if (run.empty()) return;
    // A lone bucket becomes a short flat segment, so that it shows.
    if (run.size() == 1) {
      const auto [x, y] = run.front();
      run = {{std::max(p.x0, x - 3), y}, {std::min(p.x0 + p.w, x + 3), y}};
    }
    fmt::format_to(std::back_inserter(out), "<polyline class=\"{}\" points=\"", cls);
    for (std::size_t i = 0; i < run.size(); ++i) {
      fmt::format_to(std::back_inserter(out), "{}{:.1f},{:.1f}", i ? " " : "", run[i].first,
                     run[i].second);
    }
    out += "\"/>";
    run.clear();
  };
  const HistoryPoint* prev = nullptr;
  const auto half = std::chrono::duration_cast<db::SysTime::duration>(
      std::chrono::duration<double>(bucket_s / 2));
  for (const auto& pt : s.points) {
    if (prev && std::chrono::duration<double>(pt.at - prev->at).count() > 1.5 * bucket_s) flush();
    run.emplace_back(p.x_of(pt.at + half), p.y_of(value(pt, bucket_s), max));
    prev = &pt;
  }
  flush();
}

double rate_of(const HistoryPoint& p, double) {
  return p.rate;
}
double accepted_per_second(const HistoryPoint& p, double bucket_s) {
  return static_cast<double>(p.accepted) / bucket_s;
}

}  // namespace

double nice_axis_max(double value) {
  if (!(value > 0) || !std::isfinite(value)) return 1;
  const double magnitude = std::pow(10.0, std::floor(std::log10(value)));
  for (double step : {1.0, 2.0, 5.0, 10.0}) {
    if (step * magnitude >= value * (1 - 1e-12)) return step * magnitude;
  }
  return 10 * magnitude;
}

std::string render_throttle_chart(const HistorySeries& series, db::SysTime from, db::SysTime to,
                                  std::chrono::duration<double> bucket, ChartSize size) {
  const double bucket_s = std::max(bucket.count(), 1e-3);
  Plot p{kLeft,
         kTop,
         static_cast<double>(size.width - kLeft - kRight),
         static_cast<double>(size.height - kTop - kBottom),
         std::chrono::duration<double>(from.time_since_epoch()).count(),
         std::max(std::chrono::duration<double>(to - from).count(), 1e-3)};
  double max_rate = 0;
  std::int64_t max_deferred = 0;
  for (const auto& pt : series.points) {
    max_rate = std::max({max_rate, pt.rate, accepted_per_second(pt, bucket_s)});
    max_deferred = std::max(max_deferred, pt.deferred);
  }
  const double rate_axis = nice_axis_max(max_rate);
  const double deferred_axis = nice_axis_max(static_cast<double>(max_deferred));
  const std::string title = sender::HtmlEscaped(series.provider + " / " + series.egress);

  std::string out;
  fmt::format_to(std::back_inserter(out),
                 "<svg class=\"throttle-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" "
                 "height=\"{}\" viewBox=\"0 0 {} {}\" role=\"img\" data-provider=\"{}\" "
                 "data-egress=\"{}\"><title>send rate and deferrals: {}</title>",
                 size.width, size.height, size.width, size.height,
                 sender::HtmlEscaped(series.provider), sender::HtmlEscaped(series.egress), title);
  fmt::format_to(
      std::back_inserter(out),
      "<rect class=\"plot\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" "
      "fill=\"#fbfbfd\" stroke=\"#ccc\"/>",
      p.x0, p.y0, p.w, p.h);
  // Mode bands, then deferral bars, then the lines on top.
  const double bar_w = std::max(1.0, p.w * bucket_s / p.span);
  for (const auto& pt : series.points) {
    if (pt.mode == "normal") continue;
    fmt::format_to(std::back_inserter(out),
                   "<rect class=\"mode-{}\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" "
                   "height=\"{:.1f}\"/>",
                   pt.mode == "suspended" ? "suspended" : "backoff", p.x_of(pt.at), p.y0, bar_w,
                   p.h);
  }
  for (const auto& pt : series.points) {
    if (pt.deferred <= 0) continue;
    const double y = p.y_of(static_cast<double>(pt.deferred), deferred_axis);
    fmt::format_to(std::back_inserter(out),
                   "<rect class=\"deferred\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" "
                   "height=\"{:.1f}\"><title>{} deferred</title></rect>",
                   p.x_of(pt.at), y, bar_w, p.y0 + p.h - y, pt.deferred);
  }
  polylines(out, p, series, bucket_s, rate_axis, "accepted", accepted_per_second);
  polylines(out, p, series, bucket_s, rate_axis, "rate", rate_of);

  // Axes: rate on the left, deferrals per bucket on the right, time below.
  const double bottom = p.y0 + p.h;
  fmt::format_to(std::back_inserter(out),
                 "<g class=\"axis\"><text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}/s</text>"
                 "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">0</text>"
                 "<text class=\"deferred-axis\" x=\"{:.1f}\" y=\"{:.1f}\">{} def.</text>"
                 "<text class=\"deferred-axis\" x=\"{:.1f}\" y=\"{:.1f}\">0</text>",
                 p.x0 - 4, p.y0 + 10, number_label(rate_axis), p.x0 - 4, bottom, p.x0 + p.w + 4,
                 p.y0 + 10, number_label(deferred_axis), p.x0 + p.w + 4, bottom);
  const bool with_date = p.span > 24 * 3600;
  for (int i = 0; i <= 4; ++i) {
    const auto t = from + std::chrono::duration_cast<db::SysTime::duration>(
                              std::chrono::duration<double>(p.span * i / 4));
    fmt::format_to(std::back_inserter(out),
                   "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"{}\">{}</text>",
                   p.x0 + p.w * i / 4, bottom + 16,
                   i == 0   ? "start"
                   : i == 4 ? "end"
                            : "middle",
                   time_label(t, with_date));
  }
  out += "</g>";
  if (series.points.empty()) {
    fmt::format_to(std::back_inserter(out),
                   "<text class=\"empty\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">no "
                   "samples in this range</text>",
                   p.x0 + p.w / 2, p.y0 + p.h / 2);
  }
  out += "</svg>";
  return out;
}

}  // namespace mailer::app
