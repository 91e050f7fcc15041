// SPF (RFC 7208) evaluation: check_host() for one client IP and domain, the
// way a receiving server would run it, so `mailer doctor --ip` can say
// whether the domain's record authorises the sending IP. Covers every
// mechanism (all, include, a, mx, ptr, ip4, ip6, exists) with qualifiers and
// dual CIDR lengths, the redirect= modifier, macros in domain-specs, the
// limit of 10 DNS-querying terms and of 2 void lookups, and the results
// none / neutral / pass / fail / softfail / temperror / permerror.
//
// DNS comes through a callback so that tests can hand in a fixed table.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "app/doctor/dns_address.h"
#include "sender/dns_resolver.h"

namespace mailer::app {

// The doctor asks DNS through the sender's resolver and speaks in its types.
using sender::DnsAnswer;
using sender::DnsQuestion;
using sender::DnsStatus;
using sender::DnsType;
using sender::MxRecord;

enum class SpfResult { kNone, kNeutral, kPass, kFail, kSoftFail, kTempError, kPermError };
// RFC 7208 spelling: "none", "neutral", "pass", "fail", "softfail", ...
std::string_view to_string(SpfResult result);

// RFC 7208 4.6.4: at most 10 terms that query DNS (include, a, mx, ptr,
// exists, redirect) per evaluation, including nested includes...
inline constexpr int kSpfMaxDnsLookups = 10;
// ...at most 2 of their lookups answered with no records ("void")...
inline constexpr int kSpfMaxVoidLookups = 2;
// ...and at most 10 names looked up for one mx or ptr term.
inline constexpr int kSpfMaxNamesPerTerm = 10;

struct SpfEvaluation {
  SpfResult result = SpfResult::kNone;
  // The term that decided (e.g. "ip4:192.0.2.0/24", "~all", "include:x");
  // empty when none matched (default neutral) or on an error.
  std::string matched;
  // For none, temperror and permerror: why, naming the domain.
  std::string reason;
  // The top-level domain's record, when there was exactly one.
  std::string record;
  // DNS-querying terms used (compare with kSpfMaxDnsLookups).
  int dns_lookups = 0;
};

// Answers one DNS question; the evaluator never asks for other types than
// TXT, A, AAAA, MX and PTR.
using SpfLookup = std::function<DnsAnswer(const std::string& name, DnsType type)>;

// The records among `txt` that are SPF version 1 ("v=spf1" alone or
// followed by a space, case-insensitive).
std::vector<std::string> spf_records(const std::vector<std::string>& txt);

// check_host(ip, domain, sender) of RFC 7208 section 4. `sender` is the
// MAIL FROM address used for macros (%{s}, %{l}, %{o}); when empty,
// "postmaster@domain" (RFC 7208 4.3).
SpfEvaluation check_spf(const SpfLookup& dns, const IpAddress& ip, const std::string& domain,
                        const std::string& sender = "");

}  // namespace mailer::app
