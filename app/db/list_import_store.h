// ListImportStore: the PostgreSQL side of a list import, behind the
// interface lists/ declares for it (lists/import_store.h): the `imports`
// record and its session lock, the `domains` MX cache, and the write of a
// chunk: new addresses COPYed straight into recipients (ids drawn from the
// sequence in ranges) and list_members, suppressed ones taken back, known
// ones staged and merged with set-based SQL, the progress committed in the
// same transaction, chunks of concurrent imports committed one at a time,
// and the chunk run again when another writer adds the same addresses at the
// same time.
//
// One ListImportStore uses one Database, so it belongs to one thread at a
// time; an import calls it from its caller's thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "app/db/database.h"
#include "lists/import_store.h"

namespace mailer::db {

class ListImportStore : public lists::ImportStore {
 public:
  // Registers the lists' prepared statements on `db`.
  explicit ListImportStore(Database& db);

  std::optional<std::int64_t> find_list(const std::string& name) override;
  std::optional<lists::ImportRecord> find_running(std::int64_t list_id,
                                                  const std::string& identity) override;
  lists::ImportRecord start(std::int64_t list_id, const std::string& file,
                            const std::string& identity, std::uint64_t offset,
                            std::uint64_t line) override;
  bool lock(std::int64_t import_id) override;
  void finish(std::int64_t import_id, const std::string& counts_json) override;
  std::vector<lists::CachedDomain> cached_domains(const std::vector<std::string>& domains) override;
  void store_domains(const std::vector<lists::DomainAnswer>& answers) override;
  lists::ChunkOutcome write_chunk(
      const lists::ImportRecord& import, const lists::ChunkToWrite& chunk,
      const std::function<lists::ChunkProgress(const lists::ChunkOutcome&)>& before_commit)
      override;

 private:
  lists::ChunkOutcome merge(
      pqxx::work& w, const lists::ImportRecord& import, const lists::ChunkToWrite& chunk,
      const std::function<lists::ChunkProgress(const lists::ChunkOutcome&)>& before_commit);
  lists::ChunkOutcome write_rows(pqxx::work& w, const lists::ImportRecord& import,
                                 const lists::ChunkToWrite& chunk,
                                 const std::unordered_set<std::string>& known);
  void merge_known(pqxx::transaction_base& w, const lists::ImportRecord& import, bool want_rows,
                   const std::vector<const lists::StagedRow*>& rows, lists::ChunkOutcome& out);
  void insert_new(pqxx::transaction_base& w, const lists::ImportRecord& import, bool want_rows,
                  const std::vector<const lists::StagedRow*>& rows, lists::ChunkOutcome& out);

  Database& db_;
  // The last chunk held addresses the database knew: look the next one's up
  // before writing instead of trying a plain COPY first. Reset when an
  // import starts or resumes.
  bool expect_known_ = false;
};

}  // namespace mailer::db
