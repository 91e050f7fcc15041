// MxChecker: can a domain receive mail? Looks up many domains at once
// through an MxLookup (lists/mx_lookup.h), with a bound on lookups in
// flight, and returns each domain's answer in the states of the `domains`
// table. What the import does with them (reject as no_mx, keep as
// mx_unverified, cache) is the importer's policy (lists/list_importer.h).
//
// Threading: one MxChecker belongs to one thread; check() blocks that thread.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "lists/mx_lookup.h"

namespace mailer::lists {

struct MxCheckerOptions {
  // Lookups in flight at once. Enough to hide DNS latency on a million-row
  // import without flooding a resolver.
  std::size_t concurrency = 64;
};

class MxChecker {
 public:
  // `lookup` must outlive the checker.
  explicit MxChecker(MxLookup& lookup, MxCheckerOptions options = {});

  // Looks up every domain (lower-case A-labels) and returns one answer per
  // domain. Blocks until all are answered or timed out.
  std::map<std::string, MxAnswer> check(const std::vector<std::string>& domains);

 private:
  MxLookup& lookup_;
  MxCheckerOptions options_;
};

}  // namespace mailer::lists
