#include "app/worker/worker_loop.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <thread>

namespace mailer::app {
namespace {

// Longest single wait while idle, so a stop request is seen promptly.
constexpr std::chrono::milliseconds kIdleSlice{50};

}  // namespace

WorkerLoop::WorkerLoop(db::DeliveryQueue& queue, Scheduler& scheduler,
                       db::DeliveryTransport& transport, WorkerOptions options,
                       const std::atomic<bool>& stop)
    : queue_(queue),
      scheduler_(scheduler),
      transport_(transport),
      options_(std::move(options)),
      stop_(stop) {}

void WorkerLoop::tick() {
  scheduler_.tick(options_.campaign);
  providers_ = queue_.providers_with_work();
  exhausted_.clear();
  claimed_since_tick_ = false;
}

std::size_t WorkerLoop::claim_round() {
  const WorkerSettings& s = options_.settings;
  std::size_t claimed = 0;
  for (const std::string& provider : providers_) {
    if (stop_) break;
    if (exhausted_[provider]) continue;
    const std::size_t held = held_.size();
    if (held >= static_cast<std::size_t>(s.max_leased)) break;
    const std::size_t room = static_cast<std::size_t>(s.max_leased) - held;
    const std::size_t want =
        std::min({transport_.capacity(provider), static_cast<std::size_t>(s.claim_batch), room});
    if (want == 0) continue;
    auto batch = queue_.claim(provider, options_.worker_id, want, s.lease, options_.campaign);
    if (batch.size() < want) exhausted_[provider] = true;
    if (batch.empty()) continue;
    std::map<std::string, std::size_t> taken_over;
    for (const auto& d : batch) {
      held_.insert(d.id);
      if (!d.expired_lease_of.empty()) ++taken_over[d.expired_lease_of];
    }
    for (const auto& [owner, n] : taken_over) {
      spdlog::warn("took over {} {} deliveries whose lease by worker {} had expired", n, provider,
                   owner);
    }
    claimed += batch.size();
    transport_.submit(std::move(batch));
  }
  if (claimed > 0) claimed_since_tick_ = true;
  return claimed;
}

void WorkerLoop::flush() {
  last_flush_ = Steady::now();
  if (buffer_.empty()) return;
  const std::size_t applied = queue_.write_outcomes(options_.worker_id, buffer_);
  for (const auto& o : buffer_) {
    held_.erase(o.delivery_id);
    ++report_.outcomes[std::string(db::outcome_name(o.kind))];
  }
  if (applied < buffer_.size()) {
    const std::size_t lost = buffer_.size() - applied;
    report_.lost_leases += static_cast<std::int64_t>(lost);
    spdlog::warn("{} outcome(s) dropped: their lease had expired and was taken back", lost);
  }
  buffer_.clear();
}

void WorkerLoop::renew() {
  last_renew_ = Steady::now();
  if (held_.empty()) return;
  std::vector<std::int64_t> ids;
  ids.assign(held_.begin(), held_.end());
  queue_.renew_leases(options_.worker_id, ids, options_.settings.lease);
}

bool WorkerLoop::idle_now() {
  if (!held_.empty() || transport_.in_flight() > 0 || claimed_since_tick_) return false;
  const db::PendingWork p = queue_.pending(options_.campaign);
  if (p.sendable_now > 0 || p.leased > 0) return false;
  if (p.next_retry_at) {
    if (announced_retry_ != p.next_retry_at) {
      spdlog::info("waiting for deferred deliveries: next retry at {}",
                   format_utc(*p.next_retry_at));
      announced_retry_ = p.next_retry_at;
    }
    return false;
  }
  return true;
}

void WorkerLoop::drain() {
  spdlog::info("draining: {} in flight, {} held; claiming nothing more", transport_.in_flight(),
               held_.size());
  transport_.drain();
  while (transport_.in_flight() > 0) transport_.poll(kIdleSlice, buffer_);
  flush();
  const std::size_t released = queue_.release_leases(options_.worker_id);
  held_.clear();
  if (released > 0) spdlog::info("released {} lease(s) back to the queue", released);
}

WorkerReport WorkerLoop::run() {
  const WorkerSettings& s = options_.settings;
  const std::size_t previous = queue_.release_leases(options_.worker_id);
  if (previous > 0) {
    spdlog::warn("took back {} lease(s) a previous run of worker {} still held", previous,
                 options_.worker_id);
  }
  auto next_tick = Steady::now();
  last_flush_ = last_renew_ = Steady::now();
  for (;;) {
    if (stop_) {
      drain();
      report_.reason = "stopped: drained after a stop request";
      break;
    }
    const auto now = Steady::now();
    // With --until-idle, a worker left with nothing (no lease held, nothing in
    // flight or unflushed) looks at once whether the campaign is done, rather
    // than after the next quiet tick (up to two ticks later): once per time
    // it runs dry.
    const bool ran_dry = options_.until_idle && !dry_checked_ && held_.empty() && buffer_.empty() &&
                         transport_.in_flight() == 0;
    if (now >= next_tick || ran_dry) {
      const bool was_quiet = !claimed_since_tick_ || ran_dry;
      if (ran_dry) dry_checked_ = true;
      tick();
      next_tick = now + s.tick;
      if (options_.until_idle && was_quiet && idle_now()) {
        flush();
        report_.reason = "idle: " + scheduler_.idle_reason(options_.campaign);
        break;
      }
    }
    const std::size_t claimed = claim_round();
    if (claimed > 0) dry_checked_ = false;
    // Right after a claim, hand over at once; otherwise wait for outcomes (the
    // transport returns as soon as it has some), but no longer than until the
    // next tick or outcome flush is due.
    auto wait = std::chrono::milliseconds(0);
    if (claimed == 0) {
      auto due = next_tick;
      if (!buffer_.empty()) due = std::min(due, last_flush_ + s.flush_interval);
      const auto until_due =
          std::chrono::duration_cast<std::chrono::milliseconds>(due - Steady::now());
      wait = std::clamp(until_due, std::chrono::milliseconds(0), kIdleSlice);
    }
    transport_.poll(wait, buffer_);
    if (buffer_.size() >= static_cast<std::size_t>(s.flush_batch) ||
        Steady::now() - last_flush_ >= s.flush_interval) {
      flush();
    }
    if (Steady::now() - last_renew_ >= s.lease / 3) renew();
  }
  std::string totals;
  for (const auto& [kind, n] : report_.outcomes) {
    totals += fmt::format("{}{} {}", totals.empty() ? "" : ", ", n, kind);
  }
  spdlog::info("worker {} {} (outcomes: {})", options_.worker_id, report_.reason,
               totals.empty() ? "none" : totals);
  return report_;
}

}  // namespace mailer::app
