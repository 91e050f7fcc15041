#include "throttle/provider_classifier.h"

#include <algorithm>

namespace mailer::throttle {
namespace {

std::string normalise(std::string_view name) {
  std::string out(name);
  while (!out.empty() && out.back() == '.') out.pop_back();
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) {
    return static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  });
  return out;
}

bool ends_on_label(std::string_view name, std::string_view suffix) {
  if (suffix.empty() || name.size() < suffix.size()) return false;
  if (name.substr(name.size() - suffix.size()) != suffix) return false;
  return name.size() == suffix.size() || name[name.size() - suffix.size() - 1] == '.';
}

bool matches(const ProviderRule& rule, std::string_view name) {
  std::string_view pattern = rule.pattern;
  if (rule.target == ProviderRule::Target::kMx) return ends_on_label(name, pattern);
  if (pattern.size() > 2 && pattern.substr(0, 2) == "*.") {
    return ends_on_label(name, pattern.substr(2));
  }
  if (pattern.size() > 2 && pattern.substr(pattern.size() - 2) == ".*") {
    std::string_view head = pattern.substr(0, pattern.size() - 1);  // "hotmail."
    return name.size() > head.size() && name.substr(0, head.size()) == head;
  }
  return name == pattern;
}

ProviderRule domain(std::string pattern, std::string provider) {
  return {ProviderRule::Target::kDomain, std::move(pattern), std::move(provider)};
}

ProviderRule mx(std::string pattern, std::string provider) {
  return {ProviderRule::Target::kMx, std::move(pattern), std::move(provider)};
}

}  // namespace

std::optional<std::string> validate_provider_rule(const ProviderRule& rule) {
  if (rule.pattern.empty()) return "pattern must not be empty";
  if (rule.pattern.find_first_of(" \t\r\n") != std::string::npos) {
    return "pattern must not contain spaces";
  }
  if (rule.target == ProviderRule::Target::kMx && rule.pattern.find('*') != std::string::npos) {
    return "an MX pattern is a host name suffix and takes no '*'";
  }
  if (rule.provider.empty()) return "provider must not be empty";
  for (char c : rule.provider) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return "provider name may hold only a-z, 0-9, '-' and '_'";
  }
  return std::nullopt;
}

std::vector<ProviderRule> builtin_provider_rules() {
  return {
      domain("gmail.com", "gmail"),
      domain("googlemail.com", "gmail"),
      mx("google.com", "gmail"),
      mx("googlemail.com", "gmail"),
      domain("outlook.com", "outlook"),
      domain("hotmail.*", "outlook"),
      domain("live.*", "outlook"),
      domain("msn.com", "outlook"),
      mx("protection.outlook.com", "outlook"),
      domain("yahoo.*", "yahoo"),
      domain("ymail.com", "yahoo"),
      domain("rocketmail.com", "yahoo"),
      domain("aol.com", "yahoo"),
      mx("yahoodns.net", "yahoo"),
  };
}

ProviderClassifier::ProviderClassifier(std::vector<ProviderRule> extra_rules) {
  for (ProviderRule& rule : extra_rules) {
    if (validate_provider_rule(rule)) continue;
    rule.pattern = normalise(rule.pattern);
    rules_.push_back(std::move(rule));
  }
  for (ProviderRule& rule : builtin_provider_rules()) rules_.push_back(std::move(rule));
}

std::string ProviderClassifier::classify(std::string_view domain_name,
                                         std::string_view mx_host) const {
  std::string d = normalise(domain_name);
  for (const ProviderRule& rule : rules_) {
    if (rule.target == ProviderRule::Target::kDomain && matches(rule, d)) return rule.provider;
  }
  std::string m = normalise(mx_host);
  if (!m.empty()) {
    if (auto provider = classify_mx(m)) return *provider;
    return "other:" + m;
  }
  return "other:" + d;
}

std::optional<std::string> ProviderClassifier::classify_mx(std::string_view mx_host) const {
  std::string m = normalise(mx_host);
  for (const ProviderRule& rule : rules_) {
    if (rule.target == ProviderRule::Target::kMx && matches(rule, m)) return rule.provider;
  }
  return std::nullopt;
}

std::string provider_family(std::string_view provider_key) {
  if (provider_key.substr(0, 6) == "other:") return "other";
  return std::string(provider_key);
}

}  // namespace mailer::throttle
