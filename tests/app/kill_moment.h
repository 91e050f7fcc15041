// When to kill -9 a worker so that the kill tests something: once it has
// sent at least a chosen number of messages and still holds leases (rows
// claimed by it and not yet finished), so work is in flight at the kill.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <pqxx/pqxx>
#include <set>
#include <string>
#include <thread>

namespace mailer::testing {

struct KillMoment {
  bool caught = false;      // the condition held before the deadline
  std::size_t sent = 0;     // messages the victim had sent
  std::int64_t leased = 0;  // rows it leased at that moment
  long long after_ms = 0;   // since the wait began
};

// Rows `worker` leases right now (claimed, outcome not yet written).
inline std::int64_t rows_leased_by(pqxx::connection& c, const std::string& worker) {
  pqxx::work w(c);
  return w
      .exec_params1(
          "SELECT count(*) FROM deliveries WHERE lease_owner = $1"
          " AND state IN ('queued', 'deferred')",
          worker)[0]
      .as<std::int64_t>();
}

// Ids of the rows `worker` leases (after its death: its in-flight window).
inline std::set<long long> ids_leased_by(const std::string& url, const std::string& worker) {
  pqxx::connection c(url);
  pqxx::work w(c);
  std::set<long long> ids;
  for (const auto& row : w.exec_params("SELECT id FROM deliveries WHERE lease_owner = $1"
                                       " AND state IN ('queued', 'deferred')",
                                       worker)) {
    ids.insert(row[0].as<long long>());
  }
  return ids;
}

// Polls every 5 ms until `sent()` is at least `threshold` while `worker`
// leases rows, or `limit` passes.
inline KillMoment wait_for_work_in_flight(const std::string& url, const std::string& worker,
                                          std::size_t threshold,
                                          const std::function<std::size_t()>& sent,
                                          std::chrono::seconds limit) {
  pqxx::connection c(url);
  const auto start = std::chrono::steady_clock::now();
  KillMoment m;
  for (;;) {
    m.sent = sent();
    if (m.sent >= threshold) {
      m.leased = rows_leased_by(c, worker);
      if (m.leased > 0) {
        m.caught = true;
        break;
      }
    }
    if (std::chrono::steady_clock::now() - start > limit) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  m.after_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - start)
                   .count();
  return m;
}

}  // namespace mailer::testing
