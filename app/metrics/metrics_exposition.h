// The /metrics page: an OperatorSnapshot in the Prometheus text exposition
// format (version 0.0.4): each family once, with # HELP and # TYPE, label
// values escaped. Pure: no I/O.
#pragma once

#include <string>
#include <string_view>

#include "app/metrics/metrics_source.h"

namespace mailer::app {

// The Content-Type of the page.
inline constexpr const char* kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

// Every family and sample of `snapshot`:
//   mailer_provider_rate, mailer_provider_connection_limit,
//   mailer_provider_state{state=normal|backoff|suspended} (1 for the current
//   one), mailer_provider_suspended_until_seconds,
//   mailer_provider_in_flight, mailer_provider_queue_depth,
//   mailer_replies_total{signal}, mailer_accepted_total,
//   mailer_deferred_total{signal}, mailer_bounced_total,
//   mailer_campaign_info{status}, mailer_campaign_deliveries{state},
//   mailer_campaign_progress_ratio.
std::string render_prometheus(const OperatorSnapshot& snapshot);

// A label value with backslash, double quote and line feed escaped.
std::string escape_label_value(std::string_view value);
// HELP text with backslash and line feed escaped.
std::string escape_help_text(std::string_view text);
// A sample value: shortest round-trip decimal, NaN, +Inf or -Inf.
std::string format_sample_value(double value);

}  // namespace mailer::app
