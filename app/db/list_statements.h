// The SQL of the lists (recipient lists, suppressions, imports), in one
// place: prepared statements registered
// on the database (re-prepared on reconnect), and the statements on the
// per-session TEMP staging tables of an import, which cannot be prepared at
// connect time because those tables exist only inside an import's session.
// User data only ever travels as parameters or through COPY.
#pragma once

namespace mailer::db {

class Database;

// Registers every prepared statement below on `db` (idempotent).
void prepare_list_statements(Database& db);

namespace sql {

// Prepared statement names.
inline constexpr const char* kCreateList = "lists_create";
inline constexpr const char* kFindList = "lists_find";
inline constexpr const char* kAllLists = "lists_all";
inline constexpr const char* kAddSuppression = "lists_suppression_add";
inline constexpr const char* kFindSuppression = "lists_suppression_find";
inline constexpr const char* kRemoveSuppression = "lists_suppression_remove";
inline constexpr const char* kFindRunningImport = "lists_import_find_running";
inline constexpr const char* kStartImport = "lists_import_start";
inline constexpr const char* kImportProgress = "lists_import_progress";
inline constexpr const char* kFinishImport = "lists_import_finish";
inline constexpr const char* kLockImport = "lists_import_lock";
inline constexpr const char* kUnlockImport = "lists_import_unlock";
inline constexpr const char* kChunkTurn = "lists_import_chunk_turn";
inline constexpr const char* kCachedDomains = "lists_domains_cached";
inline constexpr const char* kStoreDomainAnswer = "lists_domain_store";
// $1 how many; one row (first id, last id, count)
inline constexpr const char* kNextRecipientIds = "lists_next_recipient_ids";
// $1 how many; rows (first id, last id)
inline constexpr const char* kNextRecipientIdRuns = "lists_next_recipient_id_runs";

// Import staging (TEMP tables, run with exec_params).
extern const char* const kCreateStaging;
extern const char* const kMergeChunk;  // $1 list id, $2 import id, $3 rows wanted
extern const char* const kKnownKeys;   // $1 email keys (text array)
// $1 first ids, $2 last ids (bigint arrays), $3 chunk rows; rows (id, reason)
extern const char* const kSuppressedNewRecipients;
extern const char* const kDropNewRecipients;  // $1 ids (bigint array)
// $1 list id, $2 first ids, $3 last ids, $4 ids left out (bigint arrays)
extern const char* const kAddNewMembers;
extern const char* const kInsertDomains;  // $1 domains, $2 providers (text arrays)
extern const char* const kCreateSuppressionStaging;
extern const char* const kMergeSuppressionStaging;

// Tables and columns COPY writes into.
inline constexpr const char* kStageTable = "import_stage";
inline constexpr const char* kSuppressionStageTable = "suppression_stage";

}  // namespace sql
}  // namespace mailer::db
