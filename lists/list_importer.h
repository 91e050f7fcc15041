// ListImporter: the list-hygiene import of one CSV file into one list.
//
// Pipeline, one chunk of rows at a time (memory depends on the chunk size,
// not on the file); steps 1-2 run on a reader thread while the chunk before
// goes through steps 3-4 on the caller's, so parsing and the database's work
// overlap (at most three chunks in memory):
//   1. CsvReader streams records; bad records (field count, quoting, NUL,
//      invalid UTF-8, over-long fields) are rejected as "malformed".
//   2. The `email` column is parsed into an EmailAddress ("syntax"), then
//      HygieneRules apply ("role", "disposable", "typo"); with MX checking,
//      domains that cannot receive mail are rejected ("no_mx").
//   3. Through ImportStore (lists/import_store.h; app/db holds the SQL):
//      the first row of each address new to the database is COPYed straight
//      into recipients and list_members (a chunk of a new list is tried
//      without looking its addresses up; the unique key index refuses a known
//      one and the chunk is redone with a lookup). Rows of known addresses
//      are COPYed into a TEMP staging table and merged with set-based SQL:
//      suppressed addresses are never added, repeated addresses are
//      duplicates (first row of the file wins), members with changed
//      attributes are updated (newer attributes merged over stored ones),
//      known recipients join the list. Every domain gets a `domains` row with
//      its provider.
//   4. The chunk's merge and the import's progress (next byte offset and
//      running counts, table `imports`) commit in one transaction, after
//      the chunk's rejected rows are written to the rejects file (a chunk
//      whose rejects cannot be written does not commit). An interrupted
//      import leaves only whole chunks behind, and running it again on the
//      same file resumes at the first uncommitted row.
// Every other column becomes a recipient attribute (JSON string values;
// empty values are left out so a sparse export never blanks stored data;
// columns with an empty header name are ignored).
//
// Counts: rows = imported + updated + duplicates + suppressed + all rejected.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "lists/csv_reader.h"
#include "lists/hygiene.h"
#include "lists/import_store.h"
#include "lists/mx_checker.h"
#include "throttle/provider_classifier.h"

namespace mailer::lists {

// The rejection reasons always present in a summary.
inline constexpr const char* kRejectReasons[] = {"syntax", "role",  "disposable",
                                                 "typo",   "no_mx", "malformed"};

struct ImportCounts {
  std::uint64_t rows = 0;
  std::uint64_t imported = 0;
  std::uint64_t updated = 0;
  std::uint64_t duplicates = 0;
  std::uint64_t suppressed = 0;
  // Reason -> rows; every key of kRejectReasons is present.
  std::map<std::string, std::uint64_t> rejected;
  // Rows kept although their domain's MX lookup failed temporarily.
  std::uint64_t mx_unverified = 0;

  ImportCounts();
  std::uint64_t rejected_total() const;
  // The `import --json` shape of CLI.md, plus "mx_unverified".
  nlohmann::json to_json() const;
  static ImportCounts from_json(const nlohmann::json& j);
};

struct ImportOptions {
  std::string list_name;
  std::string file;
  // Where to write rejected rows as CSV (line,reason,detail,email); empty:
  // nowhere. On resume the file is appended to; a chunk's rows are in it
  // before the chunk commits.
  std::string rejects_file;
  CsvOptions csv;
  bool mx_check = false;
  // Where MX checks ask DNS; required when mx_check is set, not owned, must
  // outlive run().
  MxLookup* mx_lookup = nullptr;
  MxCheckerOptions mx;
  // Shortest time an MX answer stays cached in `domains`, whatever its DNS
  // TTL (many zones publish TTLs of minutes; imports run for longer).
  std::chrono::seconds mx_cache_ttl_floor{std::chrono::hours(1)};
  // Rows per committed chunk: each commit is a resume point; larger chunks
  // cost memory (about 600 bytes a row, up to three chunks at once: one
  // read, one waiting, one written) and longer transactions.
  std::size_t chunk_rows = 25'000;
};

struct ImportProgress {
  std::uint64_t rows = 0;
  std::uint64_t bytes = 0;
  std::uint64_t total_bytes = 0;
  bool resumed = false;
};

// A problem with the input as a whole (unreadable file, not CSV, no email
// column, unknown list, unwritable rejects file). Raised before anything is
// changed; what() names the file.
class ImportInputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ListImporter {
 public:
  // Writes through `store` (db::ListImportStore in app/db), which must
  // outlive the importer.
  ListImporter(ImportStore& store, const HygieneRules& rules,
               const throttle::ProviderClassifier& classifier, ImportOptions options);

  // Runs the import to the end. `progress` is called on the calling thread
  // after every committed chunk (an exception from it stops the import after
  // that chunk). Throws ImportInputError for
  // input problems (nothing changed), the store's errors when the database
  // fails (committed chunks stay; running again resumes).
  ImportCounts run(const std::function<void(const ImportProgress&)>& progress = {});

 private:
  ImportStore& store_;
  const HygieneRules& rules_;
  const throttle::ProviderClassifier& classifier_;
  ImportOptions options_;
};

}  // namespace mailer::lists
