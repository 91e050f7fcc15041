#include "app/doctor/spf_evaluator.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <optional>

#include "app/doctor/ascii_lower.h"

namespace mailer::app {
namespace {

// Ends an evaluation early with temperror or permerror.
struct SpfAbort {
  SpfResult result;
  std::string reason;
};

[[noreturn]] void perm_error(std::string reason) {
  throw SpfAbort{SpfResult::kPermError, std::move(reason)};
}

enum class Qualifier : char { kPass = '+', kFail = '-', kSoftFail = '~', kNeutral = '?' };

SpfResult result_of(Qualifier q) {
  switch (q) {
    case Qualifier::kPass:
      return SpfResult::kPass;
    case Qualifier::kFail:
      return SpfResult::kFail;
    case Qualifier::kSoftFail:
      return SpfResult::kSoftFail;
    case Qualifier::kNeutral:
      return SpfResult::kNeutral;
  }
  return SpfResult::kNeutral;
}

struct Mechanism {
  std::string text;  // the term as written, for reports
  Qualifier qualifier = Qualifier::kPass;
  std::string name;         // all, include, a, mx, ptr, ip4, ip6, exists
  std::string domain_spec;  // unexpanded; empty: the current domain
  int cidr4 = 32;
  int cidr6 = 128;
  std::optional<IpAddress> network;  // ip4 / ip6
};

struct Record {
  std::vector<Mechanism> mechanisms;
  std::string redirect;  // unexpanded domain-spec, or empty
};

int parse_cidr(std::string_view digits, int max, std::string_view term) {
  int value = -1;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (digits.empty() || ec != std::errc() || ptr != digits.data() + digits.size() || value < 0 ||
      value > max || (digits.size() > 1 && digits[0] == '0')) {
    perm_error(fmt::format("bad CIDR length in \"{}\"", term));
  }
  return value;
}

// Splits "[:domain][/cidr4][//cidr6]" (what follows a, mx) into `m`.
void parse_domain_and_cidr(std::string_view rest, Mechanism& m, bool allow_cidr) {
  if (!rest.empty() && rest[0] == ':') {
    rest.remove_prefix(1);
    const std::size_t slash = rest.find('/');
    m.domain_spec = std::string(rest.substr(0, slash));
    if (m.domain_spec.empty()) perm_error(fmt::format("empty domain in \"{}\"", m.text));
    rest = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash);
  }
  if (rest.empty()) return;
  if (!allow_cidr || rest[0] != '/') perm_error(fmt::format("malformed term \"{}\"", m.text));
  const std::size_t dual = rest.find("//");
  std::string_view c4 = rest.substr(0, dual);
  std::string_view c6 = dual == std::string_view::npos ? std::string_view{} : rest.substr(dual + 2);
  if (!c4.empty()) m.cidr4 = parse_cidr(c4.substr(1), 32, m.text);
  if (dual != std::string_view::npos) m.cidr6 = parse_cidr(c6, 128, m.text);
}

// "a.b.c" -> "c.b.a" (IPv6 nibbles in forward order for %{i}).
std::string reverse_dotted(std::string_view s) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  for (std::size_t p = 0; p <= s.size(); ++p) {
    if (p == s.size() || s[p] == '.') {
      parts.push_back(s.substr(start, p - start));
      start = p + 1;
    }
  }
  std::string out;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    if (!out.empty()) out += '.';
    out += *it;
  }
  return out;
}

