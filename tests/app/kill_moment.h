// When to kill -9 a worker so that the kill tests something: once it has
// sent at least a chosen number of messages and, stopped at that moment,
// still holds leases (rows claimed by it and not yet finished), so work is
// in flight at the kill.
#pragma once

#include <signal.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <pqxx/pqxx>
#include <set>
#include <string>
#include <thread>

#include "tests/app/queue_worker_process.h"

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

// Whether a statement of another session of this database is running now:
// one a stopped worker sent just before it stopped (a COMMIT that would
// change what it leases) may still be executing.
inline bool statement_running(pqxx::connection& c) {
  pqxx::work w(c);
  return w.exec1(
              "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
              " AND pid <> pg_backend_pid() AND state = 'active'")[0]
             .as<std::int64_t>() > 0;
}

// Polls every 5 ms until `sent()` is at least `threshold`; then stops the
// victim (SIGSTOP), waits until none of its statements is still running,
// and kills it (SIGKILL) if `worker` leases rows, or lets it go on otherwise. Gives up
// after `limit` or when the victim exits.
inline KillMoment kill_with_work_in_flight(const std::string& url, WorkerProcess& victim,
                                           const std::string& worker, std::size_t threshold,
                                           const std::function<std::size_t()>& sent,
                                           std::chrono::seconds limit) {
  pqxx::connection c(url);
  const auto start = std::chrono::steady_clock::now();
  KillMoment m;
  for (;;) {
    if (sent() >= threshold) {
      if (!victim.pause()) break;
      // A statement sent before the stop finishes on the server without
      // the client; wait for it (a few milliseconds) before reading.
      const auto settle = std::chrono::steady_clock::now() + std::chrono::seconds(2);
      bool running = statement_running(c);
      while (running && std::chrono::steady_clock::now() < settle) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        running = statement_running(c);
      }
      if (!running) {
        m.sent = sent();
        m.leased = rows_leased_by(c, worker);
        if (m.leased > 0) {
          victim.signal(SIGKILL);
          m.caught = true;
          break;
        }
      }
      victim.resume();
    }
    if (std::chrono::steady_clock::now() - start > limit) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (!m.caught) m.sent = sent();
  m.after_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - start)
                   .count();
  return m;
}

}  // namespace mailer::testing
