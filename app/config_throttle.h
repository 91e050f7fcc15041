// The throttle's part of the configuration: [providers.NAME] and [retry].
#pragma once

#include <map>
#include <string>

#include "app/config_reader.h"
#include "app/duration.h"

namespace mailer::app {

// [providers.NAME]: how fast mailer may send to one mailbox provider.
struct ProviderSettings {
  // Rate (messages/s) a provider starts at when nothing was learned yet.
  double initial_rate = 20;
  // The controller never goes below this rate (except while suspended).
  double min_rate = 1;
  // The controller never goes above this rate.
  double max_rate = 2000;
  // Simultaneous SMTP connections to the provider, at most.
  int max_connections = 20;
  // How long a suspend signal (e.g. Yahoo [TSS04]) stops this provider.
  Duration suspend_for = std::chrono::hours(2);
};

// [retry]: when deferred messages are tried again.
struct RetrySettings {
  // First retry delay; doubles (with jitter) per attempt.
  Duration min_backoff = std::chrono::minutes(5);
  // Longest delay between two attempts.
  Duration max_backoff = std::chrono::hours(4);
  // A message still deferred this long after its first attempt fails (expired).
  Duration max_age = std::chrono::hours(72);
};

struct ThrottleSettings {
  // Keyed by provider name: gmail, outlook, yahoo, other.
  std::map<std::string, ProviderSettings> providers;
  RetrySettings retry;
};

// Reads [providers.*] and [retry] from the root reader; throws UsageError.
ThrottleSettings read_throttle_settings(ConfigReader& root);

}  // namespace mailer::app
