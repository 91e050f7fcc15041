#include "throttle/simulator.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <memory>
#include <nlohmann/json.hpp>

#include "throttle/aimd_controller.h"
#include "throttle/pacer.h"
#include "throttle/provider_profiles.h"
#include "throttle/reply_classifier.h"

namespace mailer::throttle {
namespace {

using std::chrono::seconds;

// A simulated provider absorbs bursts of 100 ms worth of its capacity, as
// providers counting over short windows do.
constexpr double kProviderBurstSeconds = 0.1;
// The penalty box looks at the attempts of the last second.
constexpr Duration kPenaltyWindow = seconds(1);
// Report bins and the trace are one second wide.
constexpr Duration kBin = seconds(1);
// Steady state starts after this much warm-up, and this long after each change.
constexpr double kWarmupSeconds = 60;
constexpr double kSettleSeconds = 20;
// Convergence means 90 % of capacity in one second with at most 3 % deferrals.
constexpr double kConvergedShare = 0.9;
constexpr double kConvergedDeferrals = 0.03;

const TimePoint kStart{};

// How a strategy decides its rate. Replies arrive classified.
class Sender {
 public:
  virtual ~Sender() = default;
  // Messages/s now; 0 means nothing may go.
  virtual double rate() const = 0;
  // A time at which the strategy changes on its own (end of a suspension or
  // hold), if any.
  virtual std::optional<TimePoint> wake_at() const = 0;
  virtual void wake(TimePoint now) = 0;
  virtual void on_reply(const Classification& c, TimePoint sent_at, TimePoint now) = 0;
};

class AimdSender : public Sender {
 public:
  AimdSender(const ProviderPolicy& p) : controller_(p, kStart) {}
  double rate() const override { return controller_.sending_rate(); }
  std::optional<TimePoint> wake_at() const override { return controller_.suspended_until(); }
  void wake(TimePoint now) override { controller_.advance(now); }
  void on_reply(const Classification& c, TimePoint sent_at, TimePoint now) override {
    controller_.on_reply(c, sent_at, now);
  }

 private:
  AimdController controller_;
};

class FixedRateSender : public Sender {
 public:
  explicit FixedRateSender(const ProviderPolicy& p) : rate_(p.max_rate) {}
  double rate() const override { return rate_; }
  std::optional<TimePoint> wake_at() const override { return std::nullopt; }
  void wake(TimePoint) override {}
  void on_reply(const Classification&, TimePoint, TimePoint) override {}

 private:
  double rate_;
};

class StepDownHoldSender : public Sender {
 public:
  StepDownHoldSender(const ProviderPolicy& p, Duration hold)
      : floor_(p.min_rate), ceiling_(p.max_rate), hold_(hold) {}
  double rate() const override { return holding_until_ ? floor_ : ceiling_; }
  std::optional<TimePoint> wake_at() const override { return holding_until_; }
  void wake(TimePoint now) override {
    if (holding_until_ && now >= *holding_until_) holding_until_.reset();
  }
  void on_reply(const Classification& c, TimePoint, TimePoint now) override {
    wake(now);
    bool slow_down = c.signal == Signal::kThrottle || c.signal == Signal::kSuspend;
    if (slow_down && !holding_until_) holding_until_ = now + hold_;
  }

