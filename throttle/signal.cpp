#include "throttle/signal.h"

namespace mailer::throttle {
namespace {

struct SignalName {
  Signal signal;
  std::string_view name;
};

constexpr SignalName kNames[] = {
    {Signal::kAccepted, "accepted"},      {Signal::kThrottle, "throttle"},
    {Signal::kSuspend, "suspend"},        {Signal::kRecipientTempfail, "recipient_tempfail"},
    {Signal::kTransient, "transient"},    {Signal::kAuthPolicy, "auth_policy"},
    {Signal::kHardBounce, "hard_bounce"}, {Signal::kBlock, "block"},
};

}  // namespace

std::string_view signal_name(Signal signal) {
  for (const SignalName& n : kNames) {
    if (n.signal == signal) return n.name;
  }
  return "unknown";
}

std::optional<Signal> parse_signal(std::string_view name) {
  for (const SignalName& n : kNames) {
    if (n.name == name) return n.signal;
  }
  return std::nullopt;
}

}  // namespace mailer::throttle
