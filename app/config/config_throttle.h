// The throttle's part of the configuration: [providers.NAME] (every knob of
// throttle::ProviderPolicy), [retry] and [retry.SIGNAL] (throttle::RetryPolicy),
// [[reply_rule]] (operator reply classification rules) and [[provider_rule]]
// (extra domain / MX rules). Defaults are those documented in throttle/policy.h.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "app/config/config_reader.h"
#include "throttle/policy.h"
#include "throttle/provider_classifier.h"
#include "throttle/reply_classifier.h"

namespace mailer::app {

struct ThrottleSettings {
  // gmail, outlook, yahoo, other, and any provider a [[provider_rule]] names.
  std::map<std::string, throttle::ProviderPolicy> providers;
  throttle::RetryPolicy retry;
  // [retry.throttle], [retry.recipient_tempfail], ...: per-signal schedules.
  std::map<throttle::Signal, throttle::RetryPolicy> retry_by_signal;
  // [[reply_rule]] pattern / signal / suspend_for / provider, in file order.
  std::vector<throttle::ReplyRule> reply_rules;
  // [[provider_rule]] domain or mx, and provider.
  std::vector<throttle::ProviderRule> provider_rules;
};

// Reads the throttle's sections from the root reader; throws UsageError
// naming file, line and key.
ThrottleSettings read_throttle_settings(ConfigReader& root);

// Reads the ProviderPolicy knobs present in `r` over `defaults` and validates
// the result (UsageError on the offending key). Leaves other keys unread, so
// scenario files can share it.
throttle::ProviderPolicy read_provider_policy(ConfigReader& r, throttle::ProviderPolicy defaults);

// Reads RetryPolicy knobs over `defaults` and validates them.
throttle::RetryPolicy read_retry_policy(ConfigReader& r, throttle::RetryPolicy defaults);

}  // namespace mailer::app
