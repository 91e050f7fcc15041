#include "app/db/reply_counters.h"

#include "app/db/delivery_queue.h"

namespace mailer::db {
namespace {
constexpr const char* kAdd = "reply_counters_add";
constexpr const char* kAll = "reply_counters_all";
}  // namespace

ReplyCounters::ReplyCounters(Database& db) : db_(db) {
  db_.prepare(kAdd,
              "INSERT INTO reply_counters AS c (provider, egress, signal, count)"
              " SELECT p, e, s, sum(n) FROM unnest($1::text[], $2::text[], $3::text[],"
              "  $4::bigint[]) AS t(p, e, s, n) GROUP BY p, e, s"
              " ON CONFLICT (provider, egress, signal) DO UPDATE"
              " SET count = c.count + EXCLUDED.count, updated_at = now()");
  db_.prepare(kAll,
              "SELECT provider, egress, signal, count FROM reply_counters"
              " ORDER BY provider, egress, signal");
}

void ReplyCounters::add(const std::vector<ReplyCount>& increments) {
  if (increments.empty()) return;
  std::vector<std::optional<std::string>> providers, egresses, signals, counts;
  for (const ReplyCount& r : increments) {
    providers.emplace_back(r.provider);
    egresses.emplace_back(r.egress);
    signals.emplace_back(r.signal);
    counts.emplace_back(std::to_string(r.count));
  }
  db_.transact([&](pqxx::work& w) {
    w.exec_prepared0(kAdd, pg_text_array(providers), pg_text_array(egresses),
                     pg_text_array(signals), pg_text_array(counts));
  });
}

std::vector<ReplyCount> ReplyCounters::all() {
  return db_.transact([&](pqxx::work& w) {
    std::vector<ReplyCount> rows;
    for (const auto& row : w.exec_prepared(kAll)) {
      rows.push_back({row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<std::string>(),
                      row[3].as<std::int64_t>()});
    }
    return rows;
  });
}

void ReplyCounters::add_counts(const std::vector<ReplyCount>& increments) {
  try {
    add(increments);
  } catch (const ConnectionError& e) {
    throw sender::StoreUnavailable(e.what());
  }
}

}  // namespace mailer::db
