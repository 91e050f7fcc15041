// Turns a rate into send permits: GCRA (the virtual-scheduling form of a
// token bucket) with a small burst. It answers "when may the next message go"
// as a time point and never sleeps. One Pacer per provider key, so one
// provider's backoff never delays another's permits; PermitQueue picks the
// provider whose permit comes first.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "throttle/duration.h"

namespace mailer::throttle {

class Pacer {
 public:
  // `rate` messages/s (0 or less: no permits), `burst` messages back to back
  // after an idle period (at least 1).
  Pacer(double rate, double burst);

  // Takes effect for the next permit; permits already granted stay granted.
  void set_rate(double rate);
  double rate() const { return rate_; }

  // The earliest time >= now at which a permit is available; nullopt while
  // the rate is 0.
  std::optional<TimePoint> next_permit(TimePoint now) const;
  // Takes a permit if one is available at `now`.
  bool try_acquire(TimePoint now);

 private:
  Duration interval() const;

  double rate_;
  double burst_;
  // GCRA's theoretical arrival time of the next message.
  TimePoint tat_{};
};

// Fair choice among providers: the provider whose next permit comes first,
// ties going to the one served least recently (round robin).
class PermitQueue {
 public:
  // Adds or replaces a provider's pacer.
  void set(const std::string& provider, Pacer pacer);
  Pacer* find(const std::string& provider);
  void erase(const std::string& provider);

  struct Next {
    std::string provider;
    TimePoint at;
  };
  // The next permit over all providers with a positive rate and `ready(provider)`
  // (e.g. backlog waiting, not suspended); nullopt if none.
  template <typename Ready>
  std::optional<Next> next(TimePoint now, Ready ready) const {
    std::optional<Next> best;
    std::uint64_t best_served = 0;
    for (const auto& [name, entry] : entries_) {
      if (!ready(name)) continue;
      auto at = entry.pacer.next_permit(now);
      if (!at) continue;
      if (!best || *at < best->at || (*at == best->at && entry.served < best_served)) {
        best = Next{name, *at};
        best_served = entry.served;
      }
    }
    return best;
  }
  // Takes the permit of `provider` at `now`; false if it has none yet.
  bool acquire(const std::string& provider, TimePoint now);

 private:
  struct Entry {
    Pacer pacer;
    std::uint64_t served = 0;
  };
  std::map<std::string, Entry> entries_;
  std::uint64_t turn_ = 0;
};

}  // namespace mailer::throttle
