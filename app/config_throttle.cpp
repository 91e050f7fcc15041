#include "app/config_throttle.h"

#include <fmt/format.h>

namespace mailer::app {
namespace {

constexpr const char* kProviderNames[] = {"gmail", "outlook", "yahoo", "other"};

ProviderSettings read_provider(ConfigReader r) {
  ProviderSettings p;
  p.initial_rate = r.get_number("initial_rate", p.initial_rate);
  p.min_rate = r.get_number("min_rate", p.min_rate);
  p.max_rate = r.get_number("max_rate", p.max_rate);
  p.max_connections = static_cast<int>(r.get_integer("max_connections", p.max_connections));
  p.suspend_for = r.get_duration("suspend_for", p.suspend_for);
  if (p.min_rate <= 0) r.fail("min_rate", "must be greater than 0");
  if (p.max_rate < p.min_rate) {
    r.fail("max_rate", fmt::format("must be >= min_rate ({})", p.min_rate));
  }
  if (p.initial_rate < p.min_rate || p.initial_rate > p.max_rate) {
    r.fail("initial_rate",
           fmt::format("must lie between min_rate ({}) and max_rate ({})", p.min_rate, p.max_rate));
  }
  if (p.max_connections < 1) r.fail("max_connections", "must be at least 1");
  r.reject_unknown();
  return p;
}

}  // namespace

ThrottleSettings read_throttle_settings(ConfigReader& root) {
  ThrottleSettings s;
  ConfigReader providers = root.table("providers");
  for (const char* name : kProviderNames) {
    s.providers[name] = read_provider(providers.table(name));
  }
  for (const std::string& key : providers.keys()) {
    if (s.providers.count(key) == 0) {
      providers.fail(key, "unknown provider (expected gmail, outlook, yahoo or other)");
    }
  }

  ConfigReader retry = root.table("retry");
  s.retry.min_backoff = retry.get_duration("min_backoff", s.retry.min_backoff);
  s.retry.max_backoff = retry.get_duration("max_backoff", s.retry.max_backoff);
  s.retry.max_age = retry.get_duration("max_age", s.retry.max_age);
  if (s.retry.max_backoff < s.retry.min_backoff) {
    retry.fail("max_backoff", "must be >= min_backoff");
  }
  retry.reject_unknown();
  return s;
}

}  // namespace mailer::app
