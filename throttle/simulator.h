// Virtual-time simulation of sending to mailbox providers with a hidden
// capacity: each simulated provider accepts up to `capacity` messages/s (a
// token bucket with a 100 ms burst) and defers the rest with its profile's
// reply after `latency`; its capacity may change over time, and it may keep a
// penalty box (a burst above a threshold defers everything for a while, as
// Yahoo's [TSS04] does). The same scenario runs the AIMD controller and the two
// strategies peers use (fixed rate at the ceiling; step down to the floor and
// hold, then snap back) so their results can be compared. No clock, no
// threads: a ten-minute scenario takes a fraction of a second.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "throttle/duration.h"
#include "throttle/policy.h"
#include "throttle/smtp_reply.h"

namespace mailer::throttle {

struct CapacityChange {
  // Offset from the start of the scenario.
  Duration at{};
  double capacity = 0;
};

struct SimulatedProvider {
  // Provider key; also selects the reply profile (gmail, yahoo, outlook,
  // anything else: generic).
  std::string name;
  // Messages/s the provider accepts before deferring.
  double capacity = 100;
  // Time from sending a message to its reply.
  Duration latency = std::chrono::milliseconds(80);
  // The over-capacity deferral; the profile's throttle reply when empty.
  std::optional<SmtpReply> reply;
  // Messages waiting at the start. Deferred messages go back into it.
  std::int64_t backlog = 0;
  std::vector<CapacityChange> changes;
  // Penalty box: more than penalty_threshold x capacity attempts within one
  // second put the sender in the box for penalty_for, during which every
  // message gets the profile's penalty reply. 0 disables it.
  double penalty_threshold = 0;
  Duration penalty_for = std::chrono::seconds(60);
  // The sender's configuration for this provider (rates, AIMD knobs).
  ProviderPolicy policy;
};

struct Scenario {
  Duration duration = std::chrono::seconds(600);
  std::vector<SimulatedProvider> providers;
  // Step-down-and-hold baseline: how long it stays at the floor.
  Duration hold = std::chrono::seconds(60);
};

// "duration must be greater than 0", "provider[2].capacity must be ...".
std::vector<std::string> validate_scenario(const Scenario& scenario);

enum class Strategy { kAimd, kFixedRate, kStepDownHold };
std::string_view strategy_name(Strategy strategy);  // aimd, fixed_rate, step_down_hold

// One provider's figures over the time it had mail to send (the scenario, or
// until its backlog ran dry).
struct ProviderResult {
  std::string name;
  // Time-weighted mean hidden capacity, messages/s.
  double capacity = 0;
  // Accepted messages per second.
  double goodput = 0;
  double goodput_ratio = 0;
  std::int64_t attempts = 0;
  std::int64_t deferrals = 0;
  double deferral_ratio = 0;
  // First second whose accepted count reached 90 % of capacity; empty if never.
  std::optional<double> time_to_90pct_s;
  // Seconds after the last capacity change until a second reached 90 % of the
  // new capacity with under 3 % deferrals; empty without changes or if never.
  std::optional<double> reconverge_s;
  // Accepted / capacity after the first 60 s, leaving out the 20 s after each
  // capacity change: the steady state.
  double steady_goodput_ratio = 0;
  // goodput_ratio x (1 - deferral_ratio): what the comparison ranks by.
  double score = 0;
};

// One second of one provider: the rate the strategy sent at (at the end of
// the second) and the replies received in it.
struct TraceRow {
  double time_s = 0;
  std::string provider;
  double rate = 0;
  std::int64_t accepted = 0;
  std::int64_t deferred = 0;
};

struct StrategyResult {
  Strategy strategy = Strategy::kAimd;
  std::vector<ProviderResult> providers;
  std::vector<TraceRow> trace;  // filled when asked for
};

// Runs one strategy over a validated scenario.
StrategyResult simulate(const Scenario& scenario, Strategy strategy, bool with_trace = false);

struct SimulationReport {
  StrategyResult aimd;
  StrategyResult fixed_rate;
  StrategyResult step_down_hold;
};

// All three strategies; the trace only for AIMD.
SimulationReport simulate_all(const Scenario& scenario, bool with_trace = false);

// The `mailer simulate --json` object of CLI.md:
// {"providers":{...},"baselines":{"fixed_rate":{...},"step_down_hold":{...}}}.
std::string to_json(const SimulationReport& report);

// "time,provider,rate,accepted,deferred" and one line per row.
std::string trace_csv(const std::vector<TraceRow>& trace);

}  // namespace mailer::throttle