 private:
  double floor_;
  double ceiling_;
  Duration hold_;
  std::optional<TimePoint> holding_until_;
};

std::unique_ptr<Sender> make_sender(Strategy s, const SimulatedProvider& p, Duration hold) {
  switch (s) {
    case Strategy::kAimd:
      return std::make_unique<AimdSender>(p.policy);
    case Strategy::kFixedRate:
      return std::make_unique<FixedRateSender>(p.policy);
    case Strategy::kStepDownHold:
      return std::make_unique<StepDownHoldSender>(p.policy, hold);
  }
  return nullptr;
}

enum class Answer : std::uint8_t { kAccepted, kDeferred, kPenalty };

struct Pending {
  TimePoint reply_at;
  TimePoint sent_at;
  Answer answer;
};

// Capacity of `p` at offset `t` from the start.
double capacity_at(const SimulatedProvider& p, Duration t) {
  double c = p.capacity;
  for (const CapacityChange& change : p.changes) {
    if (change.at <= t) c = change.capacity;
  }
  return c;
}

// Mean capacity over [0, end).
double mean_capacity(const SimulatedProvider& p, Duration end) {
  if (end <= Duration::zero()) return capacity_at(p, Duration::zero());
  std::vector<CapacityChange> points = p.changes;
  std::sort(points.begin(), points.end(),
            [](const CapacityChange& a, const CapacityChange& b) { return a.at < b.at; });
  double area = 0;
  Duration from = Duration::zero();
  double c = p.capacity;
  for (const CapacityChange& change : points) {
    if (change.at >= end) break;
    area += c * to_seconds(change.at - from);
    from = change.at;
    c = change.capacity;
  }
  area += c * to_seconds(end - from);
  return area / to_seconds(end);
}

// The simulated provider and the sender's view of it, for one run.
struct Lane {
  const SimulatedProvider* spec = nullptr;
  std::unique_ptr<Sender> sender;
  Pacer pacer{0, 1};
  Classification on_accept, on_defer, on_penalty;
  // Provider side.
  double capacity = 0;
  std::size_t next_change = 0;
  std::vector<CapacityChange> changes;
  double tokens = 0;
  TimePoint refilled = kStart;
  TimePoint penalty_until = kStart;
  std::deque<TimePoint> recent_sends;
  // Sender side.
  std::int64_t backlog = 0;
  std::deque<Pending> pending;
  // Figures.
  std::int64_t attempts = 0, accepted = 0, deferred = 0;
  TimePoint active_until = kStart;
  bool drained = false;
  std::vector<std::int64_t> bin_accepted, bin_deferred;
  std::vector<double> bin_rate;
  std::vector<bool> bin_rate_set;

  double burst() const { return std::max(1.0, capacity * kProviderBurstSeconds); }

  void refill(TimePoint t) {
    tokens = std::min(burst(), tokens + to_seconds(t - refilled) * capacity);
    refilled = t;
  }

  Answer answer(TimePoint t) {
    if (spec->penalty_threshold > 0) {
      if (t < penalty_until) return Answer::kPenalty;
      recent_sends.push_back(t);
      while (!recent_sends.empty() && recent_sends.front() <= t - kPenaltyWindow) {
        recent_sends.pop_front();
      }
      double limit = spec->penalty_threshold * capacity * to_seconds(kPenaltyWindow);
      if (static_cast<double>(recent_sends.size()) > limit) {
        penalty_until = t + spec->penalty_for;
        recent_sends.clear();
        return Answer::kPenalty;
      }
    }
    refill(t);
    if (tokens >= 1) {
      tokens -= 1;
      return Answer::kAccepted;
    }
    return Answer::kDeferred;
  }

  std::size_t bin_of(TimePoint t) const {
    auto b = static_cast<std::size_t>((t - kStart) / kBin);
    return std::min(b, bin_accepted.size() - 1);
  }

