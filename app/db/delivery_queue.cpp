#include "app/db/delivery_queue.h"

#include <fmt/format.h>

#include <stdexcept>

namespace mailer::db {
namespace {

// Timestamps cross the wire as microseconds since the Unix epoch (bigint):
// exact, and no text parsing of time zones on either side.
constexpr const char* kFromMicros = "(timestamptz 'epoch' + ({}) * interval '1 microsecond')";
constexpr const char* kToMicros = "(extract(epoch from {}) * 1000000)::bigint";

std::string from_micros(std::string_view expr) {
  return fmt::format(fmt::runtime(kFromMicros), expr);
}
std::string to_micros(std::string_view expr) {
  return fmt::format(fmt::runtime(kToMicros), expr);
}

std::int64_t micros_of(SysTime t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

SysTime time_of_micros(std::int64_t us) {
  return SysTime(std::chrono::duration_cast<SysTime::duration>(std::chrono::microseconds(us)));
}

std::optional<SysTime> optional_time(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return time_of_micros(f.as<std::int64_t>());
}

std::string optional_int_array(const std::vector<std::optional<std::int64_t>>& values) {
  std::string out = "{";
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    out += values[i] ? std::to_string(*values[i]) : "NULL";
  }
  out += '}';
  return out;
}

// Every statement of the queue, prepared once per connection.
constexpr const char* kFreezeLock = "queue_freeze_lock";
constexpr const char* kFreezeInsert = "queue_freeze_insert";
constexpr const char* kFreezeMissingDomains = "queue_freeze_missing_domains";
constexpr const char* kFreezeMark = "queue_freeze_mark";
constexpr const char* kClaim = "queue_claim";
constexpr const char* kOutcomes = "queue_outcomes";
constexpr const char* kRenew = "queue_renew";
constexpr const char* kRelease = "queue_release";
constexpr const char* kFinish = "queue_finish_completed";
constexpr const char* kCounts = "queue_counts";
constexpr const char* kProviders = "queue_providers";
constexpr const char* kPending = "queue_pending";
constexpr const char* kSaveThrottle = "queue_save_throttle";
constexpr const char* kLoadThrottle = "queue_load_throttle";
constexpr const char* kAppendHistory = "queue_append_history";

}  // namespace

std::string_view outcome_name(OutcomeKind kind) {
  switch (kind) {
    case OutcomeKind::kSent:
      return "sent";
    case OutcomeKind::kDeferred:
      return "deferred";
    case OutcomeKind::kBounced:
      return "bounced";
    case OutcomeKind::kFailed:
      return "failed";
    case OutcomeKind::kReleased:
      return "released";
  }
  return "released";
}

const std::vector<std::string>& delivery_states() {
  static const std::vector<std::string> states = {"queued",  "sending", "sent",   "deferred",
                                                  "bounced", "failed",  "skipped"};
  return states;
}

std::string pg_int_array(const std::vector<std::int64_t>& values) {
  std::string out = "{";
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(values[i]);
  }
  out += '}';
  return out;
}

