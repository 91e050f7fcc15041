#include "app/metrics/metrics_source.h"

#include <map>

namespace mailer::app {
namespace {

constexpr const char* kQueues = "metrics_provider_queues";
constexpr const char* kCampaigns = "metrics_campaign_progress";
constexpr const char* kHistory = "metrics_throttle_history";
constexpr const char* kPing = "metrics_ping";

db::SysTime time_of_micros(std::int64_t us) {
  return db::SysTime(
      std::chrono::duration_cast<db::SysTime::duration>(std::chrono::microseconds(us)));
}

const char* mode_name(int severity) {
  switch (severity) {
    case 2:
      return "suspended";
    case 1:
      return "backoff";
    default:
      return "normal";
  }
}

}  // namespace

std::int64_t CampaignProgress::total() const {
  std::int64_t n = 0;
  for (const auto& [state, count] : counts) n += count;
  return n;
}

std::int64_t CampaignProgress::done() const {
  std::int64_t n = 0;
  for (const char* state : {"sent", "bounced", "failed", "skipped"}) {
    auto it = counts.find(state);
    if (it != counts.end()) n += it->second;
  }
  return n;
}

MetricsSource::MetricsSource(db::Database& db) : db_(db), queue_(db), counters_(db), feedback_(db) {
  // The claim index covers these states, so this reads only the rows that
  // are not final. In flight: under an unexpired lease.
  db_.prepare(kQueues,
              "SELECT provider, count(*) FILTER (WHERE lease_expires_at > now()),"
              " count(*) FILTER (WHERE lease_expires_at IS NULL OR lease_expires_at <= now())"
              " FROM deliveries WHERE state IN ('queued', 'deferred')"
              " GROUP BY provider ORDER BY provider");
  db_.prepare(kCampaigns,
              "SELECT c.id, c.name, c.status, x.state, count(x.state)"
              " FROM campaigns c LEFT JOIN LATERAL (SELECT CASE WHEN d.state IN"
              "  ('queued', 'deferred') AND d.lease_expires_at > now() THEN 'sending'"
              "  ELSE d.state END AS state FROM deliveries d WHERE d.campaign_id = c.id) x ON true"
              " WHERE c.status NOT IN ('finished', 'cancelled')"
              "  OR coalesce(c.finished_at, c.updated_at) > now() - $1::bigint * interval '1 "
              "second'"
              " GROUP BY c.id, c.name, c.status, x.state ORDER BY c.id DESC");
  // Buckets of equal width ending at now(); the mode is the most severe one
  // seen in the bucket, so a short suspension is not averaged away.
  db_.prepare(kHistory,
              "WITH b AS (SELECT provider, egress,"
              "  floor(extract(epoch from (now() - at)) / $2::float8)::bigint AS back,"
              "  rate, accepted, deferred,"
              "  CASE mode WHEN 'suspended' THEN 2 WHEN 'backoff' THEN 1 ELSE 0 END AS severity"
              " FROM throttle_history"
              " WHERE at > now() - $1::float8 * interval '1 second' AND at <= now())"
              " SELECT provider, egress,"
              "  (extract(epoch from now()) * 1000000)::bigint"
              "   - ((back + 1) * $2::float8 * 1000000)::bigint,"
              "  avg(rate), sum(accepted)::bigint, sum(deferred)::bigint, max(severity)"
              " FROM b GROUP BY provider, egress, back ORDER BY provider, egress, back DESC");
  db_.prepare(kPing, "SELECT 1, (extract(epoch from now()) * 1000000)::bigint");
}

OperatorSnapshot MetricsSource::snapshot() {
  OperatorSnapshot s;
  s.throttle = queue_.load_throttle_states();
  s.replies = counters_.all();
  db_.transact([&](pqxx::work& w) {
    s.queues.clear();
    for (const auto& row : w.exec_prepared(kQueues)) {
      s.queues.push_back(
          {row[0].as<std::string>(), row[1].as<std::int64_t>(), row[2].as<std::int64_t>()});
    }
    s.campaigns.clear();
    const auto shown_for =
        std::chrono::duration_cast<std::chrono::seconds>(kEndedCampaignsShownFor).count();
    for (const auto& row : w.exec_prepared(kCampaigns, static_cast<std::int64_t>(shown_for))) {
      const auto id = row[0].as<std::int64_t>();
      if (s.campaigns.empty() || s.campaigns.back().id != id) {
        CampaignProgress p;
        p.id = id;
        p.name = row[1].as<std::string>();
        p.status = row[2].as<std::string>();
        for (const auto& state : db::delivery_states()) p.counts[state] = 0;
        s.campaigns.push_back(std::move(p));
      }
      if (!row[3].is_null())
        s.campaigns.back().counts[row[3].as<std::string>()] = row[4].as<std::int64_t>();
    }
  });
  // One indexed statement per shown campaign (feedback_reports_campaign_idx).
  for (CampaignProgress& c : s.campaigns) c.feedback = feedback_.campaign_feedback(c.id);
  s.feedback = feedback_.totals();
  return s;
}

ThrottleHistory MetricsSource::history(std::chrono::seconds range, int buckets) {
  if (buckets < 1) buckets = 1;
  const double range_s = static_cast<double>(range.count());
  const double width_s = range_s / buckets;
  return db_.transact([&](pqxx::work& w) {
    ThrottleHistory h;
    const auto now_us = w.exec_prepared1(kPing)[1].as<std::int64_t>();
    h.to = time_of_micros(now_us);
    h.from = h.to - range;
    for (const auto& row : w.exec_prepared(kHistory, range_s, width_s)) {
      const auto provider = row[0].as<std::string>();
      const auto egress = row[1].as<std::string>();
      if (h.series.empty() || h.series.back().provider != provider ||
          h.series.back().egress != egress) {
        h.series.push_back({provider, egress, {}});
      }
      HistoryPoint p;
      p.at = time_of_micros(row[2].as<std::int64_t>());
      p.rate = row[3].as<double>();
      p.accepted = row[4].as<std::int64_t>();
      p.deferred = row[5].as<std::int64_t>();
      p.mode = mode_name(row[6].as<int>());
      h.series.back().points.push_back(std::move(p));
    }
    return h;
  });
}

void MetricsSource::ping() {
  db_.transact([&](pqxx::work& w) { w.exec_prepared1(kPing); });
}

}  // namespace mailer::app
