#include "lists/mx_checker.h"

#include <algorithm>

namespace mailer::lists {

std::string_view to_string(MxStatus status) {
  switch (status) {
    case MxStatus::kOk:
      return "ok";
    case MxStatus::kAFallback:
      return "a_fallback";
    case MxStatus::kNullMx:
      return "null_mx";
    case MxStatus::kNxDomain:
      return "nxdomain";
    case MxStatus::kNoAddress:
      return "no_address";
    case MxStatus::kError:
      return "error";
  }
  return "error";
}

MxStatus mx_status_from_string(std::string_view text) {
  for (MxStatus s : {MxStatus::kOk, MxStatus::kAFallback, MxStatus::kNullMx, MxStatus::kNxDomain,
                     MxStatus::kNoAddress}) {
    if (to_string(s) == text) return s;
  }
  return MxStatus::kError;
}

MxChecker::MxChecker(MxLookup& lookup, MxCheckerOptions options)
    : lookup_(lookup), options_(options) {}

std::map<std::string, MxAnswer> MxChecker::check(const std::vector<std::string>& domains) {
  std::map<std::string, MxAnswer> results;
  std::size_t next = 0;
  std::size_t in_flight = 0;
  const std::size_t limit = std::max<std::size_t>(1, options_.concurrency);
  while (next < domains.size() || in_flight > 0) {
    while (next < domains.size() && in_flight < limit) {
      const std::string& domain = domains[next++];
      ++in_flight;
      lookup_.start(domain, [&results, &in_flight, domain](const MxAnswer& a) {
        results[domain] = a;
        --in_flight;
      });
    }
    if (in_flight > 0) lookup_.wait();
  }
  return results;
}

}  // namespace mailer::lists
