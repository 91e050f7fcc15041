// The judgements of `mailer doctor`: each turns DNS answers (and, for DKIM,
// the configured key) into one pass / warn / fail line with a detail an
// operator can act on. Pure functions of their inputs; app/doctor.h asks
// DNS and calls them.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "app/config/config.h"
#include "app/doctor/dns_address.h"
#include "app/doctor/spf_evaluator.h"
#include "sender/dns_resolver.h"

namespace mailer::app {

enum class CheckResult { kPass, kWarn, kFail };
// "pass", "warn", "fail".
std::string_view to_string(CheckResult result);

struct DoctorCheck {
  // "spf", "dkim", "dmarc", "mx", "ptr", "ip_blocklist", "domain_blocklist".
  std::string check;
  CheckResult result = CheckResult::kFail;
  std::string detail;
  // The DNS name the check is about ("s1._domainkey.example.com").
  std::string target;
};

// SPF: `txt` is the TXT answer at the domain; `evaluation` the check_host()
// outcome, for the sending IP when `for_sending_ip`, else for an address
// that never sends (which still walks the whole record, so that syntax
// errors and too many lookups show). With the sending IP: pass for result
// pass, warn for softfail / neutral / temperror, fail for fail, none,
// permerror or several records. Without: pass unless the record is missing,
// duplicated or permerror.
DoctorCheck judge_spf(const std::string& domain, const DnsAnswer& txt,
                      const std::optional<SpfEvaluation>& evaluation, bool for_sending_ip);

// The public half of a configured DKIM key, as published in p=.
struct DkimPublicKey {
  std::string selector;
  std::string key_type;  // the k= value: "rsa" or "ed25519"
  std::string p;         // base64: SubjectPublicKeyInfo (RSA) or raw 32 bytes (Ed25519)
  std::string key_file;
  // Why the key could not be loaded; the rest is empty then.
  std::string error;
};

// Loads the private key of a [[dkim]] table and derives its public key.
// Never throws: a failure is in `error`.
DkimPublicKey load_dkim_public_key(const DkimSettings& settings);

// DKIM: `txt` is the TXT answer at `record_name`; `configured` the key of
// the matching [[dkim]] table, if any. Fail when the record is missing,
// v= is not DKIM1, p= is empty (revoked) or absent, the key type differs or
// p= differs from the configured key; pass otherwise.
DoctorCheck judge_dkim(const std::string& record_name, const DnsAnswer& txt,
                       const std::optional<DkimPublicKey>& configured);

// DMARC at _dmarc.<domain>: fail when missing, ambiguous or without a valid
// p=; warn for p=none; pass for quarantine and reject.
DoctorCheck judge_dmarc(const std::string& record_name, const DnsAnswer& txt);

// MX of the domain: pass with mail hosts; fail for a null MX (RFC 7505), a
// missing domain or no address either; warn for the implicit MX (A/AAAA
// fallback) and for lookup errors.
DoctorCheck judge_mx(const std::string& domain, const DnsAnswer& mx, const DnsAnswer& a,
                     const DnsAnswer& aaaa);

// PTR of the sending IP: pass when a PTR name resolves back to the IP
// (`forward[i]` is the A/AAAA answer for `ptr.records[i]`); fail with no
// PTR or none confirmed; warn on lookup errors.
DoctorCheck judge_ptr(const IpAddress& ip, const DnsAnswer& ptr,
                      const std::vector<DnsAnswer>& forward);

// One DNS blocklist: `check` is "ip_blocklist" or "domain_blocklist",
// `query` the name asked (reversed IP or domain, then the zone). Listed (an
// A record in 127.0.0.0/8 other than the 127.255.255.x error codes) fails;
// NXDOMAIN passes; errors and error codes warn.
DoctorCheck judge_blocklist(const std::string& check, const std::string& zone,
                            const std::string& query, const DnsAnswer& a);

// Tag-value list of DKIM and DMARC records ("v=DKIM1; k=rsa; p=..."):
// lower-case tag names, values with surrounding whitespace removed.
std::vector<std::pair<std::string, std::string>> parse_tag_list(std::string_view text);

}  // namespace mailer::app
