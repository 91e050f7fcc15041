#include "app/doctor/doctor_checks.h"

#include <fmt/format.h>

#include <algorithm>

#include "app/base/bounded_file.h"
#include "app/doctor/ascii_lower.h"
#include "sender/dkim_signer.h"

namespace mailer::app {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string without_space(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (!std::isspace(static_cast<unsigned char>(c))) out += c;
  }
  return out;
}

const std::string* find_tag(const std::vector<std::pair<std::string, std::string>>& tags,
                            std::string_view name) {
  for (const auto& [k, v] : tags) {
    if (k == name) return &v;
  }
  return nullptr;
}

DoctorCheck make(std::string check, CheckResult result, std::string target, std::string detail) {
  return DoctorCheck{std::move(check), result, std::move(detail), std::move(target)};
}

// Long records are shortened in details so that the table stays readable.
std::string shorten(std::string_view text) {
  constexpr std::size_t kMaxShown = 80;
  if (text.size() <= kMaxShown) return std::string(text);
  return std::string(text.substr(0, kMaxShown - 3)) + "...";
}

}  // namespace

std::string_view to_string(CheckResult result) {
  switch (result) {
    case CheckResult::kPass:
      return "pass";
    case CheckResult::kWarn:
      return "warn";
    case CheckResult::kFail:
      return "fail";
  }
  return "fail";
}

std::vector<std::pair<std::string, std::string>> parse_tag_list(std::string_view text) {
  std::vector<std::pair<std::string, std::string>> tags;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    const std::size_t end = std::min(text.find(';', pos), text.size());
    const std::string_view item = trim(text.substr(pos, end - pos));
    pos = end + 1;
    if (item.empty()) continue;
    const std::size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      tags.emplace_back(ascii_lower(item), "");
    } else {
      tags.emplace_back(ascii_lower(trim(item.substr(0, eq))),
                        std::string(trim(item.substr(eq + 1))));
    }
  }
  return tags;
}

DoctorCheck judge_spf(const std::string& domain, const DnsAnswer& txt,
                      const std::optional<SpfEvaluation>& evaluation, bool for_sending_ip) {
  auto line = [&](CheckResult r, std::string detail) {
    return make("spf", r, domain, std::move(detail));
  };
  if (txt.status == DnsStatus::kError) {
    return line(CheckResult::kWarn, fmt::format("TXT lookup failed: {}", txt.error));
  }
  const std::vector<std::string> records = spf_records(txt.records);
  if (records.empty()) return line(CheckResult::kFail, "no v=spf1 TXT record");
  if (records.size() > 1) {
    return line(CheckResult::kFail,
                fmt::format("{} v=spf1 records (receivers answer permerror: publish exactly one)",
                            records.size()));
  }
  if (!evaluation || !for_sending_ip) {
    if (evaluation && evaluation->result == SpfResult::kPermError) {
      return line(CheckResult::kFail, fmt::format("permerror: {}", evaluation->reason));
    }
    if (evaluation && evaluation->result == SpfResult::kTempError) {
      return line(CheckResult::kWarn, fmt::format("temperror: {}", evaluation->reason));
    }
    return line(CheckResult::kPass,
                fmt::format("record present: \"{}\"{} (give --ip to test that it authorises the "
                            "sending IP)",
                            shorten(records[0]),
                            evaluation ? fmt::format(", {} of {} DNS lookups",
                                                     evaluation->dns_lookups, kSpfMaxDnsLookups)
                                       : ""));
  }
  const SpfEvaluation& e = *evaluation;
  const std::string lookups = fmt::format("{} of {} DNS lookups", e.dns_lookups, kSpfMaxDnsLookups);
  switch (e.result) {
    case SpfResult::kPass:
      return line(CheckResult::kPass,
                  fmt::format("pass: the IP is authorised by \"{}\" ({})", e.matched, lookups));
    case SpfResult::kSoftFail:
      return line(CheckResult::kWarn,
                  fmt::format("softfail: the IP is not authorised, \"{}\" asks receivers to "
                              "accept but mark it ({})",
                              e.matched, lookups));
    case SpfResult::kNeutral:
      return line(
          CheckResult::kWarn,
          fmt::format("neutral: the record makes no statement about the IP ({}) ({})",
                      e.matched.empty() ? "no term matched" : "\"" + e.matched + "\"", lookups));
    case SpfResult::kFail:
      return line(CheckResult::kFail,
                  fmt::format("fail: the IP is not authorised, \"{}\" rejects it ({})", e.matched,
                              lookups));
    case SpfResult::kNone:
      return line(CheckResult::kFail, fmt::format("none: {}", e.reason));
    case SpfResult::kTempError:
      return line(CheckResult::kWarn, fmt::format("temperror: {}", e.reason));
    case SpfResult::kPermError:
      return line(CheckResult::kFail, fmt::format("permerror: {}", e.reason));
  }
  return line(CheckResult::kFail, "unknown SPF result");
}

