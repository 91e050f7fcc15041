#include "lists/hygiene.h"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

namespace mailer::lists {
namespace {

// The edit-distance rule only guards corrections at least this long: short
// names (aol.com, live.com) have too many real one-edit neighbours to guess.
constexpr std::size_t kMinFuzzyCorrectionLength = 9;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Calls fn(line_number, fields) for each non-comment, non-blank line.
template <typename Fn>
void for_each_entry(std::string_view text, Fn&& fn) {
  std::size_t line_no = 0;
  while (!text.empty()) {
    std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++line_no;
    if (std::size_t hash = line.find('#'); hash != std::string_view::npos) {
      line = line.substr(0, hash);
    }
    std::vector<std::string> fields;
    std::size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
      std::size_t start = i;
      while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '\r') ++i;
      if (i > start) fields.emplace_back(line.substr(start, i - start));
    }
    if (!fields.empty()) fn(line_no, fields);
  }
}

std::string domain_entry(const char* table, std::size_t line, const std::string& text) {
  auto d = normalise_domain(text);
  if (auto* e = std::get_if<AddressError>(&d)) {
    throw std::invalid_argument(
        fmt::format("{} line {}: \"{}\" is not a domain: {}", table, line, text, e->reason));
  }
  return std::get<std::string>(d);
}

// True when a and b differ by one insertion, deletion, substitution or swap
// of neighbouring characters.
bool one_edit_apart(std::string_view a, std::string_view b) {
  if (a == b) return false;
  if (a.size() > b.size()) std::swap(a, b);
  if (b.size() - a.size() > 1) return false;
  std::size_t i = 0;
  while (i < a.size() && a[i] == b[i]) ++i;
  if (a.size() == b.size()) {
    if (a.substr(i + 1) == b.substr(i + 1)) return true;
    return i + 1 < a.size() && a[i] == b[i + 1] && a[i + 1] == b[i] &&
           a.substr(i + 2) == b.substr(i + 2);
  }
  return a.substr(i) == b.substr(i + 1);
}

}  // namespace

HygieneSources builtin_hygiene_sources() {
  HygieneSources s;
  s.role_accounts = std::string(builtin_role_accounts());
  s.disposable_domains = std::string(builtin_disposable_domains());
  s.typo_domains = std::string(builtin_typo_domains());
  return s;
}

HygieneRules::HygieneRules(const HygieneSources& sources) : switches_(sources) {
  switches_.role_accounts.clear();
  switches_.disposable_domains.clear();
  switches_.typo_domains.clear();
  for_each_entry(sources.role_accounts, [&](std::size_t line, const auto& f) {
    if (f.size() != 1) {
      throw std::invalid_argument(
          fmt::format("role accounts line {}: expected one local part", line));
    }
    roles_.insert(lower(f[0]));
  });
  for (const auto& r : sources.extra_role_accounts) roles_.insert(lower(r));
  for_each_entry(sources.disposable_domains, [&](std::size_t line, const auto& f) {
    if (f.size() != 1) {
      throw std::invalid_argument(
          fmt::format("disposable domains line {}: expected one domain", line));
    }
    disposable_.insert(domain_entry("disposable domains", line, f[0]));
  });
  for_each_entry(sources.typo_domains, [&](std::size_t line, const auto& f) {
    if (f.size() > 2) {
      throw std::invalid_argument(fmt::format(
          "typo domains line {}: expected \"typo correction\" or one real domain", line));
    }
    if (f.size() == 1) {
      real_domains_.insert(domain_entry("typo domains", line, f[0]));
      return;
    }
    // A typo may not even be a valid domain ("gmailcom"): keep it as text.
    std::string correction = domain_entry("typo domains", line, f[1]);
    typos_[lower(f[0])] = correction;
    real_domains_.insert(correction);
    if (correction.size() >= kMinFuzzyCorrectionLength &&
        std::find(popular_.begin(), popular_.end(), correction) == popular_.end()) {
      popular_.push_back(correction);
    }
  });
}

bool HygieneRules::is_role_account(std::string_view local_part) const {
  std::string_view base = local_part.substr(0, local_part.find('+'));
  return roles_.count(lower(base)) > 0;
}

std::optional<std::string> HygieneRules::disposable_match(std::string_view domain) const {
  std::string d(domain);
  for (;;) {
    if (disposable_.count(d) > 0) return d;
    std::size_t dot = d.find('.');
    if (dot == std::string::npos) return std::nullopt;
    d.erase(0, dot + 1);
  }
}

std::optional<std::string> HygieneRules::typo_correction(std::string_view domain) const {
  if (auto it = typos_.find(std::string(domain)); it != typos_.end()) return it->second;
  if (real_domains_.count(std::string(domain)) > 0) return std::nullopt;
  for (const auto& p : popular_) {
    if (one_edit_apart(domain, p)) return p;
  }
  return std::nullopt;
}

std::optional<HygieneVerdict> HygieneRules::check(const EmailAddress& address) const {
  if (switches_.reject_role_accounts && is_role_account(address.local_part())) {
    return HygieneVerdict{"role", std::string(address.local_part())};
  }
  if (switches_.reject_disposable) {
    if (auto m = disposable_match(address.domain())) return HygieneVerdict{"disposable", *m};
  }
  if (switches_.reject_typos) {
    if (auto c = typo_correction(address.domain())) {
      return HygieneVerdict{"typo", fmt::format("did you mean {}@{}?", address.local_part(), *c)};
    }
  }
  return std::nullopt;
}

}  // namespace mailer::lists
