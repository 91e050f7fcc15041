#include "throttle/policy.h"

#include <fmt/format.h>

#include <cmath>

namespace mailer::throttle {
namespace {

class Errors {
 public:
  void check(bool ok, std::string_view key, std::string what) {
    if (!ok) list_.push_back({std::string(key), std::move(what)});
  }
  std::vector<PolicyError> take() { return std::move(list_); }

 private:
  std::vector<PolicyError> list_;
};

std::vector<std::string> sentences(const std::vector<PolicyError>& errors,
                                   std::string_view prefix) {
  std::vector<std::string> out;
  for (const PolicyError& e : errors)
    out.push_back(fmt::format("{}.{} {}", prefix, e.key, e.message));
  return out;
}

bool positive(double v) {
  return std::isfinite(v) && v > 0;
}

}  // namespace

std::vector<PolicyError> check_provider_policy(const ProviderPolicy& p) {
  Errors e;
  e.check(positive(p.min_rate), "min_rate", "must be greater than 0");
  e.check(positive(p.max_rate), "max_rate", "must be greater than 0");
  e.check(!(p.min_rate > p.max_rate), "max_rate",
          fmt::format("must be >= min_rate ({})", p.min_rate));
  if (p.min_rate <= p.max_rate) {
    e.check(
        std::isfinite(p.initial_rate) && p.initial_rate >= p.min_rate &&
            p.initial_rate <= p.max_rate,
        "initial_rate",
        fmt::format("must lie between min_rate ({}) and max_rate ({})", p.min_rate, p.max_rate));
  }
  e.check(p.max_connections >= 1, "max_connections", "must be at least 1");
  e.check(p.suspend_for > Duration::zero(), "suspend_for", "must be greater than 0");
  e.check(positive(p.increase_step), "increase_step", "must be greater than 0");
  e.check(std::isfinite(p.decrease_factor) && p.decrease_factor > 0 && p.decrease_factor < 1,
          "decrease_factor", "must lie strictly between 0 and 1");
  e.check(p.reaction_window > Duration::zero(), "reaction_window", "must be greater than 0");
  e.check(std::isfinite(p.slow_start_growth) && p.slow_start_growth >= 0, "slow_start_growth",
          "must be >= 0");
  e.check(std::isfinite(p.slow_start_threshold) && p.slow_start_threshold >= 0,
          "slow_start_threshold", "must be >= 0 (0 means max_rate)");
  e.check(std::isfinite(p.restart_factor) && p.restart_factor > 0 && p.restart_factor <= 1,
          "restart_factor", "must lie in (0, 1]");
  e.check(p.auth_pause >= Duration::zero(), "auth_pause", "must not be negative");
  e.check(p.block_pause >= Duration::zero(), "block_pause", "must not be negative");
  e.check(p.connection_recovery > Duration::zero(), "connection_recovery",
          "must be greater than 0");
  e.check(std::isfinite(p.burst) && p.burst >= 1, "burst", "must be at least 1");
  return e.take();
}

std::vector<PolicyError> check_retry_policy(const RetryPolicy& p) {
  Errors e;
  e.check(p.min_backoff > Duration::zero(), "min_backoff", "must be greater than 0");
  e.check(p.max_backoff >= p.min_backoff, "max_backoff", "must be >= min_backoff");
  e.check(p.max_age > Duration::zero(), "max_age", "must be greater than 0");
  e.check(std::isfinite(p.multiplier) && p.multiplier >= 1, "multiplier", "must be at least 1");
  e.check(std::isfinite(p.jitter) && p.jitter >= 0 && p.jitter < 1, "jitter", "must lie in [0, 1)");
  return e.take();
}

std::vector<std::string> validate_provider_policy(const ProviderPolicy& policy,
                                                  std::string_view prefix) {
  return sentences(check_provider_policy(policy), prefix);
}

std::vector<std::string> validate_retry_policy(const RetryPolicy& policy, std::string_view prefix) {
  return sentences(check_retry_policy(policy), prefix);
}

}  // namespace mailer::throttle
