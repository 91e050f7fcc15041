// Campaigns in PostgreSQL: creation, lookup, the lifecycle's state changes
// (each one conditional on the current state, so concurrent workers and
// commands never undo each other), and progress reports.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "app/campaigns/send_window.h"
#include "app/db/database.h"
#include "app/db/delivery_queue.h"

namespace mailer::app {

// The campaign states of DESIGN.md.
inline constexpr const char* kDraft = "draft";
inline constexpr const char* kScheduled = "scheduled";
inline constexpr const char* kRunning = "running";
inline constexpr const char* kPaused = "paused";
inline constexpr const char* kWaitingWindow = "waiting_window";
inline constexpr const char* kFinished = "finished";
inline constexpr const char* kCancelled = "cancelled";

// What `campaign create` stores, already validated.
struct NewCampaign {
  std::string name;
  std::int64_t list_id = 0;
  std::string from;
  std::optional<std::string> reply_to;
  std::string subject;
  std::optional<std::string> text_body;
  std::optional<std::string> html_body;
  std::optional<SysTime> scheduled_at;
  // Minutes after local midnight.
  std::optional<int> window_start;
  std::optional<int> window_end;
  std::string timezone = "UTC";
};

struct Campaign {
  std::int64_t id = 0;
  std::string name;
  std::int64_t list_id = 0;
  std::string list_name;
  std::string status;
  std::string from;
  std::optional<std::string> reply_to;
  std::string subject;
  std::optional<std::string> text_body;
  std::optional<std::string> html_body;
  std::optional<SysTime> scheduled_at;
  std::optional<int> window_start;
  std::optional<int> window_end;
  std::string timezone = "UTC";
  std::optional<SysTime> audience_frozen_at;
  std::optional<SysTime> started_at;
  std::optional<SysTime> finished_at;
  SysTime created_at{};

  // The send window, when the campaign has one.
  std::optional<SendWindow> window() const;
};

// One provider's share of a campaign, for `campaign show` and `status`.
struct ProviderProgress {
  std::string provider;
  db::StateCounts counts;
};

class CampaignStore {
 public:
  explicit CampaignStore(db::Database& db);

  // The id of list `name`, or nullopt.
  std::optional<std::int64_t> find_list(const std::string& name);
  // Attribute names the list's recipients carry (merge fields they can use).
  std::set<std::string, std::less<>> attribute_names(std::int64_t list_id);

  // Stores a campaign: scheduled when it has a start time, else draft.
  std::int64_t create(const NewCampaign& c);

  std::optional<Campaign> find(std::int64_t id);
  // Every campaign, newest first.
  std::vector<Campaign> all();
  // Campaigns the scheduler looks after: scheduled, running, waiting_window.
  std::vector<Campaign> active();

  // Sets `to` when the status is one of `from`; `started` also sets
  // started_at (first start only). Returns false when the status was not one
  // of `from` (someone else moved it first).
  bool transition(std::int64_t id, const std::vector<std::string>& from, const std::string& to,
                  SysTime now, bool started = false);

  // Turns a cancelled campaign's unsent deliveries (queued, deferred) into
  // skipped. Returns the count.
  std::int64_t skip_unsent(std::int64_t id);

  // Deliveries of a campaign by provider and state.
  std::vector<ProviderProgress> provider_progress(std::int64_t id);

 private:
  Campaign read(const pqxx::row& row);
  db::Database& db_;
};

}  // namespace mailer::app
