// What /metrics and the dashboard read from PostgreSQL: per-provider throttle
// state, reply counters, queue depth and deliveries in flight, per-campaign
// progress, and the throttle history bucketed for charts. Each read is a few
// short statements; none of them scans more than the rows it counts. A MetricsSource uses one
// Database and so belongs to one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "app/db/database.h"
#include "app/db/delivery_queue.h"
#include "app/db/feedback_store.h"
#include "app/db/reply_counters.h"

namespace mailer::app {

// Deliveries of one provider that are not final, any campaign.
struct ProviderQueue {
  std::string provider;
  // In state sending: claimed by a worker, being sent or awaiting its outcome.
  std::int64_t in_flight = 0;
  // In state queued or deferred: waiting for their turn or their retry time.
  std::int64_t depth = 0;
};

// One campaign's deliveries by state (every state present, 0 if none).
struct CampaignProgress {
  std::int64_t id = 0;
  std::string name;
  std::string status;
  db::StateCounts counts;
  // Bounces, complaints and auto-replies recorded for it, beside its sent.
  db::CampaignFeedback feedback;

  std::int64_t total() const;
  // sent + bounced + failed + skipped: deliveries that need nothing more.
  std::int64_t done() const;
};

// Everything /metrics exposes, read at one moment.
struct OperatorSnapshot {
  std::vector<db::ThrottleStateRow> throttle;
  std::vector<db::ReplyCount> replies;
  std::vector<ProviderQueue> queues;
  std::vector<CampaignProgress> campaigns;
  // Every report row recorded, by kind (mailer_feedback_total).
  db::FeedbackCounts feedback;
};

// One bucket of one (provider, egress) chart.
struct HistoryPoint {
  db::SysTime at{};
  // Mean controller rate over the bucket, messages per second.
  double rate = 0;
  std::int64_t accepted = 0;
  std::int64_t deferred = 0;
  // The most severe mode seen in the bucket: normal, backoff or suspended.
  std::string mode = "normal";
};

struct HistorySeries {
  std::string provider;
  std::string egress;
  std::vector<HistoryPoint> points;
};

struct ThrottleHistory {
  // The server's now() and the start of the range: the chart's x axis.
  db::SysTime from{};
  db::SysTime to{};
  std::vector<HistorySeries> series;
};

// Campaigns that ended (finished or cancelled) longer ago than this drop out
// of /metrics and the dashboard: their numbers no longer move, and a platform
// that has sent thousands of campaigns must not scrape them all every time.
inline constexpr std::chrono::hours kEndedCampaignsShownFor{24 * 7};

class MetricsSource {
 public:
  // Registers the statements on `db`.
  explicit MetricsSource(db::Database& db);

  // Throws db::ConnectionError when the database cannot be reached.
  OperatorSnapshot snapshot();

  // The throttle history of the last `range`, in at most `buckets` buckets
  // per (provider, egress), oldest first.
  ThrottleHistory history(std::chrono::seconds range, int buckets);

  // Runs `SELECT 1`; throws db::ConnectionError when the database is gone.
  void ping();

 private:
  db::Database& db_;
  db::DeliveryQueue queue_;
  db::ReplyCounters counters_;
  db::FeedbackStore feedback_;
};

}  // namespace mailer::app
