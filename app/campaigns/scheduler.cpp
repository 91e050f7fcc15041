#include "app/campaigns/scheduler.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "app/base/errors.h"

namespace mailer::app {
namespace {

bool is_one_of(const std::string& s, const std::vector<std::string>& set) {
  return std::find(set.begin(), set.end(), s) != set.end();
}

std::string human_duration(std::chrono::seconds s) {
  const auto count = s.count();
  if (count >= 86400) return fmt::format("{}d {}h", count / 86400, count % 86400 / 3600);
  if (count >= 3600) return fmt::format("{}h {}m", count / 3600, count % 3600 / 60);
  if (count >= 60) return fmt::format("{}m {}s", count / 60, count % 60);
  return fmt::format("{}s", count);
}

[[noreturn]] void refuse(const Campaign& c, std::string_view verb, std::string_view applies) {
  throw UsageError(fmt::format("campaign {} is {}: cannot {} it ({} applies to {} campaigns)", c.id,
                               c.status, verb, verb, applies));
}

}  // namespace

std::string running_status(const Campaign& c, SysTime now) {
  const auto window = c.window();
  return window && !window->contains(now) ? kWaitingWindow : kRunning;
}

CampaignLifecycle::CampaignLifecycle(CampaignStore& store, db::DeliveryQueue& queue,
                                     db::DeliveryQueue::ProviderOf provider_of)
    : store_(store), queue_(queue), provider_of_(std::move(provider_of)) {}

Campaign CampaignLifecycle::load(std::int64_t id) {
  auto c = store_.find(id);
  if (!c) throw UsageError(fmt::format("no campaign with id {}", id));
  return *c;
}

std::optional<std::string> CampaignLifecycle::begin_sending(const Campaign& c,
                                                            const std::vector<std::string>& from,
                                                            SysTime now) {
  const db::FreezeResult frozen = queue_.freeze_audience(c.id, provider_of_);
  if (frozen.frozen_now) {
    spdlog::info("campaign {}: audience frozen: {} queued, {} skipped (suppressed)", c.id,
                 frozen.queued, frozen.skipped);
  }
  const std::string to = running_status(c, now);
  if (!store_.transition(c.id, from, to, now, /*started=*/true)) return std::nullopt;
  return to;
}

std::string CampaignLifecycle::start(std::int64_t id, SysTime now) {
  const Campaign c = load(id);
  const std::vector<std::string> from = {kDraft, kScheduled};
  if (c.status == kPaused) {
    throw UsageError(fmt::format("campaign {} is paused: use `mailer campaign resume {}`", id, id));
  }
  if (!is_one_of(c.status, from)) refuse(c, "start", "draft or scheduled");
  auto to = begin_sending(c, from, now);
  if (!to) refuse(load(id), "start", "draft or scheduled");
  return *to;
}

std::string CampaignLifecycle::pause(std::int64_t id, SysTime now) {
  const Campaign c = load(id);
  const std::vector<std::string> from = {kScheduled, kRunning, kWaitingWindow};
  if (!is_one_of(c.status, from) || !store_.transition(id, from, kPaused, now)) {
    refuse(load(id), "pause", "scheduled, running or waiting_window");
  }
  return kPaused;
}

std::string CampaignLifecycle::resume(std::int64_t id, SysTime now) {
  const Campaign c = load(id);
  if (c.status != kPaused) refuse(c, "resume", "paused");
  if (!c.audience_frozen_at && c.scheduled_at && *c.scheduled_at > now) {
    if (!store_.transition(id, {kPaused}, kScheduled, now)) refuse(load(id), "resume", "paused");
    return kScheduled;
  }
  auto to = begin_sending(c, {kPaused}, now);
  if (!to) refuse(load(id), "resume", "paused");
  return *to;
}

std::string CampaignLifecycle::cancel(std::int64_t id, SysTime now) {
  const Campaign c = load(id);
  const std::vector<std::string> from = {kDraft, kScheduled, kRunning, kPaused, kWaitingWindow};
  if (!is_one_of(c.status, from) || !store_.transition(id, from, kCancelled, now)) {
    refuse(load(id), "cancel", "draft, scheduled, running, paused or waiting_window");
  }
  const std::int64_t skipped = store_.skip_unsent(id);
  if (skipped > 0) spdlog::info("campaign {}: {} unsent deliveries skipped", id, skipped);
  return kCancelled;
}

Scheduler::Scheduler(CampaignStore& store, db::DeliveryQueue& queue, CampaignLifecycle& lifecycle,
                     Clock clock, Duration past_due_warning)
    : store_(store),
      queue_(queue),
      lifecycle_(lifecycle),
      clock_(std::move(clock)),
      past_due_warning_(past_due_warning) {}

TickReport Scheduler::tick(std::optional<std::int64_t> only) {
  TickReport report;
  const SysTime now = clock_();
  for (const Campaign& c : store_.active()) {
    if (only && c.id != *only) continue;
    const auto window = c.window();
    if (c.status == kScheduled) {
      if (!c.scheduled_at || *c.scheduled_at > now) continue;
      const auto late = std::chrono::duration_cast<std::chrono::seconds>(now - *c.scheduled_at);
      auto to = lifecycle_.begin_sending(c, {kScheduled}, now);
      if (!to) continue;
      report.started.push_back(c.id);
      if (late > past_due_warning_) {
        spdlog::warn(
            "campaign {} (\"{}\") was due at {} and starts {} late; stop it with `mailer "
            "campaign pause {}` if it is no longer wanted",
            c.id, c.name, format_utc(*c.scheduled_at), human_duration(late), c.id);
      } else {
        spdlog::info("campaign {} (\"{}\") started ({})", c.id, c.name, *to);
      }
    } else if (c.status == kRunning && window && !window->contains(now)) {
      if (store_.transition(c.id, {kRunning}, kWaitingWindow, now)) {
        report.window_closed.push_back(c.id);
        spdlog::info("campaign {}: send window {} {} closed; reopens at {}", c.id, window->text(),
                     c.timezone, format_utc(window->next_open(now)));
      }
    } else if (c.status == kWaitingWindow && (!window || window->contains(now))) {
      if (store_.transition(c.id, {kWaitingWindow}, kRunning, now)) {
        report.window_opened.push_back(c.id);
        spdlog::info("campaign {}: send window {} {} open", c.id,
                     window ? window->text() : "(none)", c.timezone);
      }
    }
  }
  for (std::int64_t id : queue_.finish_completed()) {
    report.finished.push_back(id);
    spdlog::info("campaign {} finished: every delivery is final", id);
  }
  return report;
}

std::string Scheduler::idle_reason(std::optional<std::int64_t> only) {
  const SysTime now = clock_();
  std::vector<std::string> parts;
  int finished = 0, cancelled = 0, draft = 0;
  for (const Campaign& c : store_.all()) {
    if (only && c.id != *only) continue;
    if (c.status == kFinished) ++finished;
    if (c.status == kCancelled) ++cancelled;
    if (c.status == kDraft) ++draft;
    if (c.status == kWaitingWindow) {
      const auto window = c.window();
      parts.push_back(fmt::format("campaign {} waits for its send window {} {} (opens {})", c.id,
                                  window ? window->text() : "?", c.timezone,
                                  window ? format_utc(window->next_open(now)) : "?"));
    } else if (c.status == kScheduled && c.scheduled_at) {
      parts.push_back(
          fmt::format("campaign {} is scheduled for {}", c.id, format_utc(*c.scheduled_at)));
    } else if (c.status == kPaused) {
      parts.push_back(fmt::format("campaign {} is paused", c.id));
    }
  }
  if (parts.empty()) {
    return fmt::format(
        "nothing left to send: {} finished, {} cancelled, {} draft campaign(s); no retry pending",
        finished, cancelled, draft);
  }
  return fmt::format("nothing sendable now and no retry pending: {}", fmt::join(parts, "; "));
}

}  // namespace mailer::app
