#include "app/db/feedback_store.h"

namespace mailer::db {
namespace {

constexpr const char* kFindDelivery = "feedback_find_delivery";
constexpr const char* kInsertReport = "feedback_insert_report";
constexpr const char* kBounceDelivery = "feedback_bounce_delivery";
constexpr const char* kSuppress = "feedback_suppress";
constexpr const char* kSoftCount = "feedback_soft_count";
constexpr const char* kCounts = "feedback_counts";
constexpr const char* kCampaignFeedback = "feedback_campaign_feedback";
constexpr const char* kTotals = "feedback_totals";
constexpr const char* kHealth = "feedback_health";
constexpr const char* kPause = "feedback_pause";
constexpr const char* kPauseReason = "feedback_pause_reason";

}  // namespace

FeedbackStore::FeedbackStore(Database& db) : db_(db) {
  db_.prepare(kFindDelivery,
              "SELECT d.id, d.campaign_id, r.email_key, d.state FROM deliveries d "
              "JOIN recipients r ON r.id = d.recipient_id WHERE d.id = $1");
  db_.prepare(kInsertReport,
              "INSERT INTO feedback_reports (message_key, recipient, kind, reported_kind, "
              "delivery_id, campaign_id, email_key, status, diagnostic) "
              "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
              "ON CONFLICT (message_key, recipient) DO NOTHING RETURNING id");
  // A late hard bounce overrides `sent`: the server accepted, then bounced.
  db_.prepare(kBounceDelivery,
              "UPDATE deliveries SET state = 'bounced', last_reply = $2, "
              "lease_owner = NULL, lease_expires_at = NULL, updated_at = now() "
              "WHERE id = $1 AND state IN ('sent', 'queued', 'deferred', 'failed')");
  db_.prepare(kSuppress,
              "INSERT INTO suppressions (email_key, reason, source, campaign_id, detail) "
              "VALUES ($1, $2, 'bounce', $3, $4) ON CONFLICT (email_key) DO NOTHING");
  db_.prepare(kSoftCount,
              "SELECT count(*) FROM feedback_reports WHERE email_key = $1 AND kind = 'soft' "
              "AND received_at > now() - make_interval(secs => $2::double precision)");
  db_.prepare(kCounts,
              "SELECT kind, count(*) FROM feedback_reports WHERE campaign_id = $1 GROUP BY kind");
  db_.prepare(kCampaignFeedback,
              "SELECT (SELECT count(*) FROM deliveries d WHERE d.campaign_id = $1 "
              "   AND (d.state = 'sent' OR (d.state = 'bounced' AND d.sent_at IS NOT NULL))), "
              "count(*) FILTER (WHERE kind = 'hard'), count(*) FILTER (WHERE kind = 'soft'), "
              "count(*) FILTER (WHERE kind = 'complaint'), "
              "count(*) FILTER (WHERE kind = 'auto_reply'), "
              "count(*) FILTER (WHERE kind = 'unmatched') "
              "FROM feedback_reports WHERE campaign_id = $1");
  db_.prepare(kTotals, "SELECT kind, count(*) FROM feedback_reports GROUP BY kind");
  db_.prepare(kHealth,
              "SELECT c.status, "
              "(SELECT count(*) FROM deliveries d WHERE d.campaign_id = c.id "
              "   AND (d.state = 'sent' OR (d.state = 'bounced' AND d.sent_at IS NOT NULL))), "
              "(SELECT count(*) FROM feedback_reports f WHERE f.campaign_id = c.id "
              "   AND f.kind = 'hard'), "
              "(SELECT count(*) FROM feedback_reports f WHERE f.campaign_id = c.id "
              "   AND f.kind = 'complaint') "
              "FROM campaigns c WHERE c.id = $1");
  db_.prepare(kPauseReason,
              "SELECT pause_reason FROM campaigns WHERE id = $1 AND status = 'paused'");
  db_.prepare(kPause,
              "UPDATE campaigns SET status = 'paused', pause_reason = $2, updated_at = now() "
              "WHERE id = $1 AND status IN ('running', 'waiting_window')");
}

std::optional<FeedbackDelivery> FeedbackStore::find_delivery(std::int64_t delivery_id) {
  return db_.transact([&](pqxx::work& w) -> std::optional<FeedbackDelivery> {
    const pqxx::result r = w.exec_prepared(kFindDelivery, delivery_id);
    if (r.empty()) return std::nullopt;
    return FeedbackDelivery{r[0][0].as<std::int64_t>(), r[0][1].as<std::int64_t>(),
                            r[0][2].as<std::string>(), r[0][3].as<std::string>()};
  });
}

FeedbackApplied FeedbackStore::apply(const FeedbackRow& row, int soft_limit,
                                     std::chrono::milliseconds soft_window) {
  return db_.transact([&](pqxx::work& w) {
    FeedbackApplied out;
    std::optional<std::int64_t> delivery_id;
    std::optional<std::int64_t> campaign_id = row.campaign_id;
    std::optional<std::string> email_key;
    if (row.delivery) {
      delivery_id = row.delivery->id;
      campaign_id = row.delivery->campaign_id;
      email_key = row.delivery->email_key;
    }
    const pqxx::result inserted =
        w.exec_prepared(kInsertReport, row.message_key, row.recipient, row.kind, row.reported_kind,
                        delivery_id, campaign_id, email_key, row.status, row.diagnostic);
    if (inserted.empty()) return out;
    out.recorded = true;
    if (!row.delivery) return out;
    const std::string detail =
        row.status.empty() ? row.diagnostic : row.status + " " + row.diagnostic;
    if (row.kind == "hard") {
      out.delivery_bounced =
          w.exec_prepared(kBounceDelivery, *delivery_id, detail).affected_rows() > 0;
      out.suppressed = w.exec_prepared(kSuppress, *email_key, "hard_bounce", campaign_id, detail)
                           .affected_rows() > 0;
    } else if (row.kind == "complaint") {
      out.suppressed =
          w.exec_prepared(kSuppress, *email_key, "complaint", campaign_id, detail).affected_rows() >
          0;
    } else if (row.kind == "soft") {
      const double secs = static_cast<double>(soft_window.count()) / 1000.0;
      const auto n = w.exec_prepared(kSoftCount, *email_key, secs)[0][0].as<std::int64_t>();
      if (n >= soft_limit) {
        out.suppressed = w.exec_prepared(kSuppress, *email_key, "hard_bounce", campaign_id,
                                         std::to_string(n) + " soft bounces; last: " + detail)
                             .affected_rows() > 0;
      }
    }
    return out;
  });
}

FeedbackCounts FeedbackStore::counts(std::int64_t campaign_id) {
  return db_.transact([&](pqxx::work& w) {
    FeedbackCounts c;
    for (const auto& row : w.exec_prepared(kCounts, campaign_id)) {
      const std::string kind = row[0].as<std::string>();
      const auto n = row[1].as<std::int64_t>();
      if (kind == "hard") c.hard = n;
      if (kind == "soft") c.soft = n;
      if (kind == "complaint") c.complaints = n;
      if (kind == "auto_reply") c.auto_replies = n;
      if (kind == "unmatched") c.unmatched = n;
    }
    return c;
  });
}

namespace {

FeedbackCounts counts_by_kind(const pqxx::result& rows) {
  FeedbackCounts c;
  for (const auto& row : rows) {
    const std::string kind = row[0].as<std::string>();
    const auto n = row[1].as<std::int64_t>();
    if (kind == "hard") c.hard = n;
    if (kind == "soft") c.soft = n;
    if (kind == "complaint") c.complaints = n;
    if (kind == "auto_reply") c.auto_replies = n;
    if (kind == "unmatched") c.unmatched = n;
  }
  return c;
}

}  // namespace

CampaignFeedback FeedbackStore::campaign_feedback(std::int64_t campaign_id) {
  return db_.transact([&](pqxx::work& w) {
    const pqxx::row r = w.exec_prepared1(kCampaignFeedback, campaign_id);
    CampaignFeedback f;
    f.sent = r[0].as<std::int64_t>();
    f.counts.hard = r[1].as<std::int64_t>();
    f.counts.soft = r[2].as<std::int64_t>();
    f.counts.complaints = r[3].as<std::int64_t>();
    f.counts.auto_replies = r[4].as<std::int64_t>();
    f.counts.unmatched = r[5].as<std::int64_t>();
    return f;
  });
}

FeedbackCounts FeedbackStore::totals() {
  return db_.transact([&](pqxx::work& w) { return counts_by_kind(w.exec_prepared(kTotals)); });
}

CampaignHealth FeedbackStore::health(std::int64_t campaign_id) {
  return db_.transact([&](pqxx::work& w) {
    CampaignHealth h;
    const pqxx::result r = w.exec_prepared(kHealth, campaign_id);
    if (r.empty()) return h;
    h.status = r[0][0].as<std::string>();
    h.sent = r[0][1].as<std::int64_t>();
    h.hard = r[0][2].as<std::int64_t>();
    h.complaints = r[0][3].as<std::int64_t>();
    return h;
  });
}

std::optional<std::string> FeedbackStore::pause_reason(std::int64_t campaign_id) {
  return db_.transact([&](pqxx::work& w) -> std::optional<std::string> {
    const pqxx::result r = w.exec_prepared(kPauseReason, campaign_id);
    if (r.empty() || r[0][0].is_null()) return std::nullopt;
    return r[0][0].as<std::string>();
  });
}

bool FeedbackStore::pause_with_reason(std::int64_t campaign_id, const std::string& reason) {
  return db_.transact([&](pqxx::work& w) {
    return w.exec_prepared(kPause, campaign_id, reason).affected_rows() > 0;
  });
}

}  // namespace mailer::db
