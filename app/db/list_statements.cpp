#include "app/db/list_statements.h"

#include "app/db/database.h"

namespace mailer::db {
namespace sql {

const char* const kCreateStaging = R"SQL(
CREATE TEMP TABLE IF NOT EXISTS import_stage (
  line        bigint NOT NULL,
  email       text NOT NULL,
  email_key   text COLLATE "C" NOT NULL,
  domain      text NOT NULL,
  attributes  jsonb NOT NULL,
  first       boolean NOT NULL
) ON COMMIT DELETE ROWS)SQL";

// The merge of a chunk's rows whose address the database knows (a recipient
// or a suppression; the importer COPYs new addresses itself), in one
// statement. Its 'new' branch only serves an address that stopped being
// known after the lookup. `v` gives one verdict per
// staged row against the state before the chunk: suppressed beats
// everything, a repeat within the chunk (first = false, decided while
// reading) is a duplicate, a member this import ($2) already added or
// updated (an earlier chunk of the same file, told by the import's id on the
// rows it wrote, never by time: another import's rows are merged like any
// stored row) is a duplicate, an unchanged member is a duplicate, a changed
// one an update. New addresses become recipients and members, known ones
// join the list, and a newer import's attributes are merged over the stored
// ones; the rows written carry the import's id. New recipients and their
// memberships are plain inserts (no speculative ON CONFLICT path, about a
// third of their cost): an address another writer added after the
// statement's snapshot fails the statement with a unique violation, and the
// importer runs the chunk again. Returns ('count', status, n) rows and, when
// $3, one ('row', status, line, detail, email) row per row not added.
const char* const kMergeChunk = R"SQL(
WITH v AS MATERIALIZED (
  SELECT s.line, s.email, s.email_key, s.domain, s.attributes, r.id AS recipient_id,
    CASE
      WHEN x.email_key IS NOT NULL THEN 'suppressed'
      WHEN NOT s.first THEN 'duplicate'
      WHEN r.id IS NULL THEN 'new'
      WHEN m.list_id IS NULL THEN 'join'
      WHEN m.added_by_import = $2 OR r.updated_by_import = $2 THEN 'duplicate'
      WHEN r.attributes || s.attributes = r.attributes AND r.email = s.email THEN 'duplicate'
      ELSE 'update'
    END AS status,
    CASE
      WHEN x.email_key IS NOT NULL THEN 'suppressed: ' || x.reason
      WHEN NOT s.first THEN 'repeated in file'
      WHEN m.list_id IS NOT NULL AND (m.added_by_import = $2 OR r.updated_by_import = $2)
        THEN 'repeated in file'
      WHEN m.list_id IS NOT NULL THEN 'already in list'
    END AS detail,
    (r.id IS NOT NULL AND (r.attributes || s.attributes <> r.attributes OR r.email <> s.email))
      AS changed
  FROM import_stage s
  LEFT JOIN suppressions x ON x.email_key = s.email_key
  LEFT JOIN recipients r ON r.email_key = s.email_key
  LEFT JOIN list_members m ON m.list_id = $1 AND m.recipient_id = r.id),
ins AS (
  INSERT INTO recipients (email, email_key, domain, attributes)
  SELECT email, email_key, domain, attributes FROM v WHERE status = 'new'
  RETURNING id),
mem_new AS (
  INSERT INTO list_members (list_id, recipient_id, added_by_import)
  SELECT $1::bigint, id, $2::bigint FROM ins),
mem_join AS (
  INSERT INTO list_members (list_id, recipient_id, added_by_import)
  SELECT $1::bigint, recipient_id, $2::bigint FROM v WHERE status = 'join'
  ON CONFLICT DO NOTHING),
upd AS (
  UPDATE recipients r
  SET attributes = r.attributes || v.attributes, email = v.email, updated_at = now(),
    updated_by_import = $2::bigint
  FROM v
  WHERE v.status IN ('join', 'update') AND v.changed AND r.id = v.recipient_id)
SELECT 'count', status, count(*), NULL, NULL FROM v GROUP BY status
UNION ALL
SELECT 'row', status, line, detail, email FROM v
WHERE $3 AND status IN ('duplicate', 'suppressed'))SQL";

