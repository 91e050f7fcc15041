// Turns a parsed SMTP reply into one Signal. Decides on the reply code, the
// enhanced status code, provider tokens ([TSS04], RP-003, 4.7.650) and a few
// stable phrases ("too many connections", "greylisted"), never on whole
// strings, so rewordings and other IP addresses classify alike. Operator rules
// from configuration are tried first.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "throttle/duration.h"
#include "throttle/signal.h"
#include "throttle/smtp_reply.h"

namespace mailer::throttle {

// An operator's rule: when `pattern` occurs (case-insensitively) in the reply
// as one_line() prints it ("421 4.7.0 [TS02] Messages from ..."), the reply
// means `signal`.
struct ReplyRule {
  std::string pattern;
  Signal signal = Signal::kThrottle;
  // For kSuspend: how long to stop; the provider policy's suspend_for when
  // empty.
  std::optional<Duration> suspend_for;
  // Only replies from this provider family (gmail, yahoo, outlook, other or an
  // operator's name); every provider when empty.
  std::string provider;
};

// An error message for a rule that cannot work ("pattern must not be
// empty"), or nullopt.
std::optional<std::string> validate_reply_rule(const ReplyRule& rule);

struct Classification {
  Signal signal = Signal::kTransient;
  // From an operator rule with a suspend duration.
  std::optional<Duration> suspend_for;
  // "Try again in 10 minutes": the delay the reply asks for, if it names one.
  std::optional<Duration> retry_after;
  // The reply complains about the number of connections (RP-003, "too many
  // connections"): the controller lowers the connection limit.
  bool connection_limit = false;
  // What decided, for logs: "token [TSS04]", "enhanced 4.7.28", "rule 1".
  std::string reason;
};

class ReplyClassifier {
 public:
  // Rules are tried in order before the built-in ones; invalid rules are
  // skipped (validate them where configuration is read).
  explicit ReplyClassifier(std::vector<ReplyRule> operator_rules = {});

  // `provider` is a provider key or family ("gmail", "other:mx.example.net");
  // it only selects operator rules.
  Classification classify(const SmtpReply& reply, std::string_view provider = {}) const;

 private:
  struct CompiledRule {
    std::string needle;  // lower-case
    ReplyRule rule;
  };
  std::vector<CompiledRule> rules_;
};

// The delay a reply text asks for ("try again in 5 minutes", "retry after 30
// seconds", "please wait 1 hour"), or nullopt.
std::optional<Duration> retry_hint(std::string_view text);

}  // namespace mailer::throttle
