// ImportStore: what the list import (lists/list_importer.h) needs from the
// database, and nothing more: the list it imports into, its record in the
// `imports` table (start, resume, a lock against a second process, finish),
// the cached MX answers of domains, and the write of one chunk of checked
// rows together with the import's progress, in one transaction.
//
// Why an interface declared here: lists/ sits below app/ and never includes
// an app/ header. The import pipeline (reading, hygiene, chunking, rejects)
// is lists/'s job; all SQL and COPY live in app/db, which knows the schema,
// so app/db implements this (db::ListImportStore) and the import command
// wires the two.
//
// Threading: the importer calls it from its caller's thread only (never from
// its reader thread). Failures of the database surface as the implementation's
// exceptions; the importer lets them through (committed chunks stay, running
// the import again resumes).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailer::lists {

// A row past the checks, to be written; its text lives in its chunk (views
// stay valid for the chunk's lifetime).
struct StagedRow {
  std::int64_t line;
  std::string_view email;
  std::string_view key;
  std::string_view domain;
  std::string_view attributes;
  // First row of its address in the chunk (later ones are duplicates).
  bool first = true;
  // email, key, domain and attributes encoded for COPY into recipients
  // (lists/copy_text.h), by the reader thread (first rows only).
  std::string_view copy_fields;
};

// A row that was not added, for the rejects file: line, reason, detail and
// the address as written in the file.
struct RejectedRow {
  std::uint64_t line;
  std::string reason;
  std::string detail;
  std::string email;
};

// One import of one file into one list, as recorded in the store.
struct ImportRecord {
  // Rows the import writes carry it: a repeat of an address this import
  // wrote (an earlier chunk, before an interruption too) is a duplicate,
  // while rows another import wrote meanwhile are merged like any others.
  std::int64_t import_id = 0;
  std::int64_t list_id = 0;
  // The file, for messages.
  std::string file;
  // Where the file continues: byte offset and line of the first row not
  // committed yet.
  std::uint64_t offset = 0;
  std::uint64_t line = 1;
  // The counts committed so far (ImportCounts::to_json text); on a resume.
  std::string counts_json;
  // The rejects file's length after the committed chunks' rows, when the
  // import writes one; on a resume.
  std::optional<std::uint64_t> rejects_bytes;
};

// A cached MX answer of a domain: status (lists/mx_checker.h names) and its
// hosts, space-separated, best first.
struct CachedDomain {
  std::string domain;
  std::string status;
  std::string hosts;
};

// An MX answer to cache, with the provider key of its domain.
struct DomainAnswer {
  std::string domain;
  std::string provider;
  // Hosts, space-separated, best first.
  std::string hosts;
  std::string status;
  // How long the answer stays cached, in seconds (0: expires at once).
  long long ttl_seconds = 0;
};

// One chunk to write, and the progress to commit with it.
struct ChunkToWrite {
  // In key order (the order new rows are COPYed in, so that concurrent
  // imports take their index locks in one order).
  const std::vector<StagedRow>& rows;
  // Domains not written by this import yet, with their providers (same
  // length; written as `domains` rows that do not exist yet).
  const std::vector<std::optional<std::string>>& new_domains;
  const std::vector<std::optional<std::string>>& new_providers;
  // Whether rows not added are wanted one by one (a rejects file), or only
  // counted.
  bool want_rows = false;
  // Where the file continues after this chunk.
  std::uint64_t end_offset = 0;
  std::uint64_t end_line = 0;
};

// The progress committed with a chunk, beside its rows.
struct ChunkProgress {
  // The import's counts once the chunk is in (ImportCounts::to_json text).
  std::string counts_json;
  // The rejects file's length once the chunk's rejects are written; nullopt
  // without a rejects file.
  std::optional<std::uint64_t> rejects_bytes;
};

// What became of a chunk's rows.
struct ChunkOutcome {
  // Status -> rows: "new", "join", "update", "duplicate", "suppressed".
  std::map<std::string, std::uint64_t> statuses;
  // Rows not added (duplicates, suppressed), when want_rows.
  std::vector<RejectedRow> not_added;
};

class ImportStore {
 public:
  virtual ~ImportStore() = default;

  // The id of the list named `name`; nullopt when there is none.
  virtual std::optional<std::int64_t> find_list(const std::string& name) = 0;

  // The unfinished import of the file with this identity into the list, to
  // resume; nullopt when there is none. `file` is left empty.
  virtual std::optional<ImportRecord> find_running(std::int64_t list_id,
                                                   const std::string& identity) = 0;

  // Records a new import of `file` starting at `offset` / `line`.
  virtual ImportRecord start(std::int64_t list_id, const std::string& file,
                             const std::string& identity, std::uint64_t offset,
                             std::uint64_t line) = 0;

  // Takes the import's lock for this process; false when another process
  // holds it (the import must not run).
  virtual bool lock(std::int64_t import_id) = 0;

  // Records the import's final counts (ImportCounts::to_json text) and
  // releases the lock.
  virtual void finish(std::int64_t import_id, const std::string& counts_json) = 0;

  // The unexpired cached MX answers among `domains`.
  virtual std::vector<CachedDomain> cached_domains(const std::vector<std::string>& domains) = 0;

  // Caches MX answers (one transaction).
  virtual void store_domains(const std::vector<DomainAnswer>& answers) = 0;

  // Writes a chunk: the first row of each address new to the store becomes
  // a recipient and a member, unless the address is suppressed; rows of
  // known addresses are merged (join, update, duplicate, suppressed); the
  // chunk's domains are recorded. In the same transaction, the import's
  // progress is committed: end_offset, end_line and the progress that
  // `before_commit(outcome)` returns.
  // before_commit runs once the rows are written and before the commit, so
  // what it does beside (the importer writes the chunk's rejects there) is
  // done before the chunk commits; an exception from it rolls the chunk back
  // and comes through. It may run more than once for one chunk (a chunk that
  // meets another writer adding the same addresses at the same time, or a
  // lost connection, is run again): each run stands for all before it.
  // Either all of it commits or nothing does. Returns the outcome of the
  // committed write.
  virtual ChunkOutcome write_chunk(
      const ImportRecord& import, const ChunkToWrite& chunk,
      const std::function<ChunkProgress(const ChunkOutcome&)>& before_commit) = 0;
};

}  // namespace mailer::lists
