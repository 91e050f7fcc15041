#include "throttle/reply_classifier.h"

#include <algorithm>
#include <initializer_list>

#include "throttle/provider_classifier.h"

namespace mailer::throttle {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) {
    return static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  });
  return out;
}

bool has_any(std::string_view text, std::initializer_list<std::string_view> needles) {
  for (std::string_view n : needles) {
    if (text.find(n) != std::string_view::npos) return true;
  }
  return false;
}

// Provider tokens whose meaning the providers document. Matched with their
// brackets or prefix so that "[TS02]" never matches inside another token.
struct Token {
  std::string_view text;  // lower-case
  Signal signal;
};

constexpr Token kTokens[] = {
    // Yahoo: TSS04 is the penalty box (unexpected volume), TS01 complaints;
    // both stop the sender for hours. TS02 asks to slow down. TS03 and TSS09
    // say retrying will not succeed.
    {"[tss04]", Signal::kSuspend},
    {"[ts01]", Signal::kSuspend},
    {"[ts02]", Signal::kThrottle},
    {"[ts03]", Signal::kBlock},
    {"[tss09]", Signal::kBlock},
    // Outlook: hourly/daily limit, per-connection limit, concurrent
    // connections (the last also flags connection_limit below).
    {"rp-001", Signal::kThrottle},
    {"rp-002", Signal::kThrottle},
    {"rp-003", Signal::kThrottle},
};

// Phrases that name a connection-count complaint.
bool connection_complaint(std::string_view t) {
  return has_any(t, {"rp-003", "too many connections", "too many concurrent connections",
                     "concurrent connections", "connection limit", "too many sessions"});
}

bool auth_phrase(std::string_view t) {
  return has_any(t, {"spf", "dkim", "dmarc", "authenticat", "tls required", "starttls",
                     "encryption required", "reverse dns", "ptr record"});
}

bool block_phrase(std::string_view t) {
  return has_any(t, {"block list", "blocklist", "blacklist", "blocked using", "spamhaus", "listed",
                     "reputation", "blocked"});
}

bool recipient_phrase(std::string_view t) {
  return has_any(t, {"greylist", "graylist", "mailbox full", "over quota", "out of storage",
                     "receiving mail too quickly", "mailbox temporarily"});
}

// Enhanced status "c.s.d" split into class, subject and detail numbers.
struct Enhanced {
  int cls = 0;
  int subject = -1;
  int detail = -1;
};

// Parses the digits of `s`; -1 if empty, not all digits or too long.
int small_number(std::string_view s) {
  if (s.empty() || s.size() > 3) return -1;
  int value = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return -1;
    value = value * 10 + (c - '0');
  }
  return value;
}

std::optional<Enhanced> split_enhanced(std::string_view status) {
  std::size_t p1 = status.find('.');
  if (p1 == std::string_view::npos) return std::nullopt;
  std::size_t p2 = status.find('.', p1 + 1);
  if (p2 == std::string_view::npos) return std::nullopt;
  Enhanced e{small_number(status.substr(0, p1)), small_number(status.substr(p1 + 1, p2 - p1 - 1)),
             small_number(status.substr(p2 + 1))};
  if (e.cls < 0 || e.subject < 0 || e.detail < 0) return std::nullopt;
  return e;
}

// Security subject (x.7.d) details that name sender authentication or
// transport security (RFC 3463, RFC 7372, Microsoft's 5.7.515).
bool auth_detail(int detail) {
  switch (detail) {
    case 8:    // authentication credentials invalid
    case 10:   // encryption needed
    case 11:   // encryption required
    case 20:   // no passing DKIM signature
    case 21:   // no acceptable DKIM signature
    case 22:   // no valid author-matched DKIM signature
    case 23:   // SPF validation failed
    case 24:   // SPF validation error
    case 25:   // reverse DNS validation failed
    case 26:   // multiple authentication checks failed (Gmail: unauthenticated)
    case 27:   // sender address has null MX
    case 30:   // REQUIRETLS
    case 515:  // Outlook: domain below the required authentication level
      return true;
    default:
      return false;
  }
}