DkimPublicKey load_dkim_public_key(const DkimSettings& settings) {
  DkimPublicKey key;
  key.selector = settings.selector;
  key.key_file = settings.key_file;
  const auto algorithm = sender::ParseDkimAlgorithm(settings.algorithm);
  if (!algorithm) {
    key.error = fmt::format("unknown algorithm \"{}\"", settings.algorithm);
    return key;
  }
  try {
    const std::string pem = read_bounded_file(settings.key_file, kMaxSecretFileBytes);
    const sender::DkimSigner signer =
        sender::DkimSigner::FromPem(settings.domain, settings.selector, *algorithm, pem,
                                    fmt::format("DKIM key file {}", settings.key_file));
    const auto tags = parse_tag_list(signer.PublicKeyRecord());
    const std::string* k = find_tag(tags, "k");
    const std::string* p = find_tag(tags, "p");
    key.key_type = k != nullptr ? *k : "rsa";
    key.p = p != nullptr ? *p : "";
  } catch (const std::exception& e) {
    key.error = e.what();
  }
  return key;
}

DoctorCheck judge_dkim(const std::string& record_name, const DnsAnswer& txt,
                       const std::optional<DkimPublicKey>& configured) {
  auto line = [&](CheckResult r, std::string detail) {
    return make("dkim", r, record_name, std::move(detail));
  };
  if (txt.status == DnsStatus::kError) {
    return line(CheckResult::kWarn, fmt::format("TXT lookup failed: {}", txt.error));
  }
  if (txt.records.empty()) return line(CheckResult::kFail, "no DKIM key record");
  if (txt.records.size() > 1) {
    return line(CheckResult::kFail,
                fmt::format("{} TXT records: verifiers may pick any one; publish exactly one",
                            txt.records.size()));
  }
  const auto tags = parse_tag_list(txt.records[0]);
  const std::string* v = find_tag(tags, "v");
  if (v != nullptr && *v != "DKIM1") {
    return line(CheckResult::kFail, fmt::format("v={} (expected v=DKIM1)", *v));
  }
  if (v != nullptr && tags.front().first != "v") {
    return line(CheckResult::kFail, "v=DKIM1 must be the first tag (RFC 6376 3.6.1)");
  }
  const std::string* p = find_tag(tags, "p");
  if (p == nullptr) return line(CheckResult::kFail, "no p= tag: not a DKIM key record");
  const std::string published = without_space(*p);
  if (published.empty()) return line(CheckResult::kFail, "p= is empty: the key is revoked");
  const std::string* k = find_tag(tags, "k");
  const std::string key_type = k != nullptr ? ascii_lower(*k) : "rsa";
  if (!configured) {
    return line(
        CheckResult::kPass,
        fmt::format("k={} key published (no [[dkim]] key configured for it to compare)", key_type));
  }
  const DkimPublicKey& mine = *configured;
  if (!mine.error.empty()) {
    return line(CheckResult::kFail,
                fmt::format("configured key {} cannot be used: {}", mine.key_file, mine.error));
  }
  if (key_type != mine.key_type) {
    return line(CheckResult::kFail, fmt::format("published k={} but the configured key {} is {}",
                                                key_type, mine.key_file, mine.key_type));
  }
  if (published != mine.p) {
    return line(CheckResult::kFail,
                fmt::format("published p= does not match the configured key {}: messages signed "
                            "with it fail DKIM (publish \"v=DKIM1; k={}; p={}\")",
                            mine.key_file, mine.key_type, mine.p));
  }
  return line(CheckResult::kPass,
              fmt::format("k={} key matches the configured key {}", key_type, mine.key_file));
}

