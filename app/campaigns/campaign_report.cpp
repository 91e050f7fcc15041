#include "app/campaigns/campaign_report.h"

#include <fmt/format.h>

#include "throttle/provider_classifier.h"

namespace mailer::app {
namespace {

nlohmann::json time_or_null(const std::optional<SysTime>& t) {
  return t ? nlohmann::json(format_utc(*t)) : nlohmann::json(nullptr);
}

// normal < backoff < suspended: the worst mode wins across egresses.
int severity(const std::string& mode) {
  if (mode == "suspended") return 2;
  if (mode == "backoff") return 1;
  return 0;
}

nlohmann::json counts_json(const db::StateCounts& counts) {
  nlohmann::json out = nlohmann::json::object();
  for (const std::string& s : db::delivery_states()) {
    auto it = counts.find(s);
    out[s] = it == counts.end() ? 0 : it->second;
  }
  return out;
}

}  // namespace

nlohmann::json campaign_summary_json(const Campaign& c) {
  nlohmann::json j = {{"id", c.id},
                      {"name", c.name},
                      {"status", c.status},
                      {"list", c.list_name},
                      {"scheduled_at", time_or_null(c.scheduled_at)},
                      {"timezone", c.timezone},
                      {"started_at", time_or_null(c.started_at)},
                      {"finished_at", time_or_null(c.finished_at)}};
  if (auto w = c.window()) {
    j["window"] = w->text();
  } else {
    j["window"] = nullptr;
  }
  return j;
}

nlohmann::json throttle_states_json(const std::vector<db::ThrottleStateRow>& rows) {
  nlohmann::json out = nlohmann::json::object();
  for (const db::ThrottleStateRow& r : rows) {
    nlohmann::json& p = out[r.provider];
    if (p.is_null()) {
      p = {{"rate", 0.0},
           {"state", "normal"},
           {"connection_limit", 0},
           {"last_throttle_reply", nullptr},
           {"suspended_until", nullptr},
           {"egress", nlohmann::json::object()}};
    }
    p["rate"] = p["rate"].get<double>() + r.rate;
    p["connection_limit"] = p["connection_limit"].get<int>() + r.connection_limit;
    if (severity(r.mode) > severity(p["state"].get<std::string>())) p["state"] = r.mode;
    if (!r.last_throttle_reply.empty()) p["last_throttle_reply"] = r.last_throttle_reply;
    if (r.suspended_until) p["suspended_until"] = format_utc(*r.suspended_until);
    p["egress"][r.egress] = {{"rate", r.rate},
                             {"state", r.mode},
                             {"connection_limit", r.connection_limit},
                             {"last_throttle_reply", r.last_throttle_reply.empty()
                                                         ? nlohmann::json(nullptr)
                                                         : nlohmann::json(r.last_throttle_reply)},
                             {"suspended_until", time_or_null(r.suspended_until)},
                             {"updated_at", format_utc(r.updated_at)}};
  }
  return out;
}

nlohmann::json campaign_report_json(const Campaign& c, CampaignStore& store,
                                    db::DeliveryQueue& queue, const Config& config) {
  nlohmann::json j = campaign_summary_json(c);
  j["counts"] = counts_json(queue.counts(c.id));
  const nlohmann::json learned = throttle_states_json(queue.load_throttle_states());
  nlohmann::json providers = nlohmann::json::object();
  for (const ProviderProgress& p : store.provider_progress(c.id)) {
    nlohmann::json entry;
    if (learned.contains(p.provider)) {
      entry = {{"rate", learned[p.provider]["rate"]},
               {"state", learned[p.provider]["state"]},
               {"learned", true}};
    } else {
      const std::string family = throttle::provider_family(p.provider);
      auto it = config.throttle.providers.find(family);
      const double rate = it != config.throttle.providers.end()
                              ? it->second.initial_rate
                              : throttle::ProviderPolicy{}.initial_rate;
      entry = {{"rate", rate}, {"state", "normal"}, {"learned", false}};
    }
    entry["counts"] = counts_json(p.counts);
    providers[p.provider] = entry;
  }
  j["providers"] = providers;
  return j;
}

std::string format_campaign_report(const nlohmann::json& r) {
  std::string out =
      fmt::format("campaign {}: {}\n", r["id"].get<std::int64_t>(), r["name"].get<std::string>());
  out += fmt::format("  status      {}\n", r["status"].get<std::string>());
  out += fmt::format("  list        {}\n", r["list"].get<std::string>());
  if (!r["scheduled_at"].is_null()) {
    out += fmt::format("  scheduled   {}\n", r["scheduled_at"].get<std::string>());
  }
  if (!r["window"].is_null()) {
    out += fmt::format("  window      {} {}\n", r["window"].get<std::string>(),
                       r["timezone"].get<std::string>());
  }
  out += "  deliveries ";
  for (const std::string& s : db::delivery_states()) {
    out += fmt::format(" {} {}", s, r["counts"][s].get<std::int64_t>());
  }
  out += "\n";
  if (r.contains("feedback")) {
    const nlohmann::json& f = r["feedback"];
    out += fmt::format("  feedback    hard {} soft {} complaints {} auto_replies {} unmatched {}\n",
                       f["hard"].get<std::int64_t>(), f["soft"].get<std::int64_t>(),
                       f["complaints"].get<std::int64_t>(), f["auto_replies"].get<std::int64_t>(),
                       f["unmatched"].get<std::int64_t>());
  }
  if (r.contains("pause_reason") && r["pause_reason"].is_string()) {
    out += fmt::format("  paused      {}\n", r["pause_reason"].get<std::string>());
  }
  for (const auto& item : r["providers"].items()) {
    // Named references, not structured bindings: the lambda below captures
    // `p`, which clang 14 does not allow for a binding.
    const std::string& name = item.key();
    const nlohmann::json& p = item.value();
    out += fmt::format("  {:<24} rate {:>8.1f}/s  {:<9}  sent {} of {}\n", name,
                       p["rate"].get<double>(), p["state"].get<std::string>(),
                       p["counts"]["sent"].get<std::int64_t>(), [&] {
                         std::int64_t total = 0;
                         for (const auto& [_, n] : p["counts"].items())
                           total += n.get<std::int64_t>();
                         return total;
                       }());
  }
  return out;
}

}  // namespace mailer::app