using Verdict = std::optional<std::pair<Signal, std::string>>;

Verdict by_enhanced(const SmtpReply& r, std::string_view t) {
  auto e = split_enhanced(r.enhanced_status);
  if (!e) return std::nullopt;
  const std::string why = "enhanced " + r.enhanced_status;
  const bool temp = e->cls == 4;
  const bool rcpt = r.stage == SmtpStage::kRcpt;
  if (e->subject == 7) {
    if (auth_detail(e->detail)) return std::pair{Signal::kAuthPolicy, why};
    // Gmail's unsolicited-rate limit and Outlook's reputation / busy limits.
    if (temp && (e->detail == 28 || e->detail == 650 || e->detail == 500)) {
      return std::pair{Signal::kThrottle, why};
    }
    if (auth_phrase(t)) return std::pair{Signal::kAuthPolicy, why + " (authentication)"};
    if (temp) {
      if (rcpt || recipient_phrase(t)) return std::pair{Signal::kRecipientTempfail, why};
      return std::pair{Signal::kThrottle, why};
    }
    if (rcpt && !block_phrase(t)) return std::pair{Signal::kHardBounce, why};
    return std::pair{Signal::kBlock, why};
  }
  if (e->subject == 1 || e->subject == 2) {  // addressing, mailbox status
    return std::pair{temp ? Signal::kRecipientTempfail : Signal::kHardBounce, why};
  }
  if (temp && e->subject == 3) {  // mail system status
    // 4.3.1 insufficient resources and 4.3.2 not accepting messages are load
    // shedding; other 4.3.x are faults.
    bool load = e->detail == 1 || e->detail == 2;
    return std::pair{load ? Signal::kThrottle : Signal::kTransient, why};
  }
  if (temp && e->subject == 4) {  // network and routing
    return std::pair{e->detail == 5 ? Signal::kThrottle : Signal::kTransient,
                     why};  // 4.4.5 congestion
  }
  return std::nullopt;
}

Verdict by_phrase(const SmtpReply& r, std::string_view t) {
  if (auth_phrase(t)) return std::pair{Signal::kAuthPolicy, std::string("phrase (authentication)")};
  if (r.permanent_failure() && block_phrase(t)) {
    return std::pair{Signal::kBlock, std::string("phrase (block list)")};
  }
  if (r.transient_failure() && recipient_phrase(t)) {
    return std::pair{Signal::kRecipientTempfail, std::string("phrase (recipient)")};
  }
  if (r.transient_failure() && has_any(t, {"rate limit", "too many messages", "slow down"})) {
    return std::pair{Signal::kThrottle, std::string("phrase (rate)")};
  }
  return std::nullopt;
}

std::pair<Signal, std::string> by_code(const SmtpReply& r) {
  const std::string why = "code " + std::to_string(r.code);
  const bool rcpt = r.stage == SmtpStage::kRcpt;
  if (r.permanent_failure()) {
    // A refusal before any recipient was named concerns the sender.
    if (r.stage == SmtpStage::kGreeting) return {Signal::kBlock, why};
    return {Signal::kHardBounce, why};
  }
  switch (r.code) {
    case 421:  // service not available, closing the channel: load shedding
      return {Signal::kThrottle, why};
    case 450:
    case 451:
      return {rcpt ? Signal::kRecipientTempfail : Signal::kTransient, why};
    case 452:  // insufficient storage: per recipient at RCPT, the server's load elsewhere
      return {rcpt ? Signal::kRecipientTempfail : Signal::kThrottle, why};
    default:
      return {Signal::kTransient, why};
  }
}

