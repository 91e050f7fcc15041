// `mailer status`: campaigns with delivery counts and feedback (bounces,
// complaints, auto-replies and their rates per sent message), and
// per-provider throttle state (rate, mode, last throttle reply).
#include <fmt/format.h>

#include <iostream>

#include "app/base/errors.h"
#include "app/campaigns/campaign_report.h"
#include "app/campaigns/campaign_store.h"
#include "app/cli/commands.h"
#include "app/db/feedback_store.h"

namespace mailer::app {
namespace {

// Finished and cancelled campaigns stay in the report this long.
constexpr auto kRecentlyEnded = std::chrono::hours(24);

int run_status(Context& ctx, bool json) {
  db::Database& db = ctx.database();
  CampaignStore store(db);
  db::DeliveryQueue queue(db);
  db::FeedbackStore feedback(db);
  const auto now = std::chrono::system_clock::now();
  nlohmann::json campaigns = nlohmann::json::array();
  for (const Campaign& c : store.all()) {
    const bool ended = c.status == kFinished || c.status == kCancelled;
    if (ended && (!c.finished_at || now - *c.finished_at > kRecentlyEnded)) continue;
    nlohmann::json j = campaign_summary_json(c);
    nlohmann::json counts = nlohmann::json::object();
    for (const auto& [state, n] : queue.counts(c.id)) counts[state] = n;
    j["counts"] = counts;
    const db::CampaignFeedback f = feedback.campaign_feedback(c.id);
    j["feedback"] = {{"hard", f.counts.hard},
                     {"soft", f.counts.soft},
                     {"complaints", f.counts.complaints},
                     {"auto_replies", f.counts.auto_replies},
                     {"unmatched", f.counts.unmatched},
                     {"sent", f.sent},
                     {"bounce_rate", f.bounce_rate()},
                     {"soft_bounce_rate", f.soft_bounce_rate()},
                     {"complaint_rate", f.complaint_rate()},
                     {"auto_reply_rate", f.auto_reply_rate()}};
    campaigns.push_back(j);
  }
  const nlohmann::json providers = throttle_states_json(queue.load_throttle_states());
  if (json) {
    print_json({{"campaigns", campaigns}, {"providers", providers}});
    return kExitOk;
  }
  std::cout << "campaigns\n";
  if (campaigns.empty()) std::cout << "  (none active or ended in the last 24h)\n";
  for (const auto& c : campaigns) {
    std::cout << fmt::format(
        "  {:>5} {:<14} {:<28} queued {} sending {} sent {} deferred {} "
        "bounced {} failed {} skipped {}\n",
        c["id"].get<std::int64_t>(), c["status"].get<std::string>(), c["name"].get<std::string>(),
        c["counts"]["queued"].get<std::int64_t>(), c["counts"]["sending"].get<std::int64_t>(),
        c["counts"]["sent"].get<std::int64_t>(), c["counts"]["deferred"].get<std::int64_t>(),
        c["counts"]["bounced"].get<std::int64_t>(), c["counts"]["failed"].get<std::int64_t>(),
        c["counts"]["skipped"].get<std::int64_t>());
    const auto& f = c["feedback"];
    std::cout << fmt::format(
        "        feedback: hard {} ({:.2f}%) soft {} ({:.2f}%) complaints {} ({:.3f}%) "
        "auto_replies {} ({:.2f}%) unmatched {}, of {} sent\n",
        f["hard"].get<std::int64_t>(), 100 * f["bounce_rate"].get<double>(),
        f["soft"].get<std::int64_t>(), 100 * f["soft_bounce_rate"].get<double>(),
        f["complaints"].get<std::int64_t>(), 100 * f["complaint_rate"].get<double>(),
        f["auto_replies"].get<std::int64_t>(), 100 * f["auto_reply_rate"].get<double>(),
        f["unmatched"].get<std::int64_t>(), f["sent"].get<std::int64_t>());
  }
  std::cout << "providers\n";
  if (providers.empty()) std::cout << "  (no learned throttle state yet)\n";
  for (const auto& [name, p] : providers.items()) {
    std::cout << fmt::format("  {:<24} rate {:>8.1f}/s  {:<9}  last throttle reply: {}\n", name,
                             p["rate"].get<double>(), p["state"].get<std::string>(),
                             p["last_throttle_reply"].is_null()
                                 ? std::string("-")
                                 : p["last_throttle_reply"].get<std::string>());
  }
  return kExitOk;
}

}  // namespace

void register_status(CLI::App& root, Context& ctx, Action& action) {
  auto json = std::make_shared<bool>(false);
  CLI::App* sub = root.add_subcommand("status", "campaigns and per-provider throttle state");
  sub->add_flag("--json", *json, "print one JSON object on stdout");
  sub->callback(
      [&ctx, &action, json] { action = [&ctx, json] { return run_status(ctx, *json); }; });
}

}  // namespace mailer::app