DoctorCheck judge_dmarc(const std::string& record_name, const DnsAnswer& txt) {
  auto line = [&](CheckResult r, std::string detail) {
    return make("dmarc", r, record_name, std::move(detail));
  };
  if (txt.status == DnsStatus::kError) {
    return line(CheckResult::kWarn, fmt::format("TXT lookup failed: {}", txt.error));
  }
  std::vector<std::vector<std::pair<std::string, std::string>>> records;
  for (const std::string& t : txt.records) {
    auto tags = parse_tag_list(t);
    if (!tags.empty() && tags.front().first == "v" && tags.front().second == "DMARC1") {
      records.push_back(std::move(tags));
    }
  }
  if (records.empty()) return line(CheckResult::kFail, "no v=DMARC1 record");
  if (records.size() > 1) {
    return line(CheckResult::kFail,
                fmt::format("{} v=DMARC1 records: receivers ignore them all (RFC 7489 6.6.3)",
                            records.size()));
  }
  const auto& tags = records[0];
  const std::string* p = find_tag(tags, "p");
  if (p == nullptr) return line(CheckResult::kFail, "no p= policy tag");
  const std::string policy = ascii_lower(*p);
  std::string extra;
  if (const std::string* sp = find_tag(tags, "sp")) extra += fmt::format(", sp={}", *sp);
  if (const std::string* pct = find_tag(tags, "pct")) extra += fmt::format(", pct={}", *pct);
  extra += find_tag(tags, "rua") != nullptr ? ", aggregate reports requested (rua)"
                                            : ", no aggregate reports (rua) requested";
  if (policy == "none") {
    return line(CheckResult::kWarn,
                fmt::format("p=none: monitoring only, receivers apply no policy{}", extra));
  }
  if (policy == "quarantine" || policy == "reject") {
    return line(CheckResult::kPass, fmt::format("p={}{}", policy, extra));
  }
  return line(CheckResult::kFail, fmt::format("p={} is not none, quarantine or reject", *p));
}

DoctorCheck judge_mx(const std::string& domain, const DnsAnswer& mx, const DnsAnswer& a,
                     const DnsAnswer& aaaa) {
  auto line = [&](CheckResult r, std::string detail) {
    return make("mx", r, domain, std::move(detail));
  };
  if (mx.status == DnsStatus::kError) {
    return line(CheckResult::kWarn, fmt::format("MX lookup failed: {}", mx.error));
  }
  if (mx.status == DnsStatus::kNxDomain) {
    return line(CheckResult::kFail, "the domain does not exist (NXDOMAIN)");
  }
  const bool null_mx =
      std::any_of(mx.mx.begin(), mx.mx.end(), [](const MxRecord& r) { return r.exchange.empty(); });
  if (null_mx && mx.mx.size() == 1) {
    return line(CheckResult::kFail,
                "null MX (RFC 7505): the domain accepts no mail, so bounces and replies are lost "
                "and receivers distrust it as a sender");
  }
  if (mx.ok()) {
    std::vector<MxRecord> sorted = mx.mx;
    std::stable_sort(sorted.begin(), sorted.end(), [](const MxRecord& x, const MxRecord& y) {
      return x.preference < y.preference;
    });
    std::string hosts;
    for (const MxRecord& r : sorted) {
      if (!hosts.empty()) hosts += ", ";
      hosts += fmt::format("{} {}", r.preference, r.exchange.empty() ? "." : r.exchange);
    }
    if (null_mx) {
      return line(
          CheckResult::kWarn,
          fmt::format("a null MX beside other MX records (RFC 7505 forbids it): {}", hosts));
    }
    return line(CheckResult::kPass, hosts);
  }
  if (a.ok() || aaaa.ok()) {
    return line(CheckResult::kWarn,
                "no MX record: mail goes to the domain's own address (implicit MX, RFC 5321 "
                "5.1); publish an MX");
  }
  if (a.status == DnsStatus::kError || aaaa.status == DnsStatus::kError) {
    return line(CheckResult::kWarn, "no MX record and the address lookup failed");
  }
  return line(CheckResult::kFail,
              "neither MX nor address records: bounces and replies cannot reach the domain");
}

