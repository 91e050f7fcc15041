// The loop of `mailer run`: scheduler ticks, per-provider claims from the
// delivery queue into a DeliveryTransport, outcomes flushed in batches, lease
// renewal, and the two ways out: --until-idle (nothing sendable now and no
// retry pending) and a stop request (drain: claim nothing more, let in-flight
// sends finish, flush, release leases).
//
// Bounds: a worker holds at most [worker] max_leased deliveries (claimed, in
// flight or awaiting the flush), which bounds what a crash can send twice.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_set>

#include "app/campaigns/scheduler.h"
#include "app/config/config.h"
#include "app/db/delivery_queue.h"
#include "app/db/delivery_transport.h"

namespace mailer::app {

struct WorkerOptions {
  // Lease owner name; must be unique among live workers. A worker that
  // starts takes back at once the leases its previous incarnation (same id)
  // still held.
  std::string worker_id;
  bool until_idle = false;
  // Only this campaign (scheduling and claims).
  std::optional<std::int64_t> campaign;
  WorkerSettings settings;
};

struct WorkerReport {
  // Why the loop ended: "idle: ..." or "stopped: ...".
  std::string reason;
  // Outcomes written, by kind name (sent, deferred, ...).
  std::map<std::string, std::int64_t> outcomes;
  // Outcomes dropped because the lease had been lost.
  std::int64_t lost_leases = 0;
};

class WorkerLoop {
 public:
  // `stop` is polled; set it (e.g. from a signal handler) to drain and end.
  WorkerLoop(db::DeliveryQueue& queue, Scheduler& scheduler, db::DeliveryTransport& transport,
             WorkerOptions options, const std::atomic<bool>& stop);

  WorkerReport run();

 private:
  using Steady = std::chrono::steady_clock;

  void tick();
  // Claims for every provider with room; returns how many were claimed.
  std::size_t claim_round();
  void flush();
  void renew();
  bool idle_now();
  void drain();

  db::DeliveryQueue& queue_;
  Scheduler& scheduler_;
  db::DeliveryTransport& transport_;
  WorkerOptions options_;
  const std::atomic<bool>& stop_;

  std::vector<std::string> providers_;
  // Providers whose last claim came back short: not asked again until the
  // next tick.
  std::map<std::string, bool> exhausted_;
  std::unordered_set<std::int64_t> held_;  // ids claimed and not yet flushed
  std::vector<db::DeliveryOutcome> buffer_;
  Steady::time_point last_flush_{};
  Steady::time_point last_renew_{};
  WorkerReport report_;
  bool claimed_since_tick_ = false;
  // The worker ran dry and looked whether it is idle; claiming again resets it.
  bool dry_checked_ = false;
  std::optional<db::SysTime> announced_retry_;
};

}  // namespace mailer::app
