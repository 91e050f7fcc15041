#include "throttle/pacer.h"

#include <algorithm>
#include <cmath>

namespace mailer::throttle {

Pacer::Pacer(double rate, double burst) : rate_(rate), burst_(std::max(1.0, burst)) {}

void Pacer::set_rate(double rate) {
  rate_ = rate;
}

Duration Pacer::interval() const {
  return from_seconds(1.0 / rate_);
}

std::optional<TimePoint> Pacer::next_permit(TimePoint now) const {
  if (!(rate_ > 0) || !std::isfinite(rate_)) return std::nullopt;
  // A message may go when now >= tat - tolerance; the tolerance lets `burst`
  // messages through back to back after an idle period.
  Duration tolerance = from_seconds((burst_ - 1.0) / rate_);
  return std::max(now, tat_ - tolerance);
}

bool Pacer::try_acquire(TimePoint now) {
  auto at = next_permit(now);
  if (!at || *at > now) return false;
  tat_ = std::max(tat_, now) + interval();
  return true;
}

void PermitQueue::set(const std::string& provider, Pacer pacer) {
  auto it = entries_.find(provider);
  if (it == entries_.end()) {
    entries_.emplace(provider, Entry{pacer, 0});
  } else {
    it->second.pacer = pacer;
  }
}

Pacer* PermitQueue::find(const std::string& provider) {
  auto it = entries_.find(provider);
  return it == entries_.end() ? nullptr : &it->second.pacer;
}

void PermitQueue::erase(const std::string& provider) {
  entries_.erase(provider);
}

bool PermitQueue::acquire(const std::string& provider, TimePoint now) {
  auto it = entries_.find(provider);
  if (it == entries_.end() || !it->second.pacer.try_acquire(now)) return false;
  it->second.served = ++turn_;
  return true;
}

}  // namespace mailer::throttle