DoctorCheck judge_ptr(const IpAddress& ip, const DnsAnswer& ptr,
                      const std::vector<DnsAnswer>& forward) {
  const std::string target = ip.reverse_name();
  auto line = [&](CheckResult r, std::string detail) {
    return make("ptr", r, target, std::move(detail));
  };
  if (ptr.status == DnsStatus::kError) {
    return line(CheckResult::kWarn, fmt::format("PTR lookup failed: {}", ptr.error));
  }
  if (ptr.records.empty()) {
    return line(
        CheckResult::kFail,
        fmt::format("no PTR record for {}: many receivers refuse mail from it", ip.to_string()));
  }
  bool lookup_failed = false;
  for (std::size_t i = 0; i < ptr.records.size(); ++i) {
    if (i >= forward.size()) break;
    if (forward[i].status == DnsStatus::kError) lookup_failed = true;
    for (const std::string& text : forward[i].records) {
      auto addr = IpAddress::parse(text);
      if (addr && *addr == ip) {
        return line(CheckResult::kPass, fmt::format("{} -> {} -> {} (forward-confirmed)",
                                                    ip.to_string(), ptr.records[i], text));
      }
    }
  }
  std::string names;
  for (const std::string& n : ptr.records) names += (names.empty() ? "" : ", ") + n;
  if (lookup_failed) {
    return line(CheckResult::kWarn,
                fmt::format("PTR {} could not be resolved back (lookup failed)", names));
  }
  return line(CheckResult::kFail,
              fmt::format("PTR {} does not resolve back to {} (not forward-confirmed)", names,
                          ip.to_string()));
}

DoctorCheck judge_blocklist(const std::string& check, const std::string& zone,
                            const std::string& query, const DnsAnswer& a) {
  auto line = [&](CheckResult r, std::string detail) {
    return make(check, r, query, fmt::format("{}: {}", zone, detail));
  };
  if (a.status == DnsStatus::kError) {
    return line(CheckResult::kWarn, fmt::format("lookup failed: {}", a.error));
  }
  if (a.empty()) return line(CheckResult::kPass, "not listed");
  // Listings answer 127.0.0.x; several lists answer 127.255.255.x for
  // errors (queries through public resolvers, rate limits): not a listing.
  const IpAddress loopback = *IpAddress::parse("127.0.0.0");
  const IpAddress error_codes = *IpAddress::parse("127.255.255.0");
  std::vector<std::string> listed;
  std::vector<std::string> errors;
  std::vector<std::string> other;
  for (const std::string& text : a.records) {
    auto addr = IpAddress::parse(text);
    if (!addr || !addr->in_network(loopback, 8)) {
      other.push_back(text);
    } else if (addr->in_network(error_codes, 24)) {
      errors.push_back(text);
    } else {
      listed.push_back(text);
    }
  }
  auto join = [](const std::vector<std::string>& v) {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
    return out;
  };
  if (!listed.empty()) return line(CheckResult::kFail, fmt::format("LISTED ({})", join(listed)));
  if (!errors.empty()) {
    return line(CheckResult::kWarn,
                fmt::format("the list answered error code {} (query refused: a public or "
                            "unregistered resolver?)",
                            join(errors)));
  }
  return line(CheckResult::kWarn,
              fmt::format("unexpected answer {} (a resolver rewriting NXDOMAIN?)", join(other)));
}

}  // namespace mailer::app
