// The campaign lifecycle and the scheduler tick.
//
// Lifecycle (commands): start (draft|scheduled -> running, freezing the
// audience), pause (scheduled|running|waiting_window -> paused), resume
// (paused -> running, or scheduled while its start time is still ahead),
// cancel (any unfinished state -> cancelled; unsent deliveries become
// skipped). Impossible transitions are UsageErrors that say what applies.
//
// Scheduler tick (every worker, every [worker] tick): starts scheduled
// campaigns that are due; moves running
// campaigns outside their daily window to waiting_window and back when the
// window opens; marks finished the campaigns whose deliveries are all final.
// Every change is a conditional update, so many workers may tick at once.
//
// Past-due rule: a scheduled campaign found due starts now, however late. It
// is never skipped silently and never started silently late: when it is later
// than [worker] past_due_warning (default 1h), a warning names the campaign,
// its due time, how late it is, and how to stop it (`campaign pause ID`).
// Sending still follows the send window and the per-provider throttle, so a
// late start does not mean a burst.
//
// Time comes from an injected clock, so tests cover windows, midnight and DST
// without sleeping.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "app/base/duration.h"
#include "app/campaigns/campaign_store.h"
#include "app/db/delivery_queue.h"

namespace mailer::app {

using Clock = std::function<SysTime()>;

// The status a campaign that starts or resumes at `now` enters: running, or
// waiting_window when it has a window that is closed at `now`.
std::string running_status(const Campaign& c, SysTime now);

// Starts, pauses, resumes and cancels campaigns; see the file comment.
class CampaignLifecycle {
 public:
  CampaignLifecycle(CampaignStore& store, db::DeliveryQueue& queue,
                    db::DeliveryQueue::ProviderOf provider_of);

  // Each returns the campaign's new status. Throws UsageError for an unknown
  // campaign or a transition its state does not allow.
  std::string start(std::int64_t id, SysTime now);
  std::string pause(std::int64_t id, SysTime now);
  std::string resume(std::int64_t id, SysTime now);
  std::string cancel(std::int64_t id, SysTime now);

  // Freezes the audience (once) and moves `c` from one of `from` to its
  // running status. Returns the new status, or nullopt if another process
  // changed the status first.
  std::optional<std::string> begin_sending(const Campaign& c, const std::vector<std::string>& from,
                                           SysTime now);

 private:
  Campaign load(std::int64_t id);

  CampaignStore& store_;
  db::DeliveryQueue& queue_;
  db::DeliveryQueue::ProviderOf provider_of_;
};

// What one tick changed.
struct TickReport {
  std::vector<std::int64_t> started;
  std::vector<std::int64_t> window_opened;
  std::vector<std::int64_t> window_closed;
  std::vector<std::int64_t> finished;
};

class Scheduler {
 public:
  Scheduler(CampaignStore& store, db::DeliveryQueue& queue, CampaignLifecycle& lifecycle,
            Clock clock, Duration past_due_warning);

  // One pass over the active campaigns (only `only` when given).
  TickReport tick(std::optional<std::int64_t> only = std::nullopt);

  // One line saying why nothing is sendable now, naming the next event of
  // each campaign that still has one (window opening, scheduled start, paused).
  std::string idle_reason(std::optional<std::int64_t> only = std::nullopt);

  SysTime now() const { return clock_(); }

 private:
  CampaignStore& store_;
  db::DeliveryQueue& queue_;
  CampaignLifecycle& lifecycle_;
  Clock clock_;
  Duration past_due_warning_;
};

}  // namespace mailer::app