std::string pg_text_array(const std::vector<std::optional<std::string>>& values) {
  std::string out = "{";
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    if (!values[i]) {
      out += "NULL";
      continue;
    }
    out += '"';
    for (char c : *values[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

DeliveryQueue::DeliveryQueue(Database& db) : db_(db) {
  // Serialises two freezes of one campaign and tells whether it is done.
  db_.prepare(kFreezeLock,
              "SELECT audience_frozen_at IS NOT NULL FROM campaigns WHERE id = $1 FOR UPDATE");
  // Domains of the list's members that have no domains row: their provider
  // comes from the provider classifier, passed to the insert as arrays.
  db_.prepare(kFreezeMissingDomains,
              "SELECT DISTINCT r.domain FROM list_members m"
              " JOIN recipients r ON r.id = m.recipient_id"
              " LEFT JOIN domains d ON d.domain = r.domain"
              " WHERE m.list_id = (SELECT list_id FROM campaigns WHERE id = $1)"
              " AND d.domain IS NULL");
  db_.prepare(kFreezeInsert,
              "WITH fallback AS (SELECT * FROM unnest($2::text[], $3::text[]) AS f(domain, "
              "provider)),"
              " ins AS ("
              " INSERT INTO deliveries (campaign_id, recipient_id, provider, state, last_reply)"
              " SELECT $1, r.id, COALESCE(d.provider, f.provider, 'other:' || r.domain),"
              "  CASE WHEN s.email_key IS NULL THEN 'queued' ELSE 'skipped' END,"
              "  CASE WHEN s.email_key IS NULL THEN NULL ELSE 'suppressed: ' || s.reason END"
              " FROM list_members m"
              " JOIN recipients r ON r.id = m.recipient_id"
              " LEFT JOIN domains d ON d.domain = r.domain"
              " LEFT JOIN fallback f ON f.domain = r.domain"
              " LEFT JOIN suppressions s ON s.email_key = r.email_key"
              " WHERE m.list_id = (SELECT list_id FROM campaigns WHERE id = $1)"
              // Rows of one provider laid out together: a claim then touches
              // a few heap and index pages instead of one per row.
              " ORDER BY 3, 2"
              " ON CONFLICT (campaign_id, recipient_id) DO NOTHING"
              " RETURNING state)"
              " SELECT count(*) FILTER (WHERE state = 'queued'),"
              "  count(*) FILTER (WHERE state = 'skipped') FROM ins");
  db_.prepare(kFreezeMark,
              "UPDATE campaigns SET audience_frozen_at = now(), updated_at = now() WHERE id = $1");

  // The hot path. `picked` walks the claim index (provider, next_attempt_at)
  // and locks only the delivery rows, skipping rows other workers are
  // claiming and rows under an unexpired lease. The claim writes only lease
  // columns, which no index covers, so the update is heap-only. Addresses
  // suppressed since the freeze become skipped, not claimed. The recipient's
  // columns come back through the update's RETURNING: joining `claimed` to
  // `picked` afterwards was planned as a nested loop over two CTE scans
  // whenever the statistics put few rows in the queue (a campaign just
  // started), which made each claim quadratic in its batch size.
  db_.prepare(kClaim,
              "WITH picked AS ("
              " SELECT d.id, r.email, r.attributes, (s.email_key IS NOT NULL) AS suppressed,"
              "  s.reason AS suppressed_reason, d.lease_owner AS expired_owner"
              " FROM deliveries d"
              " JOIN campaigns c ON c.id = d.campaign_id AND c.status = 'running'"
              " JOIN recipients r ON r.id = d.recipient_id"
              " LEFT JOIN suppressions s ON s.email_key = r.email_key"
              " WHERE d.provider = $1 AND d.state IN ('queued', 'deferred')"
              "  AND d.next_attempt_at <= now() AND ($5::bigint = 0 OR d.campaign_id = $5)"
              "  AND (d.lease_expires_at IS NULL OR d.lease_expires_at <= now())"
              " ORDER BY d.next_attempt_at LIMIT $3"
              " FOR UPDATE OF d SKIP LOCKED),"
              " claimed AS ("
              " UPDATE deliveries d SET"
              "  state = CASE WHEN p.suppressed THEN 'skipped' ELSE d.state END,"
              "  lease_owner = CASE WHEN p.suppressed THEN NULL ELSE $2 END,"
              "  lease_expires_at = CASE WHEN p.suppressed THEN NULL"
              "   ELSE now() + $4::bigint * interval '1 millisecond' END,"
              "  last_reply = CASE WHEN p.suppressed"
              "   THEN 'suppressed after the audience was frozen: ' || p.suppressed_reason"
              "   ELSE d.last_reply END,"
              "  updated_at = now()"
              " FROM picked p WHERE d.id = p.id"
              " RETURNING d.id, d.campaign_id, d.recipient_id, d.attempts, d.first_attempt_at,"
              "  d.state, p.email, p.attributes, p.expired_owner)"
              " SELECT c.id, c.campaign_id, c.recipient_id, c.email, c.attributes::text,"
              "  c.attempts, " +
                  to_micros("c.first_attempt_at") +
                  ", c.expired_owner FROM claimed c WHERE c.state <> 'skipped'");

  // One statement per batch of outcomes, guarded by the lease: rows no longer
  // leased by this owner are left alone. The owner is a column of the
  // materialised batch, a join condition rather than a filter on deliveries:
  // statistics taken while nothing was leased put the rows leased by $1 at
  // about none, and with the filter the planner would walk the claim index
  // and rescan the whole batch for each row it finds. Bounces suppress the address in the
  // same statement.
  db_.prepare(
      kOutcomes,
      "WITH o AS MATERIALIZED ("
      " SELECT *, $1::text AS owner FROM unnest($2::bigint[], $3::text[], $4::bigint[],"
      "  $5::int[], $6::text[], $7::text[]) AS o(id, kind, next_us, code, reply, signal)),"
      " u AS ("
      " UPDATE deliveries d SET"
      "  state = CASE o.kind WHEN 'released' THEN d.state ELSE o.kind END,"
      "  attempts = d.attempts + CASE WHEN o.kind = 'released' THEN 0 ELSE 1 END,"
      "  first_attempt_at = CASE WHEN o.kind = 'released' THEN d.first_attempt_at"
      "   ELSE COALESCE(d.first_attempt_at, now()) END,"
      "  next_attempt_at = CASE WHEN o.kind = 'deferred' AND o.next_us IS NOT NULL THEN " +
          from_micros("o.next_us") +
          " ELSE d.next_attempt_at END,"
          "  sent_at = CASE WHEN o.kind = 'sent' THEN now() ELSE d.sent_at END,"
          "  last_reply_code = CASE WHEN o.kind = 'released' THEN d.last_reply_code"
          "   ELSE NULLIF(o.code, 0) END,"
          "  last_reply = CASE WHEN o.kind = 'released' THEN d.last_reply ELSE o.reply END,"
          "  last_signal = CASE WHEN o.kind = 'released' THEN d.last_signal ELSE o.signal END,"
          "  lease_owner = NULL, lease_expires_at = NULL, updated_at = now()"
          " FROM o WHERE d.id = o.id AND d.lease_owner = o.owner AND d.state IN ('queued', "
          "'deferred')"
          " RETURNING d.id, d.state, d.recipient_id, d.campaign_id, d.last_reply),"
          " s AS ("
          " INSERT INTO suppressions (email_key, reason, source, campaign_id, detail)"
          " SELECT r.email_key, 'hard_bounce', 'bounce', u.campaign_id, u.last_reply"
          " FROM u JOIN recipients r ON r.id = u.recipient_id WHERE u.state = 'bounced'"
          " ON CONFLICT (email_key) DO NOTHING)"
          " SELECT count(*) FROM u");

  db_.prepare(kRenew,
              "UPDATE deliveries SET lease_expires_at = now() + $2::bigint * interval '1 "
              "millisecond' WHERE state IN ('queued', 'deferred') AND lease_owner = $1"
              " AND id = ANY($3::bigint[])");
  // No index holds lease_owner (that would make claims write one): the
  // claim index's rows are read, which is once per worker start and stop.
  db_.prepare(
      kRelease,
      "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL, updated_at = now()"
      " WHERE state IN ('queued', 'deferred') AND lease_owner = $1");
  db_.prepare(
      kFinish,
      "UPDATE campaigns c SET status = 'finished', finished_at = now(), updated_at = now()"
      " WHERE c.status IN ('running', 'waiting_window') AND c.audience_frozen_at IS NOT NULL"
      " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.campaign_id = c.id"
      "  AND d.state IN ('queued', 'deferred'))"
      " RETURNING c.id");
  // "sending" is derived: an open delivery under an unexpired lease.
  db_.prepare(kCounts,
              "SELECT CASE WHEN state IN ('queued', 'deferred') AND lease_expires_at > now()"
              " THEN 'sending' ELSE state END, count(*)"
              " FROM deliveries WHERE campaign_id = $1 GROUP BY 1");
  // A skip scan: one index probe per distinct provider instead of reading
  // every queued row.
  db_.prepare(kProviders,
              "WITH RECURSIVE p(provider) AS ("
              " (SELECT provider FROM deliveries WHERE state IN ('queued', 'deferred')"
              "  ORDER BY provider LIMIT 1)"
              " UNION ALL"
              " SELECT (SELECT d.provider FROM deliveries d WHERE d.state IN ('queued', 'deferred')"
              "  AND d.provider > p.provider ORDER BY d.provider LIMIT 1)"
              " FROM p WHERE p.provider IS NOT NULL)"
              " SELECT provider FROM p WHERE provider IS NOT NULL");
  db_.prepare(kPending,
              "WITH running AS (SELECT id FROM campaigns WHERE status = 'running'"
              "  AND ($1::bigint = 0 OR id = $1))"
              " SELECT"
              " (SELECT count(*) FROM (SELECT 1 FROM deliveries d JOIN running c ON c.id ="
              "   d.campaign_id WHERE d.state IN ('queued', 'deferred') AND d.next_attempt_at <="
              "   now() AND (d.lease_expires_at IS NULL OR d.lease_expires_at <= now())"
              "   LIMIT 1000000) x),"
              " (SELECT count(*) FROM deliveries d JOIN running c ON c.id = d.campaign_id"
              "   WHERE d.state IN ('queued', 'deferred') AND d.lease_expires_at > now()),"
              " (SELECT " +
                  to_micros("min(d.next_attempt_at)") +
                  " FROM deliveries d JOIN running c ON c.id = d.campaign_id"
                  "   WHERE d.state IN ('queued', 'deferred') AND d.next_attempt_at > now())");

  db_.prepare(kSaveThrottle,
              "INSERT INTO throttle_state (provider, egress, state, rate, connection_limit, mode,"
              " suspended_until, last_throttle_reply, updated_at)"
              " VALUES ($1, $2, $3::jsonb, $4, $5, $6, " +
                  from_micros("$7::bigint") +
                  ", NULLIF($8, ''), now())"
                  " ON CONFLICT (provider, egress) DO UPDATE SET state = EXCLUDED.state,"
                  " rate = EXCLUDED.rate, connection_limit = EXCLUDED.connection_limit,"
                  " mode = EXCLUDED.mode, suspended_until = EXCLUDED.suspended_until,"
                  " last_throttle_reply = COALESCE(EXCLUDED.last_throttle_reply,"
                  "  throttle_state.last_throttle_reply),"
                  " updated_at = now()");
  db_.prepare(kLoadThrottle,
              "SELECT provider, egress, state::text, rate, connection_limit, mode, " +
                  to_micros("suspended_until") + ", last_throttle_reply, " +
                  to_micros("updated_at") +
                  " FROM throttle_state WHERE ($1 = '' OR egress = $1)"
                  " ORDER BY provider, egress");
  db_.prepare(kAppendHistory,
              "INSERT INTO throttle_history (provider, egress, rate, accepted, deferred, mode)"
              " SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::int[], $5::int[],"
              "  $6::text[])");
}

FreezeResult DeliveryQueue::freeze_audience(std::int64_t campaign_id,
                                            const ProviderOf& provider_of) {
  return db_.transact([&](pqxx::work& w) {
    FreezeResult result;
    pqxx::result lock = w.exec_prepared(kFreezeLock, campaign_id);
    if (lock.empty()) {
      throw std::invalid_argument(fmt::format("no campaign with id {}", campaign_id));
    }
    if (lock[0][0].as<bool>()) return result;
    std::vector<std::optional<std::string>> domains, providers;
    for (const auto& row : w.exec_prepared(kFreezeMissingDomains, campaign_id)) {
      std::string domain = row[0].as<std::string>();
      providers.emplace_back(provider_of ? provider_of(domain) : "other:" + domain);
      domains.emplace_back(std::move(domain));
    }
    pqxx::row counts = w.exec_prepared1(kFreezeInsert, campaign_id, pg_text_array(domains),
                                        pg_text_array(providers));
    result.frozen_now = true;
    result.queued = counts[0].as<std::int64_t>();
    result.skipped = counts[1].as<std::int64_t>();
    w.exec_prepared0(kFreezeMark, campaign_id);
    return result;
  });
}

std::vector<ClaimedDelivery> DeliveryQueue::claim(std::string_view provider, std::string_view owner,
                                                  std::size_t limit,
                                                  std::chrono::milliseconds lease,
                                                  std::optional<std::int64_t> campaign_id) {
  return db_.transact([&](pqxx::work& w) {
    // The claim must walk the claim index in next_attempt_at order and stop
    // at `limit`. Row estimates that put few of a provider's rows in running
    // campaigns (a table of many finished ones, or stale statistics) make
    // collecting every due row and sorting them look cheaper: that reads the
    // whole queue per claim. Without sorting the ordered walk is the plan.
    w.exec("SET LOCAL enable_sort = off");
    pqxx::result r = w.exec_prepared(
        kClaim, std::string(provider), std::string(owner), static_cast<std::int64_t>(limit),
        static_cast<std::int64_t>(lease.count()), campaign_id.value_or(0));
    std::vector<ClaimedDelivery> out;
    out.reserve(r.size());
    for (const auto& row : r) {
      ClaimedDelivery d;
      d.id = row[0].as<std::int64_t>();
      d.campaign_id = row[1].as<std::int64_t>();
      d.recipient_id = row[2].as<std::int64_t>();
      d.provider = provider;
      d.email = row[3].c_str();
      d.attributes_json = row[4].c_str();
      d.attempts = row[5].as<int>();
      d.first_attempt_at = optional_time(row[6]);
      if (!row[7].is_null()) d.expired_lease_of = row[7].c_str();
      out.push_back(std::move(d));
    }
    return out;
  });
}

std::size_t DeliveryQueue::write_outcomes(std::string_view owner,
                                          const std::vector<DeliveryOutcome>& outcomes) {
  if (outcomes.empty()) return 0;
  std::vector<std::int64_t> ids;
  std::vector<std::optional<std::int64_t>> next;
  std::vector<std::optional<std::string>> kinds, codes, replies, signals;
  ids.reserve(outcomes.size());
  for (const DeliveryOutcome& o : outcomes) {
    if (o.kind == OutcomeKind::kDeferred && !o.next_attempt_at) {
      throw std::invalid_argument(
          fmt::format("deferred outcome of delivery {} has no next attempt time", o.delivery_id));
    }
    ids.push_back(o.delivery_id);
    kinds.emplace_back(std::string(outcome_name(o.kind)));
    next.push_back(o.next_attempt_at ? std::optional(micros_of(*o.next_attempt_at)) : std::nullopt);
    codes.emplace_back(std::to_string(o.reply_code));
    replies.push_back(o.reply.empty() ? std::nullopt : std::optional(o.reply));
    signals.push_back(o.signal.empty() ? std::nullopt : std::optional(o.signal));
  }
  const std::string ids_text = pg_int_array(ids), kinds_text = pg_text_array(kinds),
                    next_text = optional_int_array(next), codes_text = pg_text_array(codes),
                    replies_text = pg_text_array(replies), signals_text = pg_text_array(signals);
  return db_.transact([&](pqxx::work& w) {
    pqxx::row r = w.exec_prepared1(kOutcomes, std::string(owner), ids_text, kinds_text, next_text,
                                   codes_text, replies_text, signals_text);
    return static_cast<std::size_t>(r[0].as<std::int64_t>());
  });
}

std::size_t DeliveryQueue::renew_leases(std::string_view owner,
                                        const std::vector<std::int64_t>& ids,
                                        std::chrono::milliseconds lease) {
  if (ids.empty()) return 0;
  const std::string ids_text = pg_int_array(ids);
  return db_.transact([&](pqxx::work& w) {
    return static_cast<std::size_t>(w.exec_prepared(kRenew, std::string(owner),
                                                    static_cast<std::int64_t>(lease.count()),
                                                    ids_text)
                                        .affected_rows());
  });
}

std::size_t DeliveryQueue::release_leases(std::string_view owner) {
  return db_.transact([&](pqxx::work& w) {
    return static_cast<std::size_t>(w.exec_prepared(kRelease, std::string(owner)).affected_rows());
  });
}

std::vector<std::int64_t> DeliveryQueue::finish_completed() {
  return db_.transact([&](pqxx::work& w) {
    std::vector<std::int64_t> ids;
    for (const auto& row : w.exec_prepared(kFinish)) ids.push_back(row[0].as<std::int64_t>());
    return ids;
  });
}

StateCounts DeliveryQueue::counts(std::int64_t campaign_id) {
  return db_.transact([&](pqxx::work& w) {
    StateCounts counts;
    for (const std::string& s : delivery_states()) counts[s] = 0;
    for (const auto& row : w.exec_prepared(kCounts, campaign_id)) {
      counts[row[0].as<std::string>()] = row[1].as<std::int64_t>();
    }
    return counts;
  });
}

std::vector<std::string> DeliveryQueue::providers_with_work() {
  return db_.transact([&](pqxx::work& w) {
    std::vector<std::string> providers;
    for (const auto& row : w.exec_prepared(kProviders)) {
      providers.push_back(row[0].as<std::string>());
    }
    return providers;
  });
}

PendingWork DeliveryQueue::pending(std::optional<std::int64_t> campaign_id) {
  return db_.transact([&](pqxx::work& w) {
    pqxx::row r = w.exec_prepared1(kPending, campaign_id.value_or(0));
    PendingWork p;
    p.sendable_now = r[0].as<std::int64_t>();
    p.leased = r[1].as<std::int64_t>();
    p.next_retry_at = optional_time(r[2]);
    return p;
  });
}

void DeliveryQueue::save_throttle_state(const ThrottleStateRow& row) {
  db_.transact([&](pqxx::work& w) {
    if (row.suspended_until) {
      w.exec_prepared0(kSaveThrottle, row.provider, row.egress, row.state_json, row.rate,
                       row.connection_limit, row.mode, micros_of(*row.suspended_until),
                       row.last_throttle_reply);
    } else {
      w.exec_prepared0(kSaveThrottle, row.provider, row.egress, row.state_json, row.rate,
                       row.connection_limit, row.mode, nullptr, row.last_throttle_reply);
    }
  });
}

std::vector<ThrottleStateRow> DeliveryQueue::load_throttle_states(std::string_view egress) {
  return db_.transact([&](pqxx::work& w) {
    std::vector<ThrottleStateRow> rows;
    for (const auto& r : w.exec_prepared(kLoadThrottle, std::string(egress))) {
      ThrottleStateRow t;
      t.provider = r[0].as<std::string>();
      t.egress = r[1].as<std::string>();
      t.state_json = r[2].as<std::string>();
      t.rate = r[3].as<double>();
      t.connection_limit = r[4].as<int>();
      t.mode = r[5].as<std::string>();
      t.suspended_until = optional_time(r[6]);
      t.last_throttle_reply = r[7].is_null() ? "" : r[7].as<std::string>();
      t.updated_at = time_of_micros(r[8].as<std::int64_t>());
      rows.push_back(std::move(t));
    }
    return rows;
  });
}

void DeliveryQueue::append_throttle_history(const std::vector<ThrottleHistoryRow>& rows) {
  if (rows.empty()) return;
  std::vector<std::optional<std::string>> providers, egresses, rates, accepted, deferred, modes;
  for (const ThrottleHistoryRow& r : rows) {
    providers.emplace_back(r.provider);
    egresses.emplace_back(r.egress);
    rates.emplace_back(fmt::format("{}", r.rate));
    accepted.emplace_back(std::to_string(r.accepted));
    deferred.emplace_back(std::to_string(r.deferred));
    modes.emplace_back(r.mode);
  }
  db_.transact([&](pqxx::work& w) {
    w.exec_prepared0(kAppendHistory, pg_text_array(providers), pg_text_array(egresses),
                     pg_text_array(rates), pg_text_array(accepted), pg_text_array(deferred),
                     pg_text_array(modes));
  });
}

std::vector<ThrottleStateRow> DeliveryQueue::load_states(std::string_view egress) {
  return load_throttle_states(egress);
}

void DeliveryQueue::save_state(const ThrottleStateRow& row) {
  try {
    save_throttle_state(row);
  } catch (const ConnectionError& e) {
    throw sender::StoreUnavailable(e.what());
  }
}

void DeliveryQueue::append_history(const std::vector<ThrottleHistoryRow>& rows) {
  try {
    append_throttle_history(rows);
  } catch (const ConnectionError& e) {
    throw sender::StoreUnavailable(e.what());
  }
}

}  // namespace mailer::db