// The keys of $1 that a recipient or a suppression already has, by one
// index probe per key whatever the statistics say (the LIMIT keeps each probe
// a parameterised index scan; EXISTS or = ANY forms were planned as a scan of
// all recipients into a hash, per chunk).
const char* const kKnownKeys = R"SQL(
SELECT k FROM unnest($1::text[]) k,
  LATERAL (SELECT 1 FROM recipients r WHERE r.email_key = k LIMIT 1) r
UNION ALL
SELECT k FROM unnest($1::text[]) k,
  LATERAL (SELECT 1 FROM suppressions x WHERE x.email_key = k LIMIT 1) x)SQL";

// Which of the recipients an import has just added (ids from $1[i] to $2[i])
// carry a suppressed address: (id, reason). Each probe is forced to be an
// index lookup (LIMIT) and the cheaper side drives them: a suppression list
// smaller than the chunk ($3 rows) is walked and each of its keys looked up
// in recipients, a larger one is probed once per new recipient. So the check
// costs at most one lookup per row of the chunk, and next to nothing while
// few addresses are suppressed; it needs no list of keys from the client.
const char* const kSuppressedNewRecipients = R"SQL(
WITH n AS MATERIALIZED (SELECT count(*) AS c FROM (SELECT FROM suppressions LIMIT $3) s),
g AS (SELECT * FROM unnest($1::bigint[], $2::bigint[]) g(lo, hi))
SELECT r.id, x.reason FROM suppressions x,
  LATERAL (SELECT r.id FROM recipients r WHERE r.email_key = x.email_key LIMIT 1) r
WHERE (SELECT c FROM n) < $3 AND EXISTS (SELECT 1 FROM g WHERE r.id BETWEEN g.lo AND g.hi)
UNION ALL
SELECT r.id, x.reason FROM g,
  LATERAL (SELECT id, email_key FROM recipients r WHERE r.id BETWEEN g.lo AND g.hi OFFSET 0) r,
  LATERAL (SELECT reason FROM suppressions x WHERE x.email_key = r.email_key LIMIT 1) x
WHERE (SELECT c FROM n) >= $3)SQL";

// Takes back recipients just added whose address turned out suppressed.
const char* const kDropNewRecipients = "DELETE FROM recipients WHERE id = ANY ($1::bigint[])";

// The memberships of the recipients import $5 has just added (ids from
// $2[i] to $3[i]), but for those in $4: made by the server from the id
// ranges, nothing per row crosses the connection.
const char* const kAddNewMembers = R"SQL(
INSERT INTO list_members (list_id, recipient_id, added_by_import)
SELECT $1::bigint, i, $5::bigint
FROM unnest($2::bigint[], $3::bigint[]) g(lo, hi), generate_series(g.lo, g.hi) i
WHERE i <> ALL ($4::bigint[]))SQL";

const char* const kInsertDomains = R"SQL(
INSERT INTO domains (domain, provider)
SELECT * FROM unnest($1::text[], $2::text[])
ON CONFLICT (domain) DO NOTHING)SQL";

const char* const kCreateSuppressionStaging = R"SQL(
CREATE TEMP TABLE IF NOT EXISTS suppression_stage (
  email_key  text COLLATE "C" NOT NULL,
  reason     text NOT NULL,
  detail     text
) ON COMMIT DELETE ROWS)SQL";

// The first suppression of an address is kept (its reason and time).
const char* const kMergeSuppressionStaging = R"SQL(
INSERT INTO suppressions (email_key, reason, source, detail)
SELECT DISTINCT ON (email_key) email_key, reason, $1::text, NULLIF(detail, '') FROM suppression_stage
ORDER BY email_key
ON CONFLICT (email_key) DO NOTHING)SQL";

}  // namespace sql

