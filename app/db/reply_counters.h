// Cumulative reply counters per (provider, egress, signal), kept in the
// reply_counters table: workers add what their dispatcher counted since the
// last flush; `mailer serve` reads them for /metrics. They only grow.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "app/db/database.h"

namespace mailer::db {

struct ReplyCount {
  std::string provider;
  std::string egress;
  // A throttle signal name ("accepted", "throttle", "hard_bounce", ...).
  std::string signal;
  std::int64_t count = 0;
};

class ReplyCounters {
 public:
  // Registers the statements on `db`.
  explicit ReplyCounters(Database& db);

  // Adds each row's count to its counter (one statement).
  void add(const std::vector<ReplyCount>& increments);

  // Every counter, ordered by provider, egress, signal.
  std::vector<ReplyCount> all();

 private:
  Database& db_;
};

}  // namespace mailer::db