  void note_rate(TimePoint t) {
    std::size_t b = bin_of(t);
    bin_rate[b] = sender->rate();
    bin_rate_set[b] = true;
  }
};

Classification classify_once(const ReplyClassifier& classifier, const SmtpReply& reply,
                             const std::string& provider) {
  return classifier.classify(reply, provider);
}

void setup_lane(Lane& lane, const SimulatedProvider& spec, Strategy strategy, Duration hold,
                std::size_t bins, const ReplyClassifier& classifier) {
  lane.spec = &spec;
  lane.sender = make_sender(strategy, spec, hold);
  lane.pacer = Pacer(lane.sender->rate(), spec.policy.burst);
  ProviderProfile profile = provider_profile_for(spec.name);
  lane.on_accept = classify_once(classifier, profile.accepted, spec.name);
  lane.on_defer = classify_once(classifier, spec.reply.value_or(profile.throttle), spec.name);
  lane.on_penalty =
      classify_once(classifier, profile.penalty.value_or(profile.throttle), spec.name);
  lane.capacity = spec.capacity;
  lane.changes = spec.changes;
  std::sort(lane.changes.begin(), lane.changes.end(),
            [](const CapacityChange& a, const CapacityChange& b) { return a.at < b.at; });
  lane.tokens = lane.burst();
  lane.backlog = spec.backlog;
  lane.bin_accepted.assign(bins, 0);
  lane.bin_deferred.assign(bins, 0);
  lane.bin_rate.assign(bins, 0);
  lane.bin_rate_set.assign(bins, false);
  lane.note_rate(kStart);
}

ProviderResult summarise(const Lane& lane, const Scenario& scenario, Duration end) {
  const SimulatedProvider& p = *lane.spec;
  ProviderResult r;
  r.name = p.name;
  Duration active = lane.drained ? lane.active_until - kStart : end;
  if (active <= Duration::zero()) active = kBin;
  r.capacity = mean_capacity(p, active);
  r.goodput = static_cast<double>(lane.accepted) / to_seconds(active);
  r.goodput_ratio = r.capacity > 0 ? r.goodput / r.capacity : 0;
  r.attempts = lane.attempts;
  r.deferrals = lane.deferred;
  r.deferral_ratio = lane.attempts > 0
                         ? static_cast<double>(lane.deferred) / static_cast<double>(lane.attempts)
                         : 0;
  r.score = r.goodput_ratio * (1 - r.deferral_ratio);

  std::size_t active_bins =
      std::min(lane.bin_accepted.size(), static_cast<std::size_t>(active / kBin));
  auto converged = [&](std::size_t b) {
    double cap = capacity_at(p, kBin * static_cast<std::int64_t>(b));
    double acc = static_cast<double>(lane.bin_accepted[b]);
    double all = acc + static_cast<double>(lane.bin_deferred[b]);
    return acc >= kConvergedShare * cap &&
           (all == 0 || lane.bin_deferred[b] <= kConvergedDeferrals * all);
  };
  for (std::size_t b = 0; b < active_bins; ++b) {
    double cap = capacity_at(p, kBin * static_cast<std::int64_t>(b));
    if (static_cast<double>(lane.bin_accepted[b]) >= kConvergedShare * cap) {
      r.time_to_90pct_s = static_cast<double>(b + 1);
      break;
    }
  }
  if (!p.changes.empty()) {
    Duration last = std::max_element(p.changes.begin(), p.changes.end(),
                                     [](const CapacityChange& a, const CapacityChange& b) {
                                       return a.at < b.at;
                                     })
                        ->at;
    for (auto b = static_cast<std::size_t>(last / kBin); b < active_bins; ++b) {
      if (converged(b)) {
        r.reconverge_s = static_cast<double>(b + 1) - to_seconds(last);
        break;
      }
    }
  }
  double acc = 0, cap = 0;
  for (std::size_t b = 0; b < active_bins; ++b) {
    double t = static_cast<double>(b);
    if (t < kWarmupSeconds) continue;
    bool settling = false;
    for (const CapacityChange& change : p.changes) {
      double at = to_seconds(change.at);
      if (t >= std::floor(at) && t < at + kSettleSeconds) settling = true;
    }
    if (settling) continue;
    acc += static_cast<double>(lane.bin_accepted[b]);
    cap += capacity_at(p, kBin * static_cast<std::int64_t>(b));
  }
  r.steady_goodput_ratio = cap > 0 ? acc / cap : r.goodput_ratio;
  (void)scenario;
  return r;
}

nlohmann::ordered_json result_json(const ProviderResult& r) {
  auto optional = [](const std::optional<double>& v) {
    return v ? nlohmann::ordered_json(*v) : nlohmann::ordered_json(nullptr);
  };
  auto round = [](double v, double scale) { return std::round(v * scale) / scale; };
  return {
      {"capacity", round(r.capacity, 1000)},
      {"goodput", round(r.goodput, 1000)},
      {"goodput_ratio", round(r.goodput_ratio, 10000)},
      {"attempts", r.attempts},
      {"deferrals", r.deferrals},
      {"deferral_ratio", round(r.deferral_ratio, 100000)},
      {"time_to_90pct_s", optional(r.time_to_90pct_s)},
      {"reconverge_s", optional(r.reconverge_s)},
      {"steady_goodput_ratio", round(r.steady_goodput_ratio, 10000)},
      {"score", round(r.score, 10000)},
  };
}

nlohmann::ordered_json strategy_json(const StrategyResult& s) {
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  for (const ProviderResult& r : s.providers) out[r.name] = result_json(r);
  return out;
}

}  // namespace

std::string_view strategy_name(Strategy strategy) {
  switch (strategy) {
    case Strategy::kAimd:
      return "aimd";
    case Strategy::kFixedRate:
      return "fixed_rate";
    case Strategy::kStepDownHold:
      return "step_down_hold";
  }
  return "aimd";
}

std::vector<std::string> validate_scenario(const Scenario& s) {
  std::vector<std::string> errors;
  if (s.duration <= Duration::zero()) errors.push_back("duration must be greater than 0");
  // A year of one-second bins is the most a report holds.
  if (s.duration > std::chrono::hours(24 * 366)) errors.push_back("duration must be at most 366d");
  if (s.hold <= Duration::zero()) errors.push_back("hold must be greater than 0");
  if (s.providers.empty()) errors.push_back("at least one [[provider]] is needed");
  for (std::size_t i = 0; i < s.providers.size(); ++i) {
    const SimulatedProvider& p = s.providers[i];
    std::string at = p.name.empty() ? fmt::format("provider[{}]", i + 1) : "provider." + p.name;
    if (p.name.empty()) errors.push_back(at + ".name must not be empty");
    for (std::size_t j = 0; j < i; ++j) {
      if (s.providers[j].name == p.name && !p.name.empty()) {
        errors.push_back(at + ".name appears twice");
      }
    }
    if (!(p.capacity >= 0) || !std::isfinite(p.capacity))
      errors.push_back(at + ".capacity must be >= 0");
    if (p.latency < Duration::zero()) errors.push_back(at + ".latency must not be negative");
    if (p.backlog < 0) errors.push_back(at + ".backlog must not be negative");
    if (!(p.penalty_threshold >= 0)) errors.push_back(at + ".penalty_threshold must be >= 0");
    if (p.penalty_for < Duration::zero())
      errors.push_back(at + ".penalty_for must not be negative");
    for (const CapacityChange& c : p.changes) {
      if (c.at < Duration::zero()) errors.push_back(at + ".change.at must not be negative");
      if (!(c.capacity >= 0) || !std::isfinite(c.capacity)) {
        errors.push_back(at + ".change.capacity must be >= 0");
      }
    }
    for (std::string& e : validate_provider_policy(p.policy, at)) errors.push_back(std::move(e));
  }
  return errors;
}

StrategyResult simulate(const Scenario& scenario, Strategy strategy, bool with_trace) {
  const TimePoint end = kStart + scenario.duration;
  const std::size_t bins =
      static_cast<std::size_t>((scenario.duration + kBin - Duration(1)) / kBin) + 1;
  ReplyClassifier classifier;
  std::vector<Lane> lanes(scenario.providers.size());
  for (std::size_t i = 0; i < lanes.size(); ++i) {
    setup_lane(lanes[i], scenario.providers[i], strategy, scenario.hold, bins, classifier);
  }

  TimePoint now = kStart;
  for (;;) {
    // The earliest event: a reply, a capacity change or strategy wake-up, a send.
    enum class Kind { kNone, kReply, kWake, kSend } kind = Kind::kNone;
    TimePoint when = TimePoint::max();
    std::size_t who = 0;
    for (std::size_t i = 0; i < lanes.size(); ++i) {
      Lane& l = lanes[i];
      if (!l.pending.empty() && l.pending.front().reply_at < when) {
        when = l.pending.front().reply_at, kind = Kind::kReply, who = i;
      }
    }
    for (std::size_t i = 0; i < lanes.size(); ++i) {
      Lane& l = lanes[i];
      std::optional<TimePoint> wake = l.sender->wake_at();
      if (l.next_change < l.changes.size()) {
        TimePoint change = kStart + l.changes[l.next_change].at;
        if (!wake || change < *wake) wake = change;
      }
      if (wake && *wake < when) when = *wake, kind = Kind::kWake, who = i;
    }
    for (std::size_t i = 0; i < lanes.size(); ++i) {
      Lane& l = lanes[i];
      if (l.backlog <= 0) continue;
      auto at = l.pacer.next_permit(now);
      if (at && *at < when) when = *at, kind = Kind::kSend, who = i;
    }
    if (kind == Kind::kNone || when >= end) break;
    now = std::max(now, when);
    Lane& l = lanes[who];

    switch (kind) {
      case Kind::kReply: {
        Pending p = l.pending.front();
        l.pending.pop_front();
        std::size_t b = l.bin_of(now);
        const Classification* c = &l.on_accept;
        if (p.answer == Answer::kAccepted) {
          ++l.accepted;
          ++l.bin_accepted[b];
        } else {
          ++l.deferred;
          ++l.bin_deferred[b];
          ++l.backlog;  // the message waits for another attempt
          c = p.answer == Answer::kPenalty ? &l.on_penalty : &l.on_defer;
        }
        l.sender->on_reply(*c, p.sent_at, now);
        if (l.backlog == 0 && l.pending.empty() && !l.drained) {
          l.drained = true;
          l.active_until = now;
        }
        break;
      }
      case Kind::kWake:
        while (l.next_change < l.changes.size() && kStart + l.changes[l.next_change].at <= now) {
          l.refill(now);  // tokens earned so far at the old capacity
          l.capacity = l.changes[l.next_change++].capacity;
        }
        l.sender->wake(now);
        break;
      case Kind::kSend:
        if (!l.pacer.try_acquire(now)) break;
        --l.backlog;
        ++l.attempts;
        l.pending.push_back({now + l.spec->latency, now, l.answer(now)});
        break;
      case Kind::kNone:
        break;
    }
    l.pacer.set_rate(l.sender->rate());
    l.note_rate(now);
  }

  StrategyResult result;
  result.strategy = strategy;
  for (Lane& l : lanes) {
    // Seconds without events keep the rate of the second before.
    for (std::size_t b = 1; b < bins; ++b) {
      if (!l.bin_rate_set[b]) l.bin_rate[b] = l.bin_rate[b - 1];
    }
    result.providers.push_back(summarise(l, scenario, scenario.duration));
  }
  if (with_trace) {
    std::size_t last_bin = static_cast<std::size_t>(scenario.duration / kBin);
    for (std::size_t b = 0; b < std::min(bins, last_bin); ++b) {
      for (const Lane& l : lanes) {
        result.trace.push_back({static_cast<double>(b + 1), l.spec->name, l.bin_rate[b],
                                l.bin_accepted[b], l.bin_deferred[b]});
      }
    }
  }
  return result;
}

SimulationReport simulate_all(const Scenario& scenario, bool with_trace) {
  return SimulationReport{
      simulate(scenario, Strategy::kAimd, with_trace),
      simulate(scenario, Strategy::kFixedRate, false),
      simulate(scenario, Strategy::kStepDownHold, false),
  };
}

std::string to_json(const SimulationReport& report) {
  nlohmann::ordered_json j;
  j["providers"] = strategy_json(report.aimd);
  j["baselines"] = {
      {"fixed_rate", strategy_json(report.fixed_rate)},
      {"step_down_hold", strategy_json(report.step_down_hold)},
  };
  return j.dump();
}

std::string trace_csv(const std::vector<TraceRow>& trace) {
  std::string out = "time,provider,rate,accepted,deferred\n";
  for (const TraceRow& row : trace) {
    out += fmt::format("{:g},{},{:.2f},{},{}\n", row.time_s, row.provider, row.rate, row.accepted,
                       row.deferred);
  }
  return out;
}

}  // namespace mailer::throttle