bool is_modifier(std::string_view term) {
  const std::size_t eq = term.find('=');
  if (eq == std::string_view::npos || eq == 0) return false;
  if (!std::isalpha(static_cast<unsigned char>(term[0]))) return false;
  return std::all_of(term.begin(), term.begin() + static_cast<std::ptrdiff_t>(eq), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

// The terms of a "v=spf1 ..." record; throws permerror on any syntax error
// (RFC 7208 4.6: the whole record is checked before anything is evaluated).
Record parse_record(std::string_view text) {
  Record r;
  bool have_redirect = false;
  bool have_exp = false;
  std::size_t pos = 6;  // past "v=spf1"
  while (pos < text.size()) {
    while (pos < text.size() && text[pos] == ' ') ++pos;
    if (pos >= text.size()) break;
    const std::size_t end = std::min(text.find(' ', pos), text.size());
    const std::string_view term = text.substr(pos, end - pos);
    pos = end;
    if (is_modifier(term)) {
      const std::size_t eq = term.find('=');
      const std::string name = ascii_lower(term.substr(0, eq));
      const std::string_view value = term.substr(eq + 1);
      if (name == "redirect") {
        if (have_redirect) perm_error("more than one redirect= modifier");
        if (value.empty()) perm_error("empty redirect= modifier");
        have_redirect = true;
        r.redirect = std::string(value);
      } else if (name == "exp") {
        if (have_exp) perm_error("more than one exp= modifier");
        have_exp = true;
      }
      continue;  // unknown modifiers are ignored (RFC 7208 6)
    }
    Mechanism m;
    m.text = std::string(term);
    std::string_view body = term;
    if (std::string_view("+-~?").find(body[0]) != std::string_view::npos) {
      m.qualifier = static_cast<Qualifier>(body[0]);
      body.remove_prefix(1);
    }
    const std::size_t name_end = std::min(body.find_first_of(":/"), body.size());
    m.name = ascii_lower(body.substr(0, name_end));
    const std::string_view rest = body.substr(name_end);
    if (m.name == "all") {
      if (!rest.empty()) perm_error(fmt::format("malformed term \"{}\"", m.text));
    } else if (m.name == "include" || m.name == "exists") {
      if (rest.size() < 2 || rest[0] != ':') {
        perm_error(fmt::format("\"{}\" needs a domain", m.text));
      }
      m.domain_spec = std::string(rest.substr(1));
    } else if (m.name == "a" || m.name == "mx") {
      parse_domain_and_cidr(rest, m, true);
    } else if (m.name == "ptr") {
      parse_domain_and_cidr(rest, m, false);
    } else if (m.name == "ip4" || m.name == "ip6") {
      if (rest.size() < 2 || rest[0] != ':')
        perm_error(fmt::format("\"{}\" needs an address", m.text));
      std::string_view addr = rest.substr(1);
      const std::size_t slash = addr.find('/');
      const bool v6 = m.name == "ip6";
      int& cidr = v6 ? m.cidr6 : m.cidr4;
      if (slash != std::string_view::npos) {
        cidr = parse_cidr(addr.substr(slash + 1), v6 ? 128 : 32, m.text);
        addr = addr.substr(0, slash);
      }
      m.network = IpAddress::parse(addr);
      if (!m.network || m.network->is_v6() != v6) {
        perm_error(fmt::format("bad address in \"{}\"", m.text));
      }
    } else {
      perm_error(fmt::format("unknown mechanism \"{}\"", m.text));
    }
    r.mechanisms.push_back(std::move(m));
  }
  return r;
}

class Evaluator {
 public:
  Evaluator(const SpfLookup& dns, const IpAddress& ip, std::string sender)
      : dns_(dns), ip_(ip), sender_(std::move(sender)) {}

  int lookups() const { return lookups_; }

  // check_host() for `domain`; `record_out` receives the record used.
  SpfResult check(const std::string& domain, std::string* matched, std::string* reason,
                  std::string* record_out) {
    const DnsAnswer txt = dns_(domain, DnsType::kTxt);
    if (txt.status == DnsStatus::kError) {
      throw SpfAbort{SpfResult::kTempError, fmt::format("TXT {}: {}", domain, txt.error)};
    }
    const std::vector<std::string> records = spf_records(txt.records);
    if (records.empty()) {
      *reason = fmt::format("no v=spf1 record at {}", domain);
      return SpfResult::kNone;
    }
    if (records.size() > 1) {
      perm_error(
          fmt::format("{} v=spf1 records at {} (exactly one allowed)", records.size(), domain));
    }
    if (record_out != nullptr) *record_out = records[0];
    const Record record = parse_record(records[0]);
    for (const Mechanism& m : record.mechanisms) {
      if (matches(m, domain)) {
        *matched = m.text;
        return result_of(m.qualifier);
      }
    }
    if (!record.redirect.empty()) {
      count_lookup("redirect=" + record.redirect);
      const std::string target = expand(record.redirect, domain);
      std::string inner_reason;
      const SpfResult r = check(target, matched, &inner_reason, nullptr);
      if (r == SpfResult::kNone) {
        perm_error(fmt::format("redirect={}: {}", target, inner_reason));
      }
      return r;
    }
    return SpfResult::kNeutral;  // RFC 7208 4.7: nothing matched
  }

 private:
  void count_lookup(std::string_view term) {
    if (++lookups_ > kSpfMaxDnsLookups) {
      perm_error(fmt::format("more than {} DNS lookups (at \"{}\")", kSpfMaxDnsLookups, term));
    }
  }

  // A lookup of a term: errors end the evaluation, empty answers count as void.
  DnsAnswer lookup(const std::string& name, DnsType type, std::string_view term) {
    DnsAnswer a = dns_(name, type);
    if (a.status == DnsStatus::kError) {
      throw SpfAbort{SpfResult::kTempError,
                     fmt::format("{} {} (for \"{}\"): {}", to_string(type), name, term, a.error)};
    }
    if (a.empty() && ++void_lookups_ > kSpfMaxVoidLookups) {
      perm_error(fmt::format("more than {} void lookups (at \"{}\")", kSpfMaxVoidLookups, term));
    }
    return a;
  }

  DnsType address_type() const { return ip_.is_v6() ? DnsType::kAaaa : DnsType::kA; }
  int cidr(const Mechanism& m) const { return ip_.is_v6() ? m.cidr6 : m.cidr4; }

  bool any_address_matches(const DnsAnswer& a, int prefix) const {
    return std::any_of(a.records.begin(), a.records.end(), [&](const std::string& text) {
      auto addr = IpAddress::parse(text);
      return addr && ip_.in_network(*addr, prefix);
    });
  }

  std::string target(const Mechanism& m, const std::string& domain) {
    return m.domain_spec.empty() ? domain : expand(m.domain_spec, domain);
  }

  bool matches(const Mechanism& m, const std::string& domain) {
    if (m.name == "all") return true;
    if (m.name == "ip4" || m.name == "ip6") return ip_.in_network(*m.network, cidr(m));
    count_lookup(m.text);
    const std::string name = target(m, domain);
    if (m.name == "include") return include_matches(m, name);
    if (m.name == "a") return any_address_matches(lookup(name, address_type(), m.text), cidr(m));
    if (m.name == "exists") return lookup(name, DnsType::kA, m.text).ok();
    if (m.name == "mx") {
      const DnsAnswer mx = lookup(name, DnsType::kMx, m.text);
      if (static_cast<int>(mx.mx.size()) > kSpfMaxNamesPerTerm) {
        perm_error(fmt::format("\"{}\": {} has more than {} MX records", m.text, name,
                               kSpfMaxNamesPerTerm));
      }
      for (const MxRecord& r : mx.mx) {
        if (r.exchange.empty()) continue;  // null MX names no host
        if (any_address_matches(lookup(r.exchange, address_type(), m.text), cidr(m))) return true;
      }
      return false;
    }
    // ptr (RFC 7208 5.5): a validated PTR name at or under the target.
    const DnsAnswer ptr = dns_(ip_.reverse_name(), DnsType::kPtr);
    int checked = 0;
    for (const std::string& host : ptr.records) {
      if (++checked > kSpfMaxNamesPerTerm) break;
      const DnsAnswer a = dns_(host, address_type());
      const bool confirmed = std::any_of(a.records.begin(), a.records.end(), [&](const auto& t) {
        auto addr = IpAddress::parse(t);
        return addr && *addr == ip_;
      });
      const std::string want = ascii_lower(name);
      if (confirmed &&
          (host == want || (host.size() > want.size() && host.ends_with("." + want)))) {
        return true;
      }
    }
    return false;
  }

  bool include_matches(const Mechanism& m, const std::string& name) {
    std::string matched;
    std::string reason;
    const SpfResult r = check(name, &matched, &reason, nullptr);
    switch (r) {
      case SpfResult::kPass:
        return true;
      case SpfResult::kFail:
      case SpfResult::kSoftFail:
      case SpfResult::kNeutral:
        return false;
      case SpfResult::kNone:
        perm_error(fmt::format("\"{}\": {}", m.text, reason));
      case SpfResult::kTempError:
      case SpfResult::kPermError:
        break;  // thrown from check()
    }
    return false;
  }

  // Macro expansion (RFC 7208 7) of a domain-spec.
  std::string expand(std::string_view spec, const std::string& domain) {
    std::string out;
    for (std::size_t i = 0; i < spec.size(); ++i) {
      if (spec[i] != '%') {
        out += spec[i];
        continue;
      }
      if (++i >= spec.size()) perm_error(fmt::format("bad macro in \"{}\"", spec));
      const char c = spec[i];
      if (c == '%') {
        out += '%';
      } else if (c == '_') {
        out += ' ';
      } else if (c == '-') {
        out += "%20";
      } else if (c == '{') {
        const std::size_t close = spec.find('}', i);
        if (close == std::string_view::npos) perm_error(fmt::format("bad macro in \"{}\"", spec));
        out += expand_letter(spec.substr(i + 1, close - i - 1), domain, spec);
        i = close;
      } else {
        perm_error(fmt::format("bad macro in \"{}\"", spec));
      }
    }
    return out;
  }

  std::string expand_letter(std::string_view macro, const std::string& domain,
                            std::string_view spec) {
    if (macro.empty()) perm_error(fmt::format("bad macro in \"{}\"", spec));
    const char letter = static_cast<char>(std::tolower(static_cast<unsigned char>(macro[0])));
    const std::size_t at = sender_.rfind('@');
    std::string value;
    switch (letter) {
      case 's':
        value = sender_;
        break;
      case 'l':
        value = sender_.substr(0, at);
        break;
      case 'o':
        value = sender_.substr(at + 1);
        break;
      case 'd':
      case 'h':
        value = domain;
        break;
      case 'i':
        value = ip_.is_v6() ? reverse_dotted(ip_.reversed_labels()) : ip_.to_string();
        break;
      case 'p':
        value = "unknown";
        break;
      case 'v':
        value = ip_.is_v6() ? "ip6" : "in-addr";
        break;
      default:
        perm_error(fmt::format("bad macro letter in \"{}\"", spec));
    }
    // Transformers: digits (keep the rightmost N parts), 'r' (reverse),
    // then delimiters to split on (default '.').
    std::size_t k = 1;
    int keep = 0;
    while (k < macro.size() && std::isdigit(static_cast<unsigned char>(macro[k]))) {
      keep = keep * 10 + (macro[k++] - '0');
      if (keep > 128) perm_error(fmt::format("bad macro in \"{}\"", spec));
    }
    bool reverse = false;
    if (k < macro.size() && (macro[k] == 'r' || macro[k] == 'R')) {
      reverse = true;
      ++k;
    }
    std::string delimiters(macro.substr(k));
    if (delimiters.find_first_not_of(".-+,/_=") != std::string::npos) {
      perm_error(fmt::format("bad macro delimiter in \"{}\"", spec));
    }
    if (delimiters.empty()) delimiters = ".";
    if (keep == 0 && !reverse && delimiters == ".") return value;
    std::vector<std::string> parts;
    std::size_t start = 0;
    for (std::size_t p = 0; p <= value.size(); ++p) {
      if (p == value.size() || delimiters.find(value[p]) != std::string::npos) {
        parts.push_back(value.substr(start, p - start));
        start = p + 1;
      }
    }
    if (reverse) std::reverse(parts.begin(), parts.end());
    if (keep > 0 && static_cast<std::size_t>(keep) < parts.size()) {
      parts.erase(parts.begin(), parts.end() - keep);
    }
    std::string joined;
    for (std::size_t p = 0; p < parts.size(); ++p) {
      if (p > 0) joined += '.';
      joined += parts[p];
    }
    return joined;
  }

  const SpfLookup& dns_;
  IpAddress ip_;
  std::string sender_;
  int lookups_ = 0;
  int void_lookups_ = 0;
};

}  // namespace

std::string_view to_string(SpfResult result) {
  switch (result) {
    case SpfResult::kNone:
      return "none";
    case SpfResult::kNeutral:
      return "neutral";
    case SpfResult::kPass:
      return "pass";
    case SpfResult::kFail:
      return "fail";
    case SpfResult::kSoftFail:
      return "softfail";
    case SpfResult::kTempError:
      return "temperror";
    case SpfResult::kPermError:
      return "permerror";
  }
  return "none";
}

std::vector<std::string> spf_records(const std::vector<std::string>& txt) {
  std::vector<std::string> out;
  for (const std::string& t : txt) {
    if (t.size() >= 6 && ascii_lower(t.substr(0, 6)) == "v=spf1" &&
        (t.size() == 6 || t[6] == ' ')) {
      out.push_back(t);
    }
  }
  return out;
}

SpfEvaluation check_spf(const SpfLookup& dns, const IpAddress& ip, const std::string& domain,
                        const std::string& sender) {
  const std::string d = ascii_lower(domain);
  Evaluator evaluator(dns, ip, sender.empty() ? "postmaster@" + d : sender);
  SpfEvaluation e;
  try {
    e.result = evaluator.check(d, &e.matched, &e.reason, &e.record);
  } catch (const SpfAbort& abort) {
    e.result = abort.result;
    e.reason = abort.reason;
    e.matched.clear();
  }
  e.dns_lookups = evaluator.lookups();
  return e;
}

}  // namespace mailer::app
