#include "throttle/policy.h"

#include <fmt/format.h>

#include <cmath>

namespace mailer::throttle {
namespace {

class Errors {
 public:
  explicit Errors(std::string_view prefix) : prefix_(prefix) {}
  void check(bool ok, std::string_view key, std::string_view what) {
    if (!ok) list_.push_back(fmt::format("{}.{} {}", prefix_, key, what));
  }
  std::vector<std::string> take() { return std::move(list_); }

 private:
  std::string prefix_;
  std::vector<std::string> list_;
};

bool positive(double v) {
  return std::isfinite(v) && v > 0;
}

}  // namespace

std::vector<std::string> validate_provider_policy(const ProviderPolicy& p,
                                                  std::string_view prefix) {
  Errors e(prefix);
  e.check(positive(p.min_rate), "min_rate", "must be greater than 0");
  e.check(positive(p.max_rate), "max_rate", "must be greater than 0");
  e.check(!(p.min_rate > p.max_rate), "min_rate", "must be <= max_rate");
  e.check(
      std::isfinite(p.initial_rate) && p.initial_rate >= p.min_rate && p.initial_rate <= p.max_rate,
      "initial_rate", "must lie between min_rate and max_rate");
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

std::vector<std::string> validate_retry_policy(const RetryPolicy& p, std::string_view prefix) {
  Errors e(prefix);
  e.check(p.min_backoff > Duration::zero(), "min_backoff", "must be greater than 0");
  e.check(p.max_backoff >= p.min_backoff, "max_backoff", "must be >= min_backoff");
  e.check(p.max_age > Duration::zero(), "max_age", "must be greater than 0");
  e.check(std::isfinite(p.multiplier) && p.multiplier >= 1, "multiplier", "must be at least 1");
  e.check(std::isfinite(p.jitter) && p.jitter >= 0 && p.jitter < 1, "jitter", "must lie in [0, 1)");
  return e.take();
}

}  // namespace mailer::throttle
