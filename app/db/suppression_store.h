// SuppressionStore: addresses that must never be sent to again (unsubscribed,
// hard-bounced, complained, suppressed by hand). Keyed by the address's
// comparison key, so a suppression matches every spelling of the address.
// The first suppression of an address is kept: adding again reports the
// existing entry and changes nothing. Imports consult this table, so a
// suppression wins over any later import.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "app/db/database.h"
#include "lists/csv_reader.h"
#include "lists/email_address.h"

namespace mailer::db {

enum class SuppressionReason { kUnsubscribe, kHardBounce, kComplaint, kManual };

// "unsubscribe", "hard_bounce", "complaint", "manual".
std::string_view to_string(SuppressionReason reason);
std::optional<SuppressionReason> suppression_reason_from_string(std::string_view text);

struct Suppression {
  std::string email_key;
  std::string reason;
  std::string source;
  std::optional<std::int64_t> campaign_id;
  std::string detail;
  std::string created_at;
};

// Outcome of importing a file of suppressions.
struct SuppressionImportResult {
  std::uint64_t rows = 0;
  std::uint64_t added = 0;
  // Already suppressed, or repeated in the file.
  std::uint64_t already = 0;
  std::uint64_t rejected = 0;
};

// A problem with the file as a whole (unreadable, no email column): nothing
// was changed.
class SuppressionFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class SuppressionStore {
 public:
  explicit SuppressionStore(Database& db);

  // Adds a suppression; returns false (and changes nothing) when the address
  // is already suppressed.
  bool add(const lists::EmailAddress& address, SuppressionReason reason, std::string_view source,
           std::string_view detail = {});
  std::optional<Suppression> find(const lists::EmailAddress& address);
  // Returns false when the address was not suppressed.
  bool remove(const lists::EmailAddress& address);
  // Calls fn for every suppression, oldest first, streaming (constant memory).
  void for_each(const std::function<void(const Suppression&)>& fn);

  // Imports a CSV file with an `email` column and optional `reason` and
  // `detail` columns (reason defaults to `default_reason`). Bad rows are
  // passed to on_reject(line, why) and skipped. Throws SuppressionFileError
  // for file-level problems before changing anything.
  SuppressionImportResult import_file(
      const std::string& path, SuppressionReason default_reason, std::string_view source,
      const lists::CsvOptions& csv,
      const std::function<void(std::uint64_t line, const std::string& why)>& on_reject);

 private:
  Database& db_;
};

}  // namespace mailer::db
