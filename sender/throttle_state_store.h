// ThrottleStateStore: where the dispatcher keeps what its throttle learned,
// so that a restart resumes at the learned rate instead of bursting into a
// provider again: one state row per (provider, egress), loaded when the
// dispatcher starts and saved while it changes, and a rate sample per
// provider at a fixed interval for the dashboard's chart.
//
// Why an interface declared here: sender/ sits below app/ and never includes
// an app/ header. The dispatcher declares what it needs; app/db's
// DeliveryQueue implements it, because all SQL lives in app/db, which knows
// the schema (tables throttle_state and throttle_history).
//
// Threading: the dispatcher calls it from the worker loop's thread only.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "sender/delivery_transport.h"

namespace mailer::sender {

// One (provider, egress) row of throttle_state.
struct ThrottleStateRow {
  std::string provider;
  std::string egress;
  // The controller's serialised state (throttle::to_json), a JSON text.
  std::string state_json = "{}";
  double rate = 0;
  int connection_limit = 1;
  // normal | backoff | suspended
  std::string mode = "normal";
  std::optional<SysTime> suspended_until;
  std::string last_throttle_reply;
  SysTime updated_at{};
};

// One sample of the dashboard's per-provider chart.
struct ThrottleHistoryRow {
  std::string provider;
  std::string egress;
  double rate = 0;
  int accepted = 0;
  int deferred = 0;
  std::string mode = "normal";
};
// The store cannot be reached now (the database went away). Not fatal to a
// dispatcher: deliveries matter more, and the next save tries again.
class StoreUnavailable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ThrottleStateStore {
 public:
  virtual ~ThrottleStateStore() = default;

  // Every saved state row of `egress` (empty: of every egress). Throws the
  // store's own errors when it fails; a dispatcher does not start then.
  virtual std::vector<ThrottleStateRow> load_states(std::string_view egress) = 0;

  // Upserts one state row. Throws StoreUnavailable when the store cannot be
  // reached now, other exceptions for other failures.
  virtual void save_state(const ThrottleStateRow& row) = 0;

  // Appends rate samples (one write for all of them). Throws as save_state.
  virtual void append_history(const std::vector<ThrottleHistoryRow>& rows) = 0;
};

}  // namespace mailer::sender
