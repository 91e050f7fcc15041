// What `campaign list`, `campaign show` and `status` report, as the JSON
// shapes of CLI.md (fields may be added, never renamed) and as text.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "app/campaigns/campaign_store.h"
#include "app/config/config.h"
#include "app/db/delivery_queue.h"

namespace mailer::app {

// {"id","name","status","list","scheduled_at","window","timezone",...}.
nlohmann::json campaign_summary_json(const Campaign& c);

// campaign_summary_json plus "counts" (every delivery state) and
// "providers": {"gmail":{"rate":X,"state":"normal|backoff|suspended",
// "counts":{...}},...} for the providers of the campaign's deliveries. The
// rate is the learned one from throttle_state (summed over egresses), else the
// configured initial rate.
nlohmann::json campaign_report_json(const Campaign& c, CampaignStore& store,
                                    db::DeliveryQueue& queue, const Config& config);

// {"provider":{"rate","state","connection_limit","last_throttle_reply",
// "suspended_until","updated_at","egress":{NAME:{...}}}} from throttle_state.
nlohmann::json throttle_states_json(const std::vector<db::ThrottleStateRow>& rows);

// Text rendering of campaign_report_json.
std::string format_campaign_report(const nlohmann::json& report);

}  // namespace mailer::app
