#include "throttle/simulator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>

namespace mailer::throttle {
namespace {

using std::chrono::seconds;

// The scenario of issue 3: gmail 300/s, outlook 200/s, yahoo 120/s (with a
// penalty box), ten minutes of backlog, initial rate 10 % of capacity,
// gmail's capacity halving at minute five.
Scenario issue3_scenario(bool gmail_change = true) {
  Scenario s;
  s.duration = seconds(600);
  auto provider = [](std::string name, double capacity) {
    SimulatedProvider p;
    p.name = std::move(name);
    p.capacity = capacity;
    p.latency = std::chrono::milliseconds(80);
    p.backlog = static_cast<std::int64_t>(capacity * 700);
    p.policy.initial_rate = capacity / 10;
    p.policy.min_rate = capacity / 10;
    p.policy.max_rate = 600;
    return p;
  };
  s.providers.push_back(provider("gmail", 300));
  if (gmail_change) s.providers.back().changes.push_back({seconds(300), 150});
  s.providers.push_back(provider("outlook", 200));
  s.providers.push_back(provider("yahoo", 120));
  s.providers.back().penalty_threshold = 1.5;
  s.providers.back().penalty_for = seconds(60);
  s.providers.back().policy.suspend_for = seconds(60);
  return s;
}

const SimulationReport& issue3() {
  static const SimulationReport report = simulate_all(issue3_scenario(), true);
  return report;
}

const ProviderResult& find(const StrategyResult& s, const std::string& name) {
  for (const ProviderResult& r : s.providers) {
    if (r.name == name) return r;
  }
  throw std::runtime_error("no result for " + name);
}

const char* kProviders[] = {"gmail", "outlook", "yahoo"};

TEST(Simulator, AimdReachesSteadyGoodputWithFewDeferrals) {
  for (const char* name : kProviders) {
    const ProviderResult& r = find(issue3().aimd, name);
    EXPECT_GE(r.steady_goodput_ratio, 0.85) << name;
    EXPECT_LE(r.deferral_ratio, 0.03) << name;
    EXPECT_GT(r.attempts, 0) << name;
  }
}

TEST(Simulator, AimdHoldsGoodputBeforeAndAfterGmailsCapacityHalves) {
  double before = 0, after = 0;
  for (const TraceRow& row : issue3().aimd.trace) {
    if (row.provider != "gmail") continue;
    if (row.time_s > 60 && row.time_s <= 300) before += static_cast<double>(row.accepted);
    if (row.time_s > 320) after += static_cast<double>(row.accepted);
  }
  EXPECT_GE(before / (240 * 300.0), 0.85);
  EXPECT_GE(after / (280 * 150.0), 0.85);
}

TEST(Simulator, AimdConvergesWithinAMinuteAndReconvergesWithin20s) {
  for (const char* name : kProviders) {
    const ProviderResult& r = find(issue3().aimd, name);
    ASSERT_TRUE(r.time_to_90pct_s) << name;
    EXPECT_LE(*r.time_to_90pct_s, 60) << name;
  }
  const ProviderResult& gmail = find(issue3().aimd, "gmail");
  ASSERT_TRUE(gmail.reconverge_s);
  EXPECT_LE(*gmail.reconverge_s, 20);
}

TEST(Simulator, GmailsCutLeavesOtherProvidersUntouched) {
  StrategyResult without = simulate(issue3_scenario(/*gmail_change=*/false), Strategy::kAimd);
  for (const char* name : {"outlook", "yahoo"}) {
    const ProviderResult& with_cut = find(issue3().aimd, name);
    const ProviderResult& steady = find(without, name);
    EXPECT_EQ(with_cut.attempts, steady.attempts) << name;
    EXPECT_EQ(with_cut.deferrals, steady.deferrals) << name;
    EXPECT_DOUBLE_EQ(with_cut.goodput, steady.goodput) << name;
  }
  EXPECT_NE(find(without, "gmail").attempts, find(issue3().aimd, "gmail").attempts);
}

TEST(Simulator, AimdBeatsBothBaselines) {
  for (const char* name : kProviders) {
    double aimd = find(issue3().aimd, name).score;
    EXPECT_GT(aimd, find(issue3().fixed_rate, name).score) << name;
    EXPECT_GT(aimd, find(issue3().step_down_hold, name).score) << name;
  }
}

TEST(Simulator, PenaltyBoxPunishesBursts) {
  // Fixed rate at 5x yahoo's capacity lives in the penalty box.
  EXPECT_LT(find(issue3().fixed_rate, "yahoo").goodput_ratio, 0.1);
  EXPECT_GT(find(issue3().fixed_rate, "yahoo").deferral_ratio, 0.9);
}

TEST(Simulator, SuspendedAimdWaitsOutThePenaltyBox) {
  Scenario s;
  s.duration = seconds(120);
  SimulatedProvider p;
  p.name = "yahoo";
  p.capacity = 50;
  p.backlog = 100000;
  p.penalty_threshold = 1.0;  // any burst above capacity is punished
  p.penalty_for = seconds(30);
  p.policy.initial_rate = 80;  // start too fast: restart_factor brings it under 50
  p.policy.max_rate = 400;
  p.policy.suspend_for = seconds(30);
  s.providers.push_back(p);
  StrategyResult r = simulate(s, Strategy::kAimd, true);
  // The first burst lands in the box; the controller stops for the suspension
  // instead of sending into it, then restarts below the capacity.
  std::int64_t deferred_after_40s = 0;
  for (const TraceRow& row : r.trace) {
    if (row.time_s > 40) deferred_after_40s += row.deferred;
  }
  EXPECT_LT(r.providers[0].deferral_ratio, 0.1);
  EXPECT_LT(deferred_after_40s, 50);
  EXPECT_GT(r.providers[0].goodput, 0);
}

TEST(Simulator, StopsWhenTheBacklogIsSent) {
  Scenario s;
  s.duration = seconds(600);
  SimulatedProvider p;
  p.name = "other";
  p.capacity = 100;
  p.backlog = 500;
  p.policy.initial_rate = 50;
  s.providers.push_back(p);
  StrategyResult r = simulate(s, Strategy::kAimd);
  EXPECT_EQ(r.providers[0].attempts - r.providers[0].deferrals, 500);
  EXPECT_GT(r.providers[0].goodput, 25);  // measured over the busy time only
}

TEST(Simulator, WritesAPlotFriendlyTrace) {
  const std::vector<TraceRow>& trace = issue3().aimd.trace;
  EXPECT_EQ(trace.size(), 600u * 3);
  std::string csv = trace_csv({trace.begin(), trace.begin() + 3});
  EXPECT_EQ(csv.substr(0, csv.find('\n')), "time,provider,rate,accepted,deferred");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 4);
  EXPECT_EQ(csv.substr(csv.find('\n') + 1, 8), "1,gmail,");
}

TEST(Simulator, JsonHasTheCliShape) {
  std::string json = to_json(issue3());
  for (const char* key :
       {"\"providers\":{\"gmail\":{\"capacity\":", "\"baselines\":{\"fixed_rate\":{",
        "\"step_down_hold\":{", "\"goodput_ratio\":", "\"deferral_ratio\":", "\"time_to_90pct_s\":",
        "\"attempts\":", "\"deferrals\":"}) {
    EXPECT_NE(json.find(key), std::string::npos) << key;
  }
}

TEST(Simulator, ValidatesScenarios) {
  Scenario s;
  s.duration = Duration::zero();
  SimulatedProvider p;
  p.name = "gmail";
  p.capacity = -1;
  p.policy.min_rate = 10;
  p.policy.max_rate = 5;
  s.providers = {p, p};
  std::vector<std::string> errors = validate_scenario(s);
  std::vector<std::string> expected = {
      "duration must be greater than 0",
      "provider.gmail.capacity must be >= 0",
      "provider.gmail.max_rate must be >= min_rate (10)",
      "provider.gmail.name appears twice",
      "provider.gmail.capacity must be >= 0",
      "provider.gmail.max_rate must be >= min_rate (10)",
  };
  EXPECT_EQ(errors, expected);
  EXPECT_TRUE(validate_scenario(issue3_scenario()).empty());
}

}  // namespace
}  // namespace mailer::throttle