std::pair<Signal, std::string> builtin(const SmtpReply& r, std::string_view t) {
  if (r.positive()) return {Signal::kAccepted, "code " + std::to_string(r.code)};
  for (const Token& token : kTokens) {
    if (t.find(token.text) != std::string_view::npos) {
      return {token.signal, "token " + std::string(token.text)};
    }
  }
  if (r.transient_failure() && connection_complaint(t)) {
    return {Signal::kThrottle, "phrase (connections)"};
  }
  if (auto v = by_enhanced(r, t)) return *v;
  if (auto v = by_phrase(r, t)) return *v;
  return by_code(r);
}

// Number at the start of `s` (skipping spaces), and what follows it.
std::optional<std::pair<long, std::string_view>> leading_number(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  std::size_t n = 0;
  long value = 0;
  while (n < s.size() && n < 7 && s[n] >= '0' && s[n] <= '9') value = value * 10 + (s[n++] - '0');
  if (n == 0) return std::nullopt;
  s.remove_prefix(n);
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  return std::pair{value, s};
}

}  // namespace

std::optional<std::string> validate_reply_rule(const ReplyRule& rule) {
  if (rule.pattern.empty()) return "pattern must not be empty";
  if (rule.suspend_for && rule.signal != Signal::kSuspend) {
    return "suspend_for is only meaningful with signal \"suspend\"";
  }
  if (rule.suspend_for && *rule.suspend_for <= Duration::zero()) {
    return "suspend_for must be greater than 0";
  }
  return std::nullopt;
}

ReplyClassifier::ReplyClassifier(std::vector<ReplyRule> operator_rules) {
  for (ReplyRule& rule : operator_rules) {
    if (validate_reply_rule(rule)) continue;
    std::string needle = lower(rule.pattern);
    rules_.push_back({std::move(needle), std::move(rule)});
  }
}

Classification ReplyClassifier::classify(const SmtpReply& reply, std::string_view provider) const {
  const std::string t = lower(one_line(reply));
  Classification c;
  c.retry_after = retry_hint(t);
  c.connection_limit = reply.transient_failure() && connection_complaint(t);
  const std::string family = provider_family(provider);
  for (std::size_t i = 0; i < rules_.size(); ++i) {
    const CompiledRule& r = rules_[i];
    if (!r.rule.provider.empty() && r.rule.provider != family) continue;
    if (t.find(r.needle) == std::string::npos) continue;
    c.signal = r.rule.signal;
    c.suspend_for = r.rule.suspend_for;
    c.reason = "rule " + std::to_string(i + 1) + " (" + r.rule.pattern + ")";
    return c;
  }
  auto [signal, reason] = builtin(reply, t);
  c.signal = signal;
  c.reason = std::move(reason);
  return c;
}

std::optional<Duration> retry_hint(std::string_view text) {
  const std::string t = lower(text);
  for (std::string_view key : {"again in ", "retry in ", "retry after ", "again after ", "wait "}) {
    std::size_t at = t.find(key);
    if (at == std::string::npos) continue;
    auto number = leading_number(std::string_view(t).substr(at + key.size()));
    if (!number) continue;
    auto [value, unit] = *number;
    long seconds_per_unit = 0;
    if (unit.substr(0, 2) == "ms") {
      continue;  // sub-second hints are below any retry granularity
    } else if (unit.substr(0, 3) == "sec" || unit.substr(0, 1) == "s") {
      seconds_per_unit = 1;
    } else if (unit.substr(0, 3) == "min" || unit.substr(0, 1) == "m") {
      seconds_per_unit = 60;
    } else if (unit.substr(0, 2) == "hr" || unit.substr(0, 4) == "hour" ||
               unit.substr(0, 1) == "h") {
      seconds_per_unit = 3600;
    }
    if (seconds_per_unit == 0 || value <= 0) continue;
    return std::chrono::seconds(value * seconds_per_unit);
  }
  return std::nullopt;
}

}  // namespace mailer::throttle
