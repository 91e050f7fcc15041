// Which mailbox provider a recipient domain belongs to: gmail, outlook, yahoo,
// or other:<key>. Decides on the domain first (gmail.com, hotmail.co.uk) and
// then on its MX host (aspmx.l.google.com puts a Google Workspace domain with
// gmail). Built-in rules follow DESIGN.md; configuration adds rules, which are
// tried before the built-in ones.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailer::throttle {

// One classification rule.
//   kDomain patterns: "gmail.com" (exactly), "hotmail.*" (that name under any
//   suffix: hotmail.com, hotmail.co.uk), "*.example.com" (example.com and
//   every name below it).
//   kMx patterns: a host name suffix on a label boundary: "google.com" matches
//   google.com and aspmx.l.google.com, not notgoogle.com.
struct ProviderRule {
  enum class Target { kDomain, kMx };
  Target target = Target::kDomain;
  std::string pattern;
  // The provider name the rule assigns: gmail, outlook, yahoo, or another
  // name of the operator's choosing (a-z, 0-9, '-', '_').
  std::string provider;
};

// Returns an error message for a malformed rule ("pattern must not be
// empty"), or nullopt when the rule is usable.
std::optional<std::string> validate_provider_rule(const ProviderRule& rule);

// The rules of DESIGN.md's throttle model.
std::vector<ProviderRule> builtin_provider_rules();

class ProviderClassifier {
 public:
  // `extra_rules` come first, in order, then the built-in rules. Malformed
  // rules are skipped (validate them at the configuration edge).
  explicit ProviderClassifier(std::vector<ProviderRule> extra_rules = {});

  // The provider key of a recipient domain whose MX host is `mx_host` (empty
  // when unknown). Names are compared lower-case without a trailing dot. When
  // no rule matches, the key is "other:<mx host>" if one is known, else
  // "other:<domain>".
  std::string classify(std::string_view domain, std::string_view mx_host = {}) const;

  // The provider of an MX host alone, or nullopt if no MX rule matches.
  std::optional<std::string> classify_mx(std::string_view mx_host) const;

 private:
  std::vector<ProviderRule> rules_;
};

// The configuration family of a provider key: "other:mx.example.net" ->
// "other"; every other key is its own family.
std::string provider_family(std::string_view provider_key);

}  // namespace mailer::throttle
