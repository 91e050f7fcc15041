// Cumulative reply counters per (provider, egress, signal), kept in the
// reply_counters table: workers add what their dispatcher counted since the
// last flush; `mailer serve` reads them for /metrics. They only grow. The
// dispatcher adds through sender::ReplyCountSink, which sender/ declares
// (it never includes app/) and this class implements.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "app/db/database.h"
#include "sender/reply_count_sink.h"

namespace mailer::db {

using ReplyCount = sender::ReplyCount;

class ReplyCounters : public sender::ReplyCountSink {
 public:
  // Registers the statements on `db`.
  explicit ReplyCounters(Database& db);

  // Adds each row's count to its counter (one statement).
  void add(const std::vector<ReplyCount>& increments);

  // Every counter, ordered by provider, egress, signal.
  std::vector<ReplyCount> all();

 private:
  // sender::ReplyCountSink: add(), with a lost connection reported as
  // sender::StoreUnavailable.
  void add_counts(const std::vector<ReplyCount>& increments) override;

  Database& db_;
};

}  // namespace mailer::db
