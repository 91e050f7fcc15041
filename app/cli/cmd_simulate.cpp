// `mailer simulate --scenario FILE [--json] [--trace FILE]`: runs the throttle
// in virtual time against simulated providers (throttle/simulator.h) and
// prints goodput and deferrals per provider beside the fixed-rate and
// step-down-and-hold baselines. The scenario file format is CLI.md's
// "Simulation scenario file"; every ProviderPolicy knob may also appear in a
// [[provider]] table, plus penalty_threshold / penalty_for for a penalty box.
#include <fmt/format.h>

#include <fstream>
#include <iostream>
#include <sstream>

#include "app/base/errors.h"
#include "app/cli/commands.h"
#include "app/config/config_reader.h"
#include "app/config/config_throttle.h"
#include "throttle/provider_profiles.h"
#include "throttle/simulator.h"

namespace mailer::app {
namespace {

namespace th = mailer::throttle;

struct SimulateOptions {
  std::string scenario;
  bool json = false;
  std::string trace;
};

th::SimulatedProvider read_provider(ConfigReader r) {
  th::SimulatedProvider p;
  p.name = r.get_string("name", "");
  if (p.name.empty()) r.fail("name", "is required");
  p.capacity = r.get_number("capacity", -1);
  if (p.capacity < 0) r.fail("capacity", "is required and must be >= 0");
  p.latency = r.get_duration("latency", std::chrono::duration_cast<Duration>(p.latency));
  p.backlog = r.get_integer("backlog", 0, 0, 1'000'000'000);
  std::string reply = r.get_string("reply", "");
  if (!reply.empty()) {
    th::ProviderProfile profile = th::provider_profile_for(p.name);
    auto parsed = th::parse_smtp_reply(reply, profile.throttle.stage);
    if (!parsed) r.fail("reply", "not an SMTP reply: " + parsed.error);
    p.reply = *parsed;
  }
  p.penalty_threshold = r.get_number("penalty_threshold", 0);
  if (p.penalty_threshold < 0) r.fail("penalty_threshold", "must be >= 0 (0: no penalty box)");
  p.penalty_for =
      r.get_duration("penalty_for", std::chrono::duration_cast<Duration>(p.penalty_for));
  for (ConfigReader& c : r.tables("change")) {
    th::CapacityChange change;
    Duration at = c.get_duration("at", Duration(-1));
    if (at < Duration::zero()) c.fail("at", "is required");
    change.at = at;
    change.capacity = c.get_number("capacity", -1);
    if (change.capacity < 0) c.fail("capacity", "is required and must be >= 0");
    c.reject_unknown();
    p.changes.push_back(change);
  }
  p.policy = read_provider_policy(r, th::ProviderPolicy{});
  r.reject_unknown();
  return p;
}

th::Scenario read_scenario(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError(fmt::format("{}: cannot read scenario file", path));
  std::ostringstream text;
  text << in.rdbuf();
  toml::table root;
  try {
    root = toml::parse(text.str(), path);
  } catch (const toml::parse_error& e) {
    throw UsageError(fmt::format("{}:{}:{}: invalid TOML: {}", path, e.source().begin.line,
                                 e.source().begin.column, e.description()));
  }
  ConfigReader r(&root, path, "");
  th::Scenario s;
  s.duration = r.get_duration("duration", std::chrono::duration_cast<Duration>(s.duration));
  s.hold = r.get_duration("hold", std::chrono::duration_cast<Duration>(s.hold));
  for (ConfigReader& p : r.tables("provider")) s.providers.push_back(read_provider(p));
  r.reject_unknown();
  std::vector<std::string> errors = th::validate_scenario(s);
  if (!errors.empty()) throw UsageError(fmt::format("{}: {}", path, errors.front()));
  return s;
}

void print_text(const th::SimulationReport& report) {
  std::cout << fmt::format("{:<16} {:<10} {:>9} {:>9} {:>7} {:>10} {:>9} {:>8} {:>7}\n", "strategy",
                           "provider", "capacity", "goodput", "ratio", "attempts", "deferred",
                           "to 90%", "score");
  for (const th::StrategyResult* s : {&report.aimd, &report.fixed_rate, &report.step_down_hold}) {
    for (const th::ProviderResult& p : s->providers) {
      std::string to90 =
          p.time_to_90pct_s ? fmt::format("{:.0f}s", *p.time_to_90pct_s) : std::string("never");
      std::cout << fmt::format(
          "{:<16} {:<10} {:>9.1f} {:>9.1f} {:>7.3f} {:>10} {:>8.2f}% {:>8} {:>7.3f}\n",
          th::strategy_name(s->strategy), p.name, p.capacity, p.goodput, p.goodput_ratio,
          p.attempts, 100 * p.deferral_ratio, to90, p.score);
    }
  }
}

int run_simulate(const SimulateOptions& o) {
  th::Scenario scenario = read_scenario(o.scenario);
  th::SimulationReport report = th::simulate_all(scenario, !o.trace.empty());
  if (!o.trace.empty()) {
    std::ofstream out(o.trace, std::ios::binary | std::ios::trunc);
    out << th::trace_csv(report.aimd.trace);
    if (!out) throw OperationalError(fmt::format("{}: cannot write trace", o.trace));
  }
  if (o.json) {
    std::cout << th::to_json(report) << '\n';  // keeps the documented key order
  } else {
    print_text(report);
  }
  return kExitOk;
}

}  // namespace

void register_simulate(CLI::App& root, Context&, Action& action) {
  auto o = std::make_shared<SimulateOptions>();
  CLI::App* sub = root.add_subcommand(
      "simulate", "run the throttle in virtual time against simulated providers");
  sub->add_option("--scenario", o->scenario, "scenario TOML file")->required();
  sub->add_flag("--json", o->json, "print one JSON object on stdout");
  sub->add_option("--trace", o->trace,
                  "write a per-second CSV trace (time,provider,rate,accepted,deferred)");
  sub->callback([&action, o] { action = [o] { return run_simulate(*o); }; });
}

}  // namespace mailer::app
