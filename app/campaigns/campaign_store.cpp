#include "app/campaigns/campaign_store.h"

#include <fmt/format.h>

namespace mailer::app {
namespace {

constexpr const char* kColumns =
    "c.id, c.name, c.list_id, l.name, c.status, c.from_header, c.reply_to, c.subject,"
    " c.text_body, c.html_body,"
    " (extract(epoch from c.scheduled_at) * 1000000)::bigint,"
    " (extract(epoch from c.window_start) / 60)::int, (extract(epoch from c.window_end) / 60)::int,"
    " c.timezone,"
    " (extract(epoch from c.audience_frozen_at) * 1000000)::bigint,"
    " (extract(epoch from c.started_at) * 1000000)::bigint,"
    " (extract(epoch from c.finished_at) * 1000000)::bigint,"
    " (extract(epoch from c.created_at) * 1000000)::bigint"
    " FROM campaigns c JOIN lists l ON l.id = c.list_id";

SysTime time_of(std::int64_t us) {
  return SysTime(std::chrono::duration_cast<SysTime::duration>(std::chrono::microseconds(us)));
}

std::int64_t micros_of(SysTime t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

std::optional<SysTime> opt_time(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return time_of(f.as<std::int64_t>());
}

std::optional<std::string> opt_text(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return f.as<std::string>();
}

std::optional<int> opt_int(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return f.as<int>();
}

// NULL for an absent value: libpqxx 6 passes a null char pointer as NULL.
const char* text_or_null(const std::optional<std::string>& v) {
  return v ? v->c_str() : nullptr;
}

}  // namespace

std::optional<SendWindow> Campaign::window() const {
  if (!window_start || !window_end) return std::nullopt;
  return SendWindow(*window_start, *window_end, find_zone(timezone));
}

CampaignStore::CampaignStore(db::Database& db) : db_(db) {
  db_.prepare("campaign_find_list", "SELECT id FROM lists WHERE name = $1");
  db_.prepare("campaign_attribute_names",
              "SELECT DISTINCT jsonb_object_keys(r.attributes) FROM list_members m"
              " JOIN recipients r ON r.id = m.recipient_id WHERE m.list_id = $1");
  db_.prepare(
      "campaign_insert",
      "INSERT INTO campaigns (name, list_id, from_header, reply_to, subject, text_body,"
      " html_body, status, scheduled_at, window_start, window_end, timezone)"
      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8,"
      " timestamptz 'epoch' + $9::bigint * interval '1 microsecond',"
      " make_time($10::int / 60, $10::int % 60, 0), make_time($11::int / 60, $11::int % 60, 0),"
      " $12)"
      " RETURNING id");
  db_.prepare("campaign_find", std::string("SELECT ") + kColumns + " WHERE c.id = $1");
  db_.prepare("campaign_all", std::string("SELECT ") + kColumns + " ORDER BY c.id DESC");
  db_.prepare("campaign_active",
              std::string("SELECT ") + kColumns +
                  " WHERE c.status IN ('scheduled', 'running', 'waiting_window') ORDER BY c.id");
  db_.prepare("campaign_transition",
              "UPDATE campaigns SET status = $3, updated_at = now(),"
              " started_at = CASE WHEN $4 THEN COALESCE(started_at,"
              "  timestamptz 'epoch' + $5::bigint * interval '1 microsecond') ELSE started_at END,"
              " finished_at = CASE WHEN $3 IN ('finished', 'cancelled')"
              "  THEN timestamptz 'epoch' + $5::bigint * interval '1 microsecond'"
              "  ELSE finished_at END"
              " WHERE id = $1 AND status = ANY($2::text[])");
  db_.prepare("campaign_skip_unsent",
              "UPDATE deliveries SET state = 'skipped', last_reply = 'campaign cancelled',"
              " updated_at = now() WHERE campaign_id = $1 AND state IN ('queued', 'deferred')"
              // In flight: its outcome is still to come.
              " AND (lease_expires_at IS NULL OR lease_expires_at <= now())");
  db_.prepare("campaign_provider_progress",
              "SELECT provider, CASE WHEN state IN ('queued', 'deferred') AND"
              " lease_expires_at > now() THEN 'sending' ELSE state END, count(*)"
              " FROM deliveries WHERE campaign_id = $1 GROUP BY 1, 2 ORDER BY provider");
}

std::optional<std::int64_t> CampaignStore::find_list(const std::string& name) {
  return db_.transact([&](pqxx::work& w) -> std::optional<std::int64_t> {
    pqxx::result r = w.exec_prepared("campaign_find_list", name);
    if (r.empty()) return std::nullopt;
    return r[0][0].as<std::int64_t>();
  });
}

std::set<std::string, std::less<>> CampaignStore::attribute_names(std::int64_t list_id) {
  return db_.transact([&](pqxx::work& w) {
    std::set<std::string, std::less<>> names;
    for (const auto& row : w.exec_prepared("campaign_attribute_names", list_id)) {
      names.insert(row[0].as<std::string>());
    }
    return names;
  });
}

std::int64_t CampaignStore::create(const NewCampaign& c) {
  const std::string status = c.scheduled_at ? kScheduled : kDraft;
  return db_.transact([&](pqxx::work& w) {
    const char* at = nullptr;
    std::string at_text;
    if (c.scheduled_at) {
      at_text = std::to_string(micros_of(*c.scheduled_at));
      at = at_text.c_str();
    }
    std::string ws = c.window_start ? std::to_string(*c.window_start) : "";
    std::string we = c.window_end ? std::to_string(*c.window_end) : "";
    return w
        .exec_prepared1("campaign_insert", c.name, c.list_id, c.from, text_or_null(c.reply_to),
                        c.subject, text_or_null(c.text_body), text_or_null(c.html_body), status, at,
                        c.window_start ? ws.c_str() : nullptr, c.window_end ? we.c_str() : nullptr,
                        c.timezone)[0]
        .as<std::int64_t>();
  });
}

Campaign CampaignStore::read(const pqxx::row& r) {
  Campaign c;
  c.id = r[0].as<std::int64_t>();
  c.name = r[1].as<std::string>();
  c.list_id = r[2].as<std::int64_t>();
  c.list_name = r[3].as<std::string>();
  c.status = r[4].as<std::string>();
  c.from = r[5].as<std::string>();
  c.reply_to = opt_text(r[6]);
  c.subject = r[7].as<std::string>();
  c.text_body = opt_text(r[8]);
  c.html_body = opt_text(r[9]);
  c.scheduled_at = opt_time(r[10]);
  c.window_start = opt_int(r[11]);
  c.window_end = opt_int(r[12]);
  c.timezone = r[13].as<std::string>();
  c.audience_frozen_at = opt_time(r[14]);
  c.started_at = opt_time(r[15]);
  c.finished_at = opt_time(r[16]);
  c.created_at = time_of(r[17].as<std::int64_t>());
  return c;
}

std::optional<Campaign> CampaignStore::find(std::int64_t id) {
  return db_.transact([&](pqxx::work& w) -> std::optional<Campaign> {
    pqxx::result r = w.exec_prepared("campaign_find", id);
    if (r.empty()) return std::nullopt;
    return read(r[0]);
  });
}

std::vector<Campaign> CampaignStore::all() {
  return db_.transact([&](pqxx::work& w) {
    std::vector<Campaign> out;
    for (const auto& row : w.exec_prepared("campaign_all")) out.push_back(read(row));
    return out;
  });
}

std::vector<Campaign> CampaignStore::active() {
  return db_.transact([&](pqxx::work& w) {
    std::vector<Campaign> out;
    for (const auto& row : w.exec_prepared("campaign_active")) out.push_back(read(row));
    return out;
  });
}

bool CampaignStore::transition(std::int64_t id, const std::vector<std::string>& from,
                               const std::string& to, SysTime now, bool started) {
  std::vector<std::optional<std::string>> states(from.begin(), from.end());
  const std::string from_text = db::pg_text_array(states);
  return db_.transact([&](pqxx::work& w) {
    return w.exec_prepared("campaign_transition", id, from_text, to, started, micros_of(now))
               .affected_rows() == 1;
  });
}

std::int64_t CampaignStore::skip_unsent(std::int64_t id) {
  return db_.transact([&](pqxx::work& w) {
    return static_cast<std::int64_t>(w.exec_prepared("campaign_skip_unsent", id).affected_rows());
  });
}

std::vector<ProviderProgress> CampaignStore::provider_progress(std::int64_t id) {
  return db_.transact([&](pqxx::work& w) {
    std::vector<ProviderProgress> out;
    for (const auto& row : w.exec_prepared("campaign_provider_progress", id)) {
      const std::string provider = row[0].as<std::string>();
      if (out.empty() || out.back().provider != provider) {
        ProviderProgress p;
        p.provider = provider;
        for (const std::string& s : db::delivery_states()) p.counts[s] = 0;
        out.push_back(std::move(p));
      }
      out.back().counts[row[1].as<std::string>()] = row[2].as<std::int64_t>();
    }
    return out;
  });
}

}  // namespace mailer::app
