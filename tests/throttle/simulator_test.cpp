#include "throttle/simulator.h"

#include <gtest/gtest.h>

#include <chrono>
#include <iostream>

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

TEST(Simulator, PrintsIssue3) {
  auto t0 = std::chrono::steady_clock::now();
  SimulationReport r = simulate_all(issue3_scenario(), true);
  auto t1 = std::chrono::steady_clock::now();
  std::cout << to_json(r) << "\n" << std::chrono::duration<double>(t1 - t0).count() << " s\n";
}

}  // namespace
}  // namespace mailer::throttle
