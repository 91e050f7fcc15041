// Applying bounce, complaint and auto-reply messages: each message is parsed
// (lists/bounce_parser), each recipient matched to the delivery it is about,
// and what it says applied once (FeedbackStore). Shared by every way a report
// comes in (`mailer bounces ingest`, `mailer inbound`).
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "app/config/config.h"
#include "app/db/feedback_store.h"
#include "lists/bounce_parser.h"

namespace mailer::app {

// Totals over the messages applied by one BounceIngester.
struct IngestSummary {
  std::int64_t messages = 0;
  std::int64_t not_reports = 0;
  // Recipients recorded for the first time, by what was applied.
  std::int64_t hard = 0;
  std::int64_t soft = 0;
  std::int64_t complaints = 0;
  std::int64_t auto_replies = 0;
  std::int64_t delivered = 0;
  std::int64_t unmatched = 0;
  // Recipients of messages already applied before: nothing changed.
  std::int64_t duplicates = 0;
  std::int64_t bounced = 0;     // deliveries that became bounced
  std::int64_t suppressed = 0;  // addresses newly suppressed
  std::int64_t paused = 0;      // campaigns the guard paused
};

// The recipients `report` speaks of. An ARF complaint whose recipient the
// provider redacted (Microsoft's JMRP) still counts: one complaint with an
// empty address, found through the original message's headers.
std::vector<lists::BounceRecipient> report_recipients(const lists::BounceReport& report);

// The key a message is recorded under: its Message-ID header when it has
// one, else "sha256:" and the hex SHA-256 of its bytes.
std::string report_message_key(std::string_view message);

class BounceIngester {
 public:
  // `secret` keys VERP tags and unsubscribe tokens ([unsubscribe] secret).
  BounceIngester(db::Database& db, const Config& config, std::string secret);

  // Parses and applies one message; `name` names it in logs.
  // `envelope_recipients` are the addresses it was delivered to (RCPT TO of
  // `mailer inbound`): a bounce to a VERP return path is matched by them
  // like by its own Delivered-To header. Throws (db::ConnectionError, a
  // pqxx error) when the database fails; recipients applied before the
  // failure stay applied, and applying the message again records only the
  // rest.
  void apply(std::string_view message, const std::string& name,
             const std::vector<std::string>& envelope_recipients = {});
  // Pauses, with a logged reason, each running campaign touched so far whose
  // complaint or hard-bounce rate passes [guard] after min_sent sends.
  void run_guard();

  const IngestSummary& summary() const { return summary_; }

 private:
  db::FeedbackRow match(const lists::BounceReport& report, const lists::BounceRecipient& r);

  db::FeedbackStore store_;
  const Config& config_;
  std::string secret_;
  std::set<std::int64_t> touched_campaigns_;
  IngestSummary summary_;
};

}  // namespace mailer::app
