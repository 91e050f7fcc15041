#include "app/doctor/doctor.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "app/doctor/ascii_lower.h"

namespace mailer::app {
namespace {

// RFC 5737 TEST-NET-1: never a real sender, so no term authorises it.
constexpr const char* kSpfProbeAddress = "192.0.2.1";

bool valid_label(std::string_view label, bool allow_underscore) {
  if (label.empty() || label.size() > 63) return false;
  if (label.front() == '-' || label.back() == '-') return false;
  return std::all_of(label.begin(), label.end(), [&](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' ||
           (allow_underscore && c == '_');
  });
}

std::vector<std::string_view> labels(std::string_view name) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= name.size(); ++i) {
    if (i == name.size() || name[i] == '.') {
      out.push_back(name.substr(start, i - start));
      start = i + 1;
    }
  }
  return out;
}

// The DKIM selectors to check and the configured key of each, if any.
std::vector<std::pair<std::string, std::optional<DkimSettings>>> dkim_targets(
    const DoctorRequest& r) {
  std::vector<std::pair<std::string, std::optional<DkimSettings>>> out;
  auto configured = [&](const std::string& selector) -> std::optional<DkimSettings> {
    for (const DkimSettings& d : r.dkim) {
      if (ascii_lower(d.domain) == r.domain && ascii_lower(d.selector) == selector) return d;
    }
    return std::nullopt;
  };
  if (r.selector) {
    out.emplace_back(ascii_lower(*r.selector), configured(ascii_lower(*r.selector)));
    return out;
  }
  for (const DkimSettings& d : r.dkim) {
    if (ascii_lower(d.domain) == r.domain) out.emplace_back(ascii_lower(d.selector), d);
  }
  return out;
}

}  // namespace

std::optional<std::string> normalize_domain(std::string_view text) {
  std::string d = ascii_lower(text);
  if (!d.empty() && d.back() == '.') d.pop_back();
  if (d.empty() || d.size() > 253) return std::nullopt;
  const auto parts = labels(d);
  if (parts.size() < 2) return std::nullopt;
  for (std::string_view l : parts) {
    if (!valid_label(l, false)) return std::nullopt;
  }
  return d;
}

bool valid_selector(std::string_view text) {
  if (text.empty() || text.size() > 200) return false;
  for (std::string_view l : labels(text)) {
    if (!valid_label(l, true)) return false;
  }
  return true;
}

int DoctorReport::count(CheckResult result) const {
  return static_cast<int>(std::count_if(checks.begin(), checks.end(),
                                        [&](const DoctorCheck& c) { return c.result == result; }));
}

nlohmann::json DoctorReport::to_json() const {
  nlohmann::json j;
  j["domain"] = domain;
  if (ip) j["ip"] = ip->to_string();
  j["checks"] = nlohmann::json::array();
  for (const DoctorCheck& c : checks) {
    j["checks"].push_back({{"check", c.check},
                           {"result", std::string(to_string(c.result))},
                           {"detail", c.detail},
                           {"target", c.target}});
  }
  j["summary"] = {{"pass", count(CheckResult::kPass)},
                  {"warn", count(CheckResult::kWarn)},
                  {"fail", count(CheckResult::kFail)}};
  return j;
}

std::string DoctorReport::to_table() const {
  std::size_t width = std::string_view("CHECK").size();
  for (const DoctorCheck& c : checks) width = std::max(width, c.check.size());
  std::string out = fmt::format("{:<{}}  {:<6}  {}\n", "CHECK", width, "RESULT", "DETAIL");
  for (const DoctorCheck& c : checks) {
    out += fmt::format("{:<{}}  {:<6}  {}\n", c.check, width, to_string(c.result), c.detail);
  }
  out +=
      fmt::format("{}{}: {} pass, {} warn, {} fail\n", domain, ip ? " from " + ip->to_string() : "",
                  count(CheckResult::kPass), count(CheckResult::kWarn), count(CheckResult::kFail));
  return out;
}

