// List-hygiene rules applied to every parsed address before it may join a
// list: role accounts, disposable domains and misspelt domains. Each rule is
// a table loaded from a text file (built-in copies are embedded from
// lists/data/ at build time; configuration may point at other files).
// Checks are pure lookups; a HygieneRules object is immutable after
// construction and may be shared between threads.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "lists/email_address.h"

namespace mailer::lists {

// Why an address is rejected by a hygiene rule.
struct HygieneVerdict {
  // "role", "disposable" or "typo": the key counted in import summaries.
  std::string reason;
  // For people: the suggested correction for "typo", the matched list entry
  // otherwise.
  std::string detail;
};

struct HygieneSources {
  // Text of each table (format: see the files under lists/data/).
  std::string role_accounts;
  std::string disposable_domains;
  std::string typo_domains;
  // Extra role local parts added to the table.
  std::vector<std::string> extra_role_accounts;
  bool reject_role_accounts = true;
  bool reject_disposable = true;
  bool reject_typos = true;
};

// The built-in tables embedded from lists/data/.
std::string_view builtin_role_accounts();
std::string_view builtin_disposable_domains();
std::string_view builtin_typo_domains();
// HygieneSources holding the built-in tables and default switches.
HygieneSources builtin_hygiene_sources();

class HygieneRules {
 public:
  // Throws std::invalid_argument naming the table and line of a malformed
  // entry (a typo line with three fields, an unparseable domain).
  explicit HygieneRules(const HygieneSources& sources);

  // The first rule `address` breaks, or nullopt when it passes all of them.
  std::optional<HygieneVerdict> check(const EmailAddress& address) const;

  bool is_role_account(std::string_view local_part) const;
  // The listed disposable domain `domain` is (or is below), if any.
  std::optional<std::string> disposable_match(std::string_view domain) const;
  // The correction of `domain` when it is a misspelt popular domain.
  std::optional<std::string> typo_correction(std::string_view domain) const;

 private:
  HygieneSources switches_;
  std::unordered_set<std::string> roles_;
  std::unordered_set<std::string> disposable_;
  std::unordered_map<std::string, std::string> typos_;
  std::unordered_set<std::string> real_domains_;
  std::vector<std::string> popular_;
};

}  // namespace mailer::lists
