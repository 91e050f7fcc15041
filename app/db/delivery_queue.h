// The PostgreSQL delivery queue: freezing a campaign's audience into
// deliveries, claiming sendable deliveries per provider under a lease
// (FOR UPDATE SKIP LOCKED), writing outcomes back in batches (one statement
// per batch), taking over expired leases, detecting finished campaigns, and
// keeping the throttle's per-(provider, egress) state and history.
//
// PostgreSQL is the source of truth; every method is one transaction, safe to
// repeat after a lost connection (Database::transact re-runs it), and safe
// with many workers on one database. Times that decide leases and due
// deliveries are the server's now(), so workers on different machines agree.
// A DeliveryQueue uses one Database and so belongs to one thread at a time.
// The claim and outcome types, and the throttle state interface the
// dispatcher saves through, are declared by sender/ (sender/ never includes
// app/); this queue implements them.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "app/db/database.h"
#include "sender/delivery_transport.h"
#include "sender/throttle_state_store.h"

namespace mailer::db {

using SysTime = sender::SysTime;
using ClaimedDelivery = sender::ClaimedDelivery;
using OutcomeKind = sender::OutcomeKind;
using DeliveryOutcome = sender::DeliveryOutcome;
using ThrottleStateRow = sender::ThrottleStateRow;
using ThrottleHistoryRow = sender::ThrottleHistoryRow;

// "sent", "deferred", "bounced", "failed", "released".
std::string_view outcome_name(OutcomeKind kind);

// Deliveries of one campaign by state; every state is present (0 if none).
using StateCounts = std::map<std::string, std::int64_t>;

// The delivery states in the order reports list them.
const std::vector<std::string>& delivery_states();

// Result of freezing an audience.
struct FreezeResult {
  // False when the audience was already frozen (nothing was inserted).
  bool frozen_now = false;
  std::int64_t queued = 0;
  std::int64_t skipped = 0;
};

// Why `mailer run --until-idle` would keep waiting, from the database's view.
struct PendingWork {
  // Deliveries of running campaigns sendable now.
  std::int64_t sendable_now = 0;
  // Deliveries of running campaigns leased by any worker (in flight, or held
  // by a dead worker until its lease expires).
  std::int64_t leased = 0;
  // Earliest future next_attempt_at among queued/deferred deliveries of
  // running campaigns.
  std::optional<SysTime> next_retry_at;
};

class DeliveryQueue : public sender::ThrottleStateStore {
 public:
  // Registers the queue's prepared statements on `db`.
  explicit DeliveryQueue(Database& db);

  // The provider key of a domain without a `domains` row.
  using ProviderOf = std::function<std::string(std::string_view domain)>;

  // Inserts one delivery per member of the campaign's list in one set-based
  // statement: queued with the provider from `domains` (or provider_of for
  // domains without a row), or skipped when the address is suppressed. Marks
  // the campaign's audience frozen. Does nothing when it already is (two
  // workers racing on it are serialised by a row lock). Throws
  // std::invalid_argument for an unknown campaign.
  FreezeResult freeze_audience(std::int64_t campaign_id, const ProviderOf& provider_of);

  // Claims up to `limit` deliveries for `provider` that are due now, from
  // running campaigns (only `campaign_id` when given), oldest due first,
  // leased to `owner` until now + `lease`: their state stays queued or
  // deferred, reported as "sending" while the lease lasts. A delivery whose
  // lease expired (its worker died or hung) is claimable as any other.
  // Deliveries whose address was suppressed after the freeze are marked
  // skipped instead and not returned. Rows locked by another worker are
  // skipped, never waited for.
  std::vector<ClaimedDelivery> claim(std::string_view provider, std::string_view owner,
                                     std::size_t limit, std::chrono::milliseconds lease,
                                     std::optional<std::int64_t> campaign_id = std::nullopt);

  // Writes a batch of outcomes in one statement, only to rows still leased by
  // `owner` (a lost lease means another worker may own the row now: the
  // outcome is dropped). Bounces also suppress the address (hard_bounce) in
  // the same statement. Returns how many outcomes were applied.
  std::size_t write_outcomes(std::string_view owner, const std::vector<DeliveryOutcome>& outcomes);

  // Extends the leases of `ids` that `owner` still holds to now + `lease`.
  // Only the ids the worker knows it holds: a claim whose commit was lost
  // with the connection leaves rows the worker never saw, and those must
  // expire rather than be renewed forever. Returns the count.
  std::size_t renew_leases(std::string_view owner, const std::vector<std::int64_t>& ids,
                           std::chrono::milliseconds lease);

  // Returns every lease `owner` still holds to the queue untouched (queued,
  // or deferred when attempted before). Returns the count.
  std::size_t release_leases(std::string_view owner);

  // Marks finished every running or waiting_window campaign whose audience is
  // frozen and whose deliveries are all final (sent, bounced, failed,
  // skipped). Returns the ids of the campaigns it finished.
  std::vector<std::int64_t> finish_completed();

  // Deliveries of a campaign by state.
  StateCounts counts(std::int64_t campaign_id);

  // Providers that have queued or deferred deliveries (any campaign), found
  // with a skip scan of the claim index.
  std::vector<std::string> providers_with_work();

  // What is left to do for running campaigns (only `campaign_id` when given).
  PendingWork pending(std::optional<std::int64_t> campaign_id = std::nullopt);

  // Throttle state: upsert one row, load every row of an egress (empty
  // egress: all rows), append history samples (one statement).
  void save_throttle_state(const ThrottleStateRow& row);
  std::vector<ThrottleStateRow> load_throttle_states(std::string_view egress = {});
  void append_throttle_history(const std::vector<ThrottleHistoryRow>& rows);

 private:
  // sender::ThrottleStateStore, for the dispatcher: the methods above; the
  // two writes report a lost connection as sender::StoreUnavailable.
  std::vector<ThrottleStateRow> load_states(std::string_view egress) override;
  void save_state(const ThrottleStateRow& row) override;
  void append_history(const std::vector<ThrottleHistoryRow>& rows) override;

  Database& db_;
};

// A PostgreSQL array literal of texts ("{\"a\",NULL}"), for unnest()
// parameters; nullopt elements become NULL.
std::string pg_text_array(const std::vector<std::optional<std::string>>& values);

// A PostgreSQL array literal of integers ("{1,2}"), for unnest() and ANY()
// parameters.
std::string pg_int_array(const std::vector<std::int64_t>& values);

}  // namespace mailer::db