DoctorReport run_doctor(sender::BlockingDnsResolver& dns, const DoctorRequest& r) {
  DoctorReport report;
  report.domain = r.domain;
  report.ip = r.ip;

  // Round one: every question that needs no other answer, all at once.
  std::vector<DnsQuestion> questions;
  auto ask = [&](std::string name, DnsType type) {
    questions.push_back({std::move(name), type});
    return questions.size() - 1;
  };
  const std::size_t spf_txt = ask(r.domain, DnsType::kTxt);
  const auto selectors = dkim_targets(r);
  std::vector<std::size_t> dkim_txt;
  for (const auto& [selector, settings] : selectors) {
    dkim_txt.push_back(ask(fmt::format("{}._domainkey.{}", selector, r.domain), DnsType::kTxt));
  }
  const std::string dmarc_name = "_dmarc." + r.domain;
  const std::size_t dmarc_txt = ask(dmarc_name, DnsType::kTxt);
  const std::size_t mx = ask(r.domain, DnsType::kMx);
  const std::size_t a = ask(r.domain, DnsType::kA);
  const std::size_t aaaa = ask(r.domain, DnsType::kAaaa);
  std::size_t ptr = 0;
  std::vector<std::size_t> ip_lists;
  if (r.ip) {
    ptr = ask(r.ip->reverse_name(), DnsType::kPtr);
    for (const std::string& zone : r.ip_blocklists) {
      ip_lists.push_back(ask(r.ip->reversed_labels() + "." + zone, DnsType::kA));
    }
  }
  std::vector<std::size_t> domain_lists;
  for (const std::string& zone : r.domain_blocklists) {
    domain_lists.push_back(ask(r.domain + "." + zone, DnsType::kA));
  }
  const std::vector<DnsAnswer> answers = dns.resolve(questions);

  // Round two: what depends on round one. The PTR names' addresses first
  // (one concurrent batch), then SPF, whose terms are evaluated in order
  // (RFC 7208 4.6.2) through a cache holding round one's answers.
  std::vector<DnsAnswer> forward;
  if (r.ip) {
    std::vector<DnsQuestion> names;
    for (const std::string& host : answers[ptr].records) {
      names.push_back({host, r.ip->is_v6() ? DnsType::kAaaa : DnsType::kA});
    }
    forward = dns.resolve(names);
  }
  std::optional<SpfEvaluation> spf;
  {
    std::map<std::pair<std::string, DnsType>, DnsAnswer> cache;
    for (std::size_t i = 0; i < questions.size(); ++i) {
      cache.emplace(std::make_pair(questions[i].name, questions[i].type), answers[i]);
    }
    SpfLookup lookup = [&](const std::string& name, DnsType type) {
      auto key = std::make_pair(ascii_lower(name), type);
      auto it = cache.find(key);
      if (it == cache.end()) it = cache.emplace(key, dns.resolve(key.first, type)).first;
      return it->second;
    };
    // Without --ip, an address that never sends mail walks the whole record:
    // syntax errors and too many lookups show without knowing the sender.
    spf = check_spf(lookup, r.ip ? *r.ip : *IpAddress::parse(kSpfProbeAddress), r.domain);
  }

  report.checks.push_back(judge_spf(r.domain, answers[spf_txt], spf, r.ip.has_value()));
  if (selectors.empty()) {
    report.checks.push_back(DoctorCheck{
        "dkim", CheckResult::kWarn,
        fmt::format("no --selector given and no [[dkim]] key configured for {}: DKIM not checked",
                    r.domain),
        "_domainkey." + r.domain});
  }
  for (std::size_t i = 0; i < selectors.size(); ++i) {
    std::optional<DkimPublicKey> key;
    if (selectors[i].second) key = load_dkim_public_key(*selectors[i].second);
    report.checks.push_back(judge_dkim(questions[dkim_txt[i]].name, answers[dkim_txt[i]], key));
  }
  report.checks.push_back(judge_dmarc(dmarc_name, answers[dmarc_txt]));
  report.checks.push_back(judge_mx(r.domain, answers[mx], answers[a], answers[aaaa]));
  if (r.ip) {
    report.checks.push_back(judge_ptr(*r.ip, answers[ptr], forward));
    for (std::size_t i = 0; i < ip_lists.size(); ++i) {
      report.checks.push_back(judge_blocklist("ip_blocklist", r.ip_blocklists[i],
                                              questions[ip_lists[i]].name, answers[ip_lists[i]]));
    }
  }
  for (std::size_t i = 0; i < domain_lists.size(); ++i) {
    report.checks.push_back(judge_blocklist("domain_blocklist", r.domain_blocklists[i],
                                            questions[domain_lists[i]].name,
                                            answers[domain_lists[i]]));
  }
  return report;
}

}  // namespace mailer::app
