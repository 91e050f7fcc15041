// The dashboard at `/`: campaigns with their progress, and per provider its
// throttle state and a chart of send rate and deferrals over a chosen time
// range. One self-contained HTML page (inline CSS and SVG, no script, no
// external resource), refreshed by the browser every few seconds. Pure: the
// caller reads the data (MetricsSource) and this renders it.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "app/metrics/metrics_source.h"

namespace mailer::app {

// A time range the dashboard offers as ?range=NAME.
struct DashboardRange {
  std::string_view name;
  std::chrono::seconds length;
};

// 15m, 1h (the default), 6h, 24h, 7d.
const std::vector<DashboardRange>& dashboard_ranges();
const DashboardRange& default_dashboard_range();
// The range called `name`, or nullopt when the dashboard offers none by that name.
std::optional<DashboardRange> find_dashboard_range(std::string_view name);

// Buckets per chart: about 2.5 pixels each on the default chart width, fine
// enough to show every step of an AIMD sawtooth over the default hour.
inline constexpr int kChartBuckets = 240;
// Seconds between reloads of the page: a throttle reacts in seconds, and a
// page this small costs the server a few milliseconds.
inline constexpr int kDashboardRefreshSeconds = 10;

struct DashboardView {
  OperatorSnapshot snapshot;
  ThrottleHistory history;
  DashboardRange range = default_dashboard_range();
};

// The whole page.
std::string render_dashboard(const DashboardView& view);

// The Content-Security-Policy sent with the page: nothing may be fetched or
// run, only inline styles apply.
inline constexpr const char* kDashboardContentSecurityPolicy =
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; "
    "frame-ancestors 'none'";

}  // namespace mailer::app
