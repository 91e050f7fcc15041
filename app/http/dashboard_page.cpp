#include "app/http/dashboard_page.h"

#include <fmt/format.h>

#include <ctime>
#include <map>
#include <set>
#include <utility>

#include "app/http/dashboard_chart.h"
#include "sender/html_escape.h"

namespace mailer::app {
namespace {

constexpr const char* kStyle =
    "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}"
    "h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.4em 0 .5em}"
    "h3{font-size:1em;margin:1em 0 .3em}"
    "table{border-collapse:collapse}td,th{padding:.25em .7em;border-bottom:1px solid #e4e4e4;"
    "text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}"
    "progress{width:12em}.muted{color:#777}nav a{margin-right:.6em}"
    "nav a.current{font-weight:bold;text-decoration:none;color:#222}"
    ".state-backoff{color:#a60}.state-suspended{color:#b00;font-weight:bold}"
    "svg text{font:11px sans-serif;fill:#555}"
    "polyline.rate{fill:none;stroke:#1f5fbf;stroke-width:2}"
    "polyline.accepted{fill:none;stroke:#2a9d4b;stroke-width:1.2;stroke-dasharray:4 2}"
    "rect.deferred{fill:#d33;fill-opacity:.55}rect.mode-backoff{fill:#f5c542;fill-opacity:.18}"
    "rect.mode-suspended{fill:#d33;fill-opacity:.15}"
    ".legend span{margin-right:1.2em}.swatch{display:inline-block;width:1.4em;height:.5em;"
    "margin-right:.3em;vertical-align:middle}";

std::string utc_time(db::SysTime t) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

std::string rate_text(double rate) {
  return rate >= 100 ? fmt::format("{:.0f}", rate) : fmt::format("{:.2f}", rate);
}

void campaigns_section(std::string& out, const OperatorSnapshot& s) {
  out += "<section id=\"campaigns\"><h2>Campaigns</h2>";
  if (s.campaigns.empty()) {
    out += "<p class=\"muted\">No campaigns.</p></section>";
    return;
  }
  out +=
      "<table><thead><tr><th>id</th><th>name</th><th>status</th><th>progress</th>"
      "<th>queued</th><th>sending</th><th>deferred</th><th>sent</th><th>bounced</th>"
      "<th>failed</th><th>skipped</th><th>hard bounces</th><th>soft bounces</th>"
      "<th>complaints</th><th>auto-replies</th></tr></thead><tbody>";
  for (const auto& c : s.campaigns) {
    const auto total = c.total();
    const auto done = c.done();
    const double pct = total == 0 ? 0.0 : 100.0 * static_cast<double>(done) / total;
    fmt::format_to(std::back_inserter(out),
                   "<tr class=\"campaign\" data-campaign-id=\"{}\"><td class=\"n\">{}</td>"
                   "<td>{}</td><td>{}</td><td><progress value=\"{}\" max=\"{}\"></progress> "
                   "{:.1f}% ({} of {})</td>",
                   c.id, c.id, sender::HtmlEscaped(c.name), sender::HtmlEscaped(c.status), done,
                   std::max<std::int64_t>(total, 1), pct, done, total);
    for (const char* state :
         {"queued", "sending", "deferred", "sent", "bounced", "failed", "skipped"}) {
      auto it = c.counts.find(state);
      fmt::format_to(std::back_inserter(out), "<td class=\"n\">{}</td>",
                     it == c.counts.end() ? 0 : it->second);
    }
    // Reports and their rate per sent message, as the guard judges them.
    const db::CampaignFeedback& f = c.feedback;
    const std::pair<const char*, std::int64_t> kinds[] = {{"hard", f.counts.hard},
                                                          {"soft", f.counts.soft},
                                                          {"complaint", f.counts.complaints},
                                                          {"auto_reply", f.counts.auto_replies}};
    for (const auto& [kind, n] : kinds) {
      fmt::format_to(std::back_inserter(out),
                     "<td class=\"n feedback-{}\">{} <span class=\"muted\">({:.2f}%)</span></td>",
                     kind, n, 100.0 * db::CampaignFeedback::per_sent(n, f.sent));
    }
    out += "</tr>";
  }
  out += "</tbody></table></section>";
}

void providers_section(std::string& out, const DashboardView& v) {
  const OperatorSnapshot& s = v.snapshot;
  std::map<std::string, const ProviderQueue*> queues;
  for (const auto& q : s.queues) queues[q.provider] = &q;
  out += "<section id=\"providers\"><h2>Providers</h2>";
  if (s.throttle.empty() && s.queues.empty()) {
    out += "<p class=\"muted\">No throttle state yet (no worker has sent anything).</p>";
  } else {
    out +=
        "<table><thead><tr><th>provider</th><th>egress</th><th>rate /s</th>"
        "<th>connections</th><th>state</th><th>queued</th><th>in flight</th>"
        "<th>last throttle reply</th></tr></thead><tbody>";
    std::set<std::string> shown;
    for (const auto& t : s.throttle) {
      shown.insert(t.provider);
      const ProviderQueue* q = queues.count(t.provider) ? queues[t.provider] : nullptr;
      std::string state = t.mode;
      if (t.mode == "suspended" && t.suspended_until) {
        state += " until " + utc_time(*t.suspended_until);
      }
      fmt::format_to(std::back_inserter(out),
                     "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>"
                     "<td class=\"state-{}\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>"
                     "<td>{}</td></tr>",
                     sender::HtmlEscaped(t.provider), sender::HtmlEscaped(t.egress),
                     rate_text(t.rate), t.connection_limit, sender::HtmlEscaped(t.mode),
                     sender::HtmlEscaped(state), q ? q->depth : 0, q ? q->in_flight : 0,
                     sender::HtmlEscaped(t.last_throttle_reply));
    }
    for (const auto& q : s.queues) {
      if (shown.count(q.provider)) continue;
      fmt::format_to(std::back_inserter(out),
                     "<tr><td>{}</td><td class=\"muted\">-</td><td class=\"n\">-</td>"
                     "<td class=\"n\">-</td><td class=\"muted\">not started</td>"
                     "<td class=\"n\">{}</td><td class=\"n\">{}</td><td></td></tr>",
                     sender::HtmlEscaped(q.provider), q.depth, q.in_flight);
    }
    out += "</tbody></table>";
  }

  // One chart per (provider, egress) that has throttle state or history.
  std::map<std::pair<std::string, std::string>, const HistorySeries*> series;
  for (const auto& h : v.history.series) series[{h.provider, h.egress}] = &h;
  for (const auto& t : s.throttle) series.try_emplace({t.provider, t.egress}, nullptr);
  fmt::format_to(std::back_inserter(out),
                 "<h2>Send rate and deferrals, last {}</h2><nav>range:", v.range.name);
  for (const auto& r : dashboard_ranges()) {
    fmt::format_to(std::back_inserter(out), " <a href=\"?range={}\"{}>{}</a>", r.name,
                   r.name == v.range.name ? " class=\"current\"" : "", r.name);
  }
  out +=
      "</nav><p class=\"legend\"><span><i class=\"swatch\" style=\"background:#1f5fbf\"></i>"
      "allowed rate (msg/s)</span><span><i class=\"swatch\" style=\"background:#2a9d4b\"></i>"
      "accepted (msg/s)</span><span><i class=\"swatch\" style=\"background:#d33\"></i>"
      "deferrals per interval (right scale)</span><span><i class=\"swatch\" "
      "style=\"background:#f5c542\"></i>backoff / suspended</span></p>";
  if (series.empty()) out += "<p class=\"muted\">No throttle history in this range.</p>";
  const auto bucket = std::chrono::duration<double>(v.range.length) / kChartBuckets;
  for (const auto& [key, h] : series) {
    fmt::format_to(std::back_inserter(out),
                   "<div class=\"chart\"><h3>{} <span class=\"muted\">"
                   "egress {}</span></h3>",
                   sender::HtmlEscaped(key.first), sender::HtmlEscaped(key.second));
    HistorySeries empty{key.first, key.second, {}};
    out += render_throttle_chart(h ? *h : empty, v.history.from, v.history.to, bucket);
    out += "</div>";
  }
  out += "</section>";
}

}  // namespace

const std::vector<DashboardRange>& dashboard_ranges() {
  using std::chrono::hours;
  using std::chrono::minutes;
  using std::chrono::seconds;
  static const std::vector<DashboardRange> ranges = {{"15m", seconds(minutes(15))},
                                                     {"1h", seconds(hours(1))},
                                                     {"6h", seconds(hours(6))},
                                                     {"24h", seconds(hours(24))},
                                                     {"7d", seconds(hours(24 * 7))}};
  return ranges;
}

const DashboardRange& default_dashboard_range() {
  return dashboard_ranges()[1];
}

std::optional<DashboardRange> find_dashboard_range(std::string_view name) {
  for (const auto& r : dashboard_ranges()) {
    if (r.name == name) return r;
  }
  return std::nullopt;
}

std::string render_dashboard(const DashboardView& v) {
  std::string out;
  fmt::format_to(std::back_inserter(out),
                 "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                 "<meta http-equiv=\"refresh\" content=\"{}\">"
                 "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
                 "<title>mailer dashboard</title><style>{}</style></head><body>"
                 "<h1>mailer</h1><p class=\"muted\">as of {}; refreshes every {} s; "
                 "<a href=\"/metrics\">/metrics</a></p>",
                 kDashboardRefreshSeconds, kStyle, utc_time(v.history.to),
                 kDashboardRefreshSeconds);
  campaigns_section(out, v.snapshot);
  providers_section(out, v);
  out += "</body></html>\n";
  return out;
}

}  // namespace mailer::app
