// FeedbackStore: the SQL of applying what came back after a send (bounces,
// complaints, auto-replies) and of the per-campaign feedback counts. Each
// report row is keyed by (message key, recipient): recording the same report
// twice changes nothing the second time.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "app/db/database.h"

namespace mailer::db {

// The delivery a report was matched to.
struct FeedbackDelivery {
  std::int64_t id = 0;
  std::int64_t campaign_id = 0;
  std::string email_key;
  std::string state;
};

// One recipient of one report, matched or not.
struct FeedbackRow {
  std::string message_key;
  std::string recipient;
  // "hard", "soft", "complaint", "auto_reply", "delivered" or "unmatched".
  std::string kind;
  std::string reported_kind;
  std::optional<FeedbackDelivery> delivery;
  // The campaign an unmatched row claims (from an unverified tag), if any.
  std::optional<std::int64_t> campaign_id;
  std::string status;
  std::string diagnostic;
};

// What applying one row did.
struct FeedbackApplied {
  bool recorded = false;  // false: already recorded, nothing changed
  bool delivery_bounced = false;
  bool suppressed = false;
};

struct FeedbackCounts {
  std::int64_t hard = 0;
  std::int64_t soft = 0;
  std::int64_t complaints = 0;
  std::int64_t auto_replies = 0;
  std::int64_t unmatched = 0;
};

// A campaign's feedback beside what it sent: the figures `mailer status`,
// /metrics and the dashboard show.
struct CampaignFeedback {
  std::int64_t sent = 0;  // deliveries accepted or bounced after acceptance
  FeedbackCounts counts;

  // `n` per sent message; 0 before anything was sent.
  static double per_sent(std::int64_t n, std::int64_t sent) {
    return sent == 0 ? 0.0 : static_cast<double>(n) / static_cast<double>(sent);
  }
  double bounce_rate() const { return per_sent(counts.hard, sent); }
  double soft_bounce_rate() const { return per_sent(counts.soft, sent); }
  double complaint_rate() const { return per_sent(counts.complaints, sent); }
  double auto_reply_rate() const { return per_sent(counts.auto_replies, sent); }
};

// Rates the guard judges a running campaign by.
struct CampaignHealth {
  std::string status;
  std::int64_t sent = 0;  // deliveries accepted or bounced after acceptance
  std::int64_t hard = 0;
  std::int64_t complaints = 0;
};

class FeedbackStore {
 public:
  explicit FeedbackStore(Database& db);

  std::optional<FeedbackDelivery> find_delivery(std::int64_t delivery_id);

  // Records `row` and, when it was not recorded before, applies it in the
  // same transaction: hard → delivery bounced and address suppressed
  // (hard_bounce); complaint → suppressed (complaint); soft → suppressed
  // (hard_bounce, "soft bounces") once soft_limit soft rows of the address
  // fall within soft_window.
  FeedbackApplied apply(const FeedbackRow& row, int soft_limit,
                        std::chrono::milliseconds soft_window);

  FeedbackCounts counts(std::int64_t campaign_id);
  // Counts and sent of one campaign, in one statement.
  CampaignFeedback campaign_feedback(std::int64_t campaign_id);
  // Every recorded report row by kind, any campaign (unmatched ones too).
  FeedbackCounts totals();
  CampaignHealth health(std::int64_t campaign_id);
  // Why the guard paused the campaign; nullopt when it did not.
  std::optional<std::string> pause_reason(std::int64_t campaign_id);
  // Pauses a running campaign with `reason`; false when it was not running.
  bool pause_with_reason(std::int64_t campaign_id, const std::string& reason);

 private:
  Database& db_;
};

}  // namespace mailer::db
