#include "app/db/list_import_store.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <stdexcept>
#include <utility>

#include "app/db/copy_stream.h"
#include "app/db/delivery_queue.h"
#include "app/db/list_statements.h"
#include "app/db/list_store.h"

namespace mailer::db {

using lists::ChunkOutcome;
using lists::ChunkToWrite;
using lists::ImportRecord;
using lists::StagedRow;

namespace {

// The chunk's plain COPY of new addresses met one the database has: its
// transaction is rolled back and the chunk runs again with a lookup.
struct KnownAddressesInChunk : std::exception {
  const char* what() const noexcept override { return "address already known"; }
};

// Attempts of a chunk whose addresses another writer adds at the same time
// (a unique violation rolls the chunk back; the next attempt's snapshot sees
// the other writer's rows). Chunks of imports take turns (sql::kChunkTurn),
// so this is for writers that do not.
constexpr int kConcurrentRetries = 5;

// A failure caused by another writer adding the same addresses at the same
// time (the chunk is run again).
bool is_concurrent_conflict(const pqxx::sql_error& e) {
  return dynamic_cast<const pqxx::unique_violation*>(&e) != nullptr ||
         dynamic_cast<const pqxx::deadlock_detected*>(&e) != nullptr;
}

// The keys of `key_array` that `statement` finds (known or suppressed).
std::unordered_set<std::string> keys_found(pqxx::work& w, const char* statement,
                                           const std::string& key_array) {
  std::unordered_set<std::string> found;
  for (const auto& row : w.exec_params(statement, key_array)) {
    found.insert(row[0].as<std::string>());
  }
  return found;
}

}  // namespace

ListImportStore::ListImportStore(Database& db) : db_(db) {
  prepare_list_statements(db_);
}

std::optional<std::int64_t> ListImportStore::find_list(const std::string& name) {
  auto list = ListStore(db_).find(name);
  if (!list) return std::nullopt;
  return list->id;
}

std::optional<ImportRecord> ListImportStore::find_running(std::int64_t list_id,
                                                          const std::string& identity) {
  expect_known_ = false;
  auto running = db_.transact(
      [&](pqxx::work& w) { return w.exec_prepared(sql::kFindRunningImport, list_id, identity); });
  if (running.empty()) return std::nullopt;
  ImportRecord r;
  r.import_id = running[0][0].as<std::int64_t>();
  r.list_id = list_id;
  r.offset = running[0][1].as<std::uint64_t>();
  r.line = running[0][2].as<std::uint64_t>();
  r.counts_json = running[0][3].as<std::string>();
  if (!running[0][4].is_null()) r.rejects_bytes = running[0][4].as<std::uint64_t>();
  return r;
}

ImportRecord ListImportStore::start(std::int64_t list_id, const std::string& file,
                                    const std::string& identity, std::uint64_t offset,
                                    std::uint64_t line) {
  expect_known_ = false;
  auto row = db_.transact([&](pqxx::work& w) {
    return w.exec_prepared(sql::kStartImport, list_id, file, identity, offset, line);
  });
  ImportRecord r;
  r.import_id = row[0][0].as<std::int64_t>();
  r.list_id = list_id;
  r.file = file;
  r.offset = offset;
  r.line = line;
  return r;
}

bool ListImportStore::lock(std::int64_t import_id) {
  return db_.transact(
      [&](pqxx::work& w) { return w.exec_prepared(sql::kLockImport, import_id)[0][0].as<bool>(); });
}

void ListImportStore::finish(std::int64_t import_id, const std::string& counts_json) {
  db_.transact([&](pqxx::work& w) {
    w.exec_prepared(sql::kFinishImport, import_id, counts_json);
    w.exec_prepared(sql::kUnlockImport, import_id);
  });
}

std::vector<lists::CachedDomain> ListImportStore::cached_domains(
    const std::vector<std::string>& domains) {
  std::string joined = fmt::format("{}", fmt::join(domains, " "));
  auto cached =
      db_.transact([&](pqxx::work& w) { return w.exec_prepared(sql::kCachedDomains, joined); });
  std::vector<lists::CachedDomain> out;
  out.reserve(cached.size());
  for (const auto& row : cached) {
    out.push_back({row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<std::string>()});
  }
  return out;
}

void ListImportStore::store_domains(const std::vector<lists::DomainAnswer>& answers) {
  db_.transact([&](pqxx::work& w) {
    for (const auto& a : answers) {
      w.exec_prepared(sql::kStoreDomainAnswer, a.domain, a.provider, a.hosts, a.status,
                      a.ttl_seconds);
    }
  });
}

ChunkOutcome ListImportStore::write_chunk(
    const ImportRecord& import, const ChunkToWrite& chunk,
    const std::function<lists::ChunkProgress(const ChunkOutcome&)>& before_commit) {
  ChunkOutcome outcome;
  for (int attempt = 1;; ++attempt) {
    try {
      outcome = db_.transact([&](pqxx::work& w) { return merge(w, import, chunk, before_commit); });
      break;
    } catch (const KnownAddressesInChunk&) {
      // Rolled back; run again, looking the addresses up first.
      expect_known_ = true;
      --attempt;
    } catch (const pqxx::sql_error& e) {
      // Another writer adding the same addresses: a unique violation, or a
      // deadlock the server broke by failing this transaction. Rolled back;
      // the next attempt's snapshot sees the other writer's rows.
      if (!is_concurrent_conflict(e)) throw;
      if (attempt == kConcurrentRetries) {
        throw std::runtime_error(fmt::format(
            "import of {}: another writer keeps adding the same addresses; run it again",
            import.file));
      }
    }
  }
  return outcome;
}

ChunkOutcome ListImportStore::merge(
    pqxx::work& w, const ImportRecord& import, const ChunkToWrite& chunk,
    const std::function<lists::ChunkProgress(const ChunkOutcome&)>& before_commit) {
  ChunkOutcome out;
  // Chunks of concurrent imports commit one at a time. Two imports adding
  // the same addresses at once otherwise went on by one rolling its chunk
  // back on the other's uncommitted keys, and its next attempt met the
  // other's next chunk (with files in different orders, every chunk holds
  // some of every other's addresses) until it gave up. Taking turns, each
  // chunk sees the rows of the other's last chunk committed and merges
  // them; reading and checking still overlap, and an import alone waits for
  // nothing.
  w.exec_prepared(sql::kChunkTurn);
  w.exec("SET LOCAL synchronous_commit = off");
  w.exec("SET LOCAL client_min_messages = warning");
  // The merge keeps the chunk's verdicts in memory rather than in a
  // temporary file.
  w.exec("SET LOCAL work_mem = '64MB'");
  // Compiling the chunk's statements costs more than it saves.
  w.exec("SET LOCAL jit = off");
  if (!chunk.rows.empty()) {
    auto t0 = std::chrono::steady_clock::now();
    // Addresses the database knows (a recipient or a suppression) need the
    // merge statement; the others are new, and the first row of each is
    // COPYed straight into recipients and list_members.
    if (!expect_known_) {
      // Most chunks of a new list hold only new addresses: COPY them
      // without looking each one up first. The unique key index still
      // checks every address; one that exists fails the COPY and with it
      // the chunk's transaction (nothing else is written before it), and
      // the chunk is run again with the lookup. Not a savepoint: a COPY
      // inside one took half as long again. Suppressed addresses are
      // found among the added rows and taken back.
      try {
        out = write_rows(w, import, chunk, {});
      } catch (const pqxx::unique_violation&) {
        throw KnownAddressesInChunk();
      }
    } else {
      std::vector<std::optional<std::string>> keys;
      for (const auto& r : chunk.rows) {
        if (r.first) keys.emplace_back(std::string(r.key));
      }
      const auto known = keys_found(w, sql::kKnownKeys, pg_text_array(keys));
      out = write_rows(w, import, chunk, known);
      expect_known_ = !known.empty();
    }
    if (!chunk.new_domains.empty()) {
      w.exec_params(sql::kInsertDomains, pg_text_array(chunk.new_domains),
                    pg_text_array(chunk.new_providers));
    }
    spdlog::debug(
        "import: {} rows written in {} ms", chunk.rows.size(),
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count());
  }
  const lists::ChunkProgress progress = before_commit(out);
  w.exec_prepared(sql::kImportProgress, import.import_id, chunk.end_offset, chunk.end_line,
                  progress.counts_json,
                  progress.rejects_bytes ? static_cast<std::int64_t>(*progress.rejects_bytes)
                                         : std::int64_t{-1});
  return out;
}

// Writes the chunk: rows whose key is in `known` through the merge
// statement, the others as new.
ChunkOutcome ListImportStore::write_rows(pqxx::work& w, const ImportRecord& import,
                                         const ChunkToWrite& chunk,
                                         const std::unordered_set<std::string>& known) {
  std::vector<const StagedRow*> fresh, merged;
  for (const auto& r : chunk.rows) (known.count(std::string(r.key)) ? merged : fresh).push_back(&r);
  ChunkOutcome out;
  if (!fresh.empty()) insert_new(w, import, chunk.want_rows, fresh, out);
  if (!merged.empty()) merge_known(w, import, chunk.want_rows, merged, out);
  return out;
}

// Rows whose address the database knows: staged, then one merge statement.
void ListImportStore::merge_known(pqxx::transaction_base& w, const ImportRecord& import,
                                  bool want_rows, const std::vector<const StagedRow*>& rows,
                                  ChunkOutcome& out) {
  w.exec(sql::kCreateStaging);
  CopyStream copy(w, sql::kStageTable,
                  {"line", "email", "email_key", "domain", "attributes", "first"});
  for (const StagedRow* r : rows) {
    copy.field(r->line).field(r->email).field(r->key).field(r->domain).field(r->attributes);
    copy.field(r->first).end_row();
  }
  copy.complete();
  for (const auto& row :
       w.exec_params(sql::kMergeChunk, import.list_id, import.import_id, want_rows)) {
    const std::string kind = row[0].as<std::string>();
    if (kind == "count") {
      out.statuses[row[1].as<std::string>()] += row[2].as<std::uint64_t>();
    } else {
      out.not_added.push_back({row[2].as<std::uint64_t>(), row[1].as<std::string>(),
                               row[3].is_null() ? "" : row[3].as<std::string>(),
                               row[4].as<std::string>()});
    }
  }
}

// Rows whose address is new to the database: the first of each becomes a
// recipient (ids drawn from the sequence, by COPY) and a member (made by
// the server from the id ranges); repeats are duplicates, suppressed
// addresses are taken back. An address another writer adds at the same
// time fails the COPY with a unique violation and the chunk runs again
// (another import's chunks wait for their turn, see merge).
void ListImportStore::insert_new(pqxx::transaction_base& w, const ImportRecord& import,
                                 bool want_rows, const std::vector<const StagedRow*>& rows,
                                 ChunkOutcome& out) {
  std::vector<const StagedRow*> firsts;
  for (const StagedRow* r : rows) {
    if (r->first) {
      firsts.push_back(r);
      continue;
    }
    ++out.statuses["duplicate"];
    if (want_rows) {
      out.not_added.push_back({static_cast<std::uint64_t>(r->line), "duplicate", "repeated in file",
                               std::string(r->email)});
    }
  }
  if (firsts.empty()) return;
  // Key order: two imports adding the same addresses take their index
  // locks in one order (no deadlock between them), and the key index is
  // filled from left to right.
  // The reader hands chunks over in that order already (sorted there, off
  // the path the database waits on); rows the MX check kept stay in it.
  const auto by_key = [](const StagedRow* a, const StagedRow* b) { return a->key < b->key; };
  if (!std::is_sorted(firsts.begin(), firsts.end(), by_key)) {
    std::sort(firsts.begin(), firsts.end(), by_key);
  }
  std::vector<std::int64_t> lo, hi, ids;
  ids.reserve(firsts.size());
  const auto wanted = static_cast<std::int64_t>(firsts.size());
  const auto drawn = w.exec_prepared(sql::kNextRecipientIds, wanted);
  if (drawn[0][1].as<std::int64_t>() - drawn[0][0].as<std::int64_t>() + 1 == wanted) {
    lo.push_back(drawn[0][0].as<std::int64_t>());
    hi.push_back(drawn[0][1].as<std::int64_t>());
  } else {
    // Interleaved with another session's ids: those drawn are left unused.
    for (const auto& row : w.exec_prepared(sql::kNextRecipientIdRuns, wanted)) {
      lo.push_back(row[0].as<std::int64_t>());
      hi.push_back(row[1].as<std::int64_t>());
    }
  }
  for (std::size_t r = 0; r < lo.size(); ++r) {
    for (std::int64_t id = lo[r]; id <= hi[r]; ++id) ids.push_back(id);
  }
  if (ids.size() != firsts.size()) {
    throw std::runtime_error(
        fmt::format("import: asked the sequence for {} ids, got {}", firsts.size(), ids.size()));
  }
  {
    CopyStream copy(w, "recipients", {"email", "email_key", "domain", "attributes", "id"});
    for (std::size_t i = 0; i < firsts.size(); ++i) {
      copy.encoded(firsts[i]->copy_fields).field(ids[i]).end_row();
    }
    copy.complete();
  }
  const std::string lo_array = pg_int_array(lo), hi_array = pg_int_array(hi);
  // Suppressed addresses were added with the others (no lookup before the
  // COPY): take them back, and keep them out of the list.
  std::vector<std::int64_t> dropped;
  for (const auto& row : w.exec_params(sql::kSuppressedNewRecipients, lo_array, hi_array,
                                       static_cast<std::int64_t>(firsts.size()))) {
    const auto id = row[0].as<std::int64_t>();
    const auto at = std::lower_bound(ids.begin(), ids.end(), id);
    if (at == ids.end() || *at != id) continue;
    const StagedRow* r = firsts[static_cast<std::size_t>(at - ids.begin())];
    dropped.push_back(id);
    ++out.statuses["suppressed"];
    if (want_rows) {
      out.not_added.push_back({static_cast<std::uint64_t>(r->line), "suppressed",
                               "suppressed: " + row[1].as<std::string>(), std::string(r->email)});
    }
  }
  const std::string dropped_array = pg_int_array(dropped);
  if (!dropped.empty()) w.exec_params(sql::kDropNewRecipients, dropped_array);
  w.exec_params(sql::kAddNewMembers, import.list_id, lo_array, hi_array, dropped_array,
                import.import_id);
  out.statuses["new"] += firsts.size() - dropped.size();
}

}  // namespace mailer::db