void prepare_list_statements(Database& db) {
  db.prepare(sql::kCreateList,
             "INSERT INTO lists (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING id");
  db.prepare(sql::kFindList,
             "SELECT l.id, l.name, l.created_at::text, "
             "(SELECT count(*) FROM list_members m WHERE m.list_id = l.id), "
             "(SELECT count(*) FROM list_members m JOIN recipients r ON r.id = m.recipient_id "
             " JOIN suppressions s ON s.email_key = r.email_key WHERE m.list_id = l.id) "
             "FROM lists l WHERE l.name = $1");
  db.prepare(sql::kAllLists,
             "SELECT l.id, l.name, l.created_at::text, "
             "(SELECT count(*) FROM list_members m WHERE m.list_id = l.id) "
             "FROM lists l ORDER BY l.name");
  db.prepare(sql::kAddSuppression,
             "INSERT INTO suppressions (email_key, reason, source, detail) "
             "VALUES ($1, $2, $3, NULLIF($4, '')) ON CONFLICT (email_key) DO NOTHING "
             "RETURNING email_key");
  db.prepare(sql::kFindSuppression,
             "SELECT email_key, reason, source, campaign_id, coalesce(detail, ''), "
             "created_at::text FROM suppressions WHERE email_key = $1");
  db.prepare(sql::kRemoveSuppression,
             "DELETE FROM suppressions WHERE email_key = $1 RETURNING email_key");
  db.prepare(sql::kFindRunningImport,
             "SELECT id, next_offset, next_line, counts::text, rejects_bytes FROM imports "
             "WHERE list_id = $1 AND file_identity = $2 AND status = 'running' "
             "ORDER BY id DESC LIMIT 1");
  db.prepare(sql::kStartImport,
             "INSERT INTO imports (list_id, file_path, file_identity, next_offset, next_line) "
             "VALUES ($1, $2, $3, $4, $5) RETURNING id");
  // $5, the rejects file's length, is -1 for none (NULL).
  db.prepare(sql::kImportProgress,
             "UPDATE imports SET next_offset = $2, next_line = $3, counts = $4::jsonb, "
             "rejects_bytes = NULLIF($5::bigint, -1), updated_at = now() WHERE id = $1");
  db.prepare(sql::kFinishImport,
             "UPDATE imports SET status = 'finished', counts = $2::jsonb, updated_at = now(), "
             "finished_at = now() WHERE id = $1");
  // Session advisory lock per import, so two processes never run one import.
  db.prepare(sql::kLockImport, "SELECT pg_try_advisory_lock(1279873876, $1::int)");
  db.prepare(sql::kUnlockImport, "SELECT pg_advisory_unlock(1279873876, $1::int)");
  // Transaction advisory lock taken by every chunk write before it writes
  // anything (one key for all imports; the one-key form is apart from the
  // two-key locks above): chunks of concurrent imports commit one at a time.
  db.prepare(sql::kChunkTurn, "SELECT pg_advisory_xact_lock(1279873876)");
  // $1 ids from the sequence: (first, last, how many). Consecutive unless
  // another session drew ids at the same moment; then the runs statement
  // draws again and gives them as runs of consecutive ids (first, last), in
  // order (sorting the ids costs as much as drawing them).
  db.prepare(sql::kNextRecipientIds,
             "SELECT min(n), max(n), count(*) FROM "
             "(SELECT nextval('recipients_id_seq') AS n FROM generate_series(1, $1::bigint)) s");
  db.prepare(sql::kNextRecipientIdRuns,
             "SELECT min(n), max(n) FROM (SELECT n, n - row_number() OVER (ORDER BY n) AS run "
             "FROM (SELECT nextval('recipients_id_seq') AS n FROM generate_series(1, $1::bigint)) s"
             ") t GROUP BY run ORDER BY 1");
  db.prepare(sql::kCachedDomains,
             "SELECT domain, mx_status, coalesce(array_to_string(mx_hosts, ' '), '') "
             "FROM domains WHERE domain = ANY (string_to_array($1, ' ')) "
             "AND mx_status IS NOT NULL AND mx_status <> 'error' AND expires_at > now()");
  db.prepare(sql::kStoreDomainAnswer,
             "INSERT INTO domains (domain, provider, mx_hosts, mx_status, checked_at, expires_at) "
             "VALUES ($1, $2, string_to_array(NULLIF($3, ''), ' '), $4, now(), "
             "now() + make_interval(secs => $5)) "
             "ON CONFLICT (domain) DO UPDATE SET provider = EXCLUDED.provider, "
             "mx_hosts = EXCLUDED.mx_hosts, mx_status = EXCLUDED.mx_status, "
             "checked_at = EXCLUDED.checked_at, expires_at = EXCLUDED.expires_at");
}

}  // namespace mailer::db
