#include "app/config/config_throttle.h"

#include <fmt/format.h>

#include <algorithm>

namespace mailer::app {
namespace {

namespace th = mailer::throttle;

// Connections to one provider from one worker: far beyond what any provider
// tolerates, small enough that a typo cannot exhaust file descriptors.
constexpr int kMaxConnections = 10000;

const std::vector<std::string> kBuiltinProviders = {"gmail", "outlook", "yahoo", "other"};

// Signals that defer a message and may therefore have their own schedule.
const std::vector<th::Signal> kRetriedSignals = {
    th::Signal::kThrottle,  th::Signal::kSuspend,    th::Signal::kRecipientTempfail,
    th::Signal::kTransient, th::Signal::kAuthPolicy, th::Signal::kBlock,
};

std::vector<std::string> signal_names() {
  return {"accepted",  "throttle",    "suspend",     "recipient_tempfail",
          "transient", "auth_policy", "hard_bounce", "block"};
}

th::Duration duration(ConfigReader& r, const char* key, th::Duration fallback) {
  return r.get_duration(key, std::chrono::duration_cast<Duration>(fallback));
}

th::ReplyRule read_reply_rule(ConfigReader r) {
  th::ReplyRule rule;
  rule.pattern = r.get_string("pattern", "");
  if (rule.pattern.empty()) r.fail("pattern", "is required");
  std::string signal = r.get_choice("signal", "", signal_names());
  rule.signal = *th::parse_signal(signal);
  Duration suspend = r.get_duration("suspend_for", Duration::zero());
  if (suspend > Duration::zero()) rule.suspend_for = suspend;
  rule.provider = r.get_string("provider", "");
  if (auto error = th::validate_reply_rule(rule)) r.fail("suspend_for", *error);
  r.reject_unknown();
  return rule;
}

th::ProviderRule read_provider_rule(ConfigReader r) {
  th::ProviderRule rule;
  std::string domain = r.get_string("domain", "");
  std::string mx = r.get_string("mx", "");
  if (domain.empty() == mx.empty()) r.fail("domain", "give exactly one of domain or mx");
  rule.target = domain.empty() ? th::ProviderRule::Target::kMx : th::ProviderRule::Target::kDomain;
  rule.pattern = domain.empty() ? mx : domain;
  rule.provider = r.get_string("provider", "");
  if (auto error = th::validate_provider_rule(rule)) {
    r.fail(error->rfind("provider", 0) == 0 ? "provider" : (domain.empty() ? "mx" : "domain"),
           *error);
  }
  r.reject_unknown();
  return rule;
}

}  // namespace

th::ProviderPolicy read_provider_policy(ConfigReader& r, th::ProviderPolicy p) {
  p.initial_rate = r.get_number("initial_rate", p.initial_rate);
  p.min_rate = r.get_number("min_rate", p.min_rate);
  p.max_rate = r.get_number("max_rate", p.max_rate);
  p.max_connections = r.get_int("max_connections", p.max_connections, 1, kMaxConnections);
  p.suspend_for = duration(r, "suspend_for", p.suspend_for);
  p.increase_step = r.get_number("increase_step", p.increase_step);
  p.decrease_factor = r.get_number("decrease_factor", p.decrease_factor);
  p.reaction_window = duration(r, "reaction_window", p.reaction_window);
  p.slow_start_growth = r.get_number("slow_start_growth", p.slow_start_growth);
  p.slow_start_threshold = r.get_number("slow_start_threshold", p.slow_start_threshold);
  p.restart_factor = r.get_number("restart_factor", p.restart_factor);
  p.auth_pause = duration(r, "auth_pause", p.auth_pause);
  p.block_pause = duration(r, "block_pause", p.block_pause);
  p.connection_recovery = duration(r, "connection_recovery", p.connection_recovery);
  p.burst = r.get_number("burst", p.burst);
  std::vector<th::PolicyError> errors = th::check_provider_policy(p);
  if (!errors.empty()) r.fail(errors.front().key, errors.front().message);
  return p;
}

th::RetryPolicy read_retry_policy(ConfigReader& r, th::RetryPolicy p) {
  p.min_backoff = duration(r, "min_backoff", p.min_backoff);
  p.max_backoff = duration(r, "max_backoff", p.max_backoff);
  p.max_age = duration(r, "max_age", p.max_age);
  p.multiplier = r.get_number("multiplier", p.multiplier);
  p.jitter = r.get_number("jitter", p.jitter);
  std::vector<th::PolicyError> errors = th::check_retry_policy(p);
  if (!errors.empty()) r.fail(errors.front().key, errors.front().message);
  return p;
}

ThrottleSettings read_throttle_settings(ConfigReader& root) {
  ThrottleSettings s;
  for (ConfigReader& r : root.tables("provider_rule")) {
    s.provider_rules.push_back(read_provider_rule(r));
  }
  for (ConfigReader& r : root.tables("reply_rule")) s.reply_rules.push_back(read_reply_rule(r));

  std::vector<std::string> known = kBuiltinProviders;
  for (const th::ProviderRule& rule : s.provider_rules) {
    if (std::find(known.begin(), known.end(), rule.provider) == known.end()) {
      known.push_back(rule.provider);
    }
  }
  ConfigReader providers = root.table("providers");
  for (const std::string& key : providers.keys()) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      providers.fail(key, "unknown provider (expected gmail, outlook, yahoo or other)");
    }
  }
  for (const std::string& name : known) {
    ConfigReader r = providers.table(name);
    s.providers[name] = read_provider_policy(r, th::ProviderPolicy{});
    r.reject_unknown();
  }
  providers.reject_unknown();

  ConfigReader retry = root.table("retry");
  s.retry = read_retry_policy(retry, th::RetryPolicy{});
  for (th::Signal signal : kRetriedSignals) {
    std::string name(th::signal_name(signal));
    ConfigReader r = retry.table(name);
    if (!r.present()) continue;
    s.retry_by_signal[signal] = read_retry_policy(r, s.retry);
    r.reject_unknown();
  }
  retry.reject_unknown();
  return s;
}

}  // namespace mailer::app
