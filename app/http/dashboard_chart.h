// The dashboard's per-provider chart, drawn as inline SVG on the server (no
// script, no library, nothing fetched at run time): the throttle's rate as a
// line, the accepted messages per second as a second line, deferrals per
// bucket as bars on their own scale, and bands where the provider was in
// backoff or suspended. The AIMD sawtooth shows as the rate line climbing
// and dropping at the deferral bars. Pure: no I/O.
#pragma once

#include <chrono>
#include <string>

#include "app/metrics/metrics_source.h"

namespace mailer::app {

struct ChartSize {
  int width = 720;
  int height = 220;
};

// One <svg> element (class "throttle-chart") for `series` over [from, to],
// whose points are buckets `bucket` wide. Element classes, for readers and
// tests: polyline.rate, polyline.accepted, rect.deferred, rect.mode-backoff,
// rect.mode-suspended. A series without points gives a chart that says so.
std::string render_throttle_chart(const HistorySeries& series, db::SysTime from, db::SysTime to,
                                  std::chrono::duration<double> bucket, ChartSize size = {});

// A "nice" upper bound for an axis that must show `value`: 1, 2 or 5 times
// a power of ten, at least `value` (and 1 for values <= 0).
double nice_axis_max(double value);

}  // namespace mailer::app
