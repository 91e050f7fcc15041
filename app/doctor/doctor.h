// `mailer doctor`: the sending-domain checklist. Asks DNS everything that
// does not depend on another answer at once (SPF, DKIM and DMARC TXT, MX and
// address records, PTR, every blocklist), then what does (SPF includes and
// redirects, forward confirmation of PTR names), and judges each answer
// (app/doctor_checks.h) into a pass / warn / fail report.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "app/config/config.h"
#include "app/doctor/dns_address.h"
#include "app/doctor/doctor_checks.h"
#include "sender/dns_resolver.h"

namespace mailer::app {

struct DoctorRequest {
  // Lower-case A-label without trailing dot (see normalize_domain).
  std::string domain;
  // --selector: check only this DKIM selector; otherwise every [[dkim]]
  // table of `domain` in `dkim`.
  std::optional<std::string> selector;
  // --ip: the sending IP for the SPF evaluation, PTR and IP blocklists;
  // without it those checks are skipped (SPF then checks presence only).
  std::optional<IpAddress> ip;
  std::vector<DkimSettings> dkim;
  std::vector<std::string> ip_blocklists;
  std::vector<std::string> domain_blocklists;
};

struct DoctorReport {
  std::string domain;
  std::optional<IpAddress> ip;
  std::vector<DoctorCheck> checks;

  int count(CheckResult result) const;
  bool any_failed() const { return count(CheckResult::kFail) > 0; }
  // {"domain":..., "ip":..., "checks":[{"check","result","detail","target"}...],
  //  "summary":{"pass":N,"warn":N,"fail":N}}
  nlohmann::json to_json() const;
  // The aligned CHECK / RESULT / DETAIL table with a summary line.
  std::string to_table() const;
};

// Runs every check of `request` with `dns`.
DoctorReport run_doctor(sender::BlockingDnsResolver& dns, const DoctorRequest& request);

// `text` as a DNS domain name to check: lower-cased, trailing dot removed;
// nullopt unless it is two or more letter-digit-hyphen labels of 1-63
// characters, 253 in all (IDNs must be given as A-labels, xn--...).
std::optional<std::string> normalize_domain(std::string_view text);

// A DKIM selector: one or more labels of letters, digits, '-' and '_'.
bool valid_selector(std::string_view text);

}  // namespace mailer::app
