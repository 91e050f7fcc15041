#include "app/db/migrator.h"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <map>

namespace mailer::db {
namespace {

// Any constant works; it only has to be the same for every mailer process.
// ASCII "mailmigr" as a 64-bit number.
constexpr long long kMigrationLockKey = 0x6d61696c6d696772LL;

struct Applied {
  std::string checksum;
  std::string applied_at;
};

std::map<std::string, Applied> read_applied(pqxx::connection& c) {
  pqxx::nontransaction tx(c);
  std::map<std::string, Applied> out;
  for (const auto& row :
       tx.exec("SELECT name, checksum, to_char(applied_at AT TIME ZONE 'UTC', "
               "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM schema_migrations ORDER BY name")) {
    out[row[0].as<std::string>()] = {row[1].as<std::string>(), row[2].as<std::string>()};
  }
  return out;
}

// Holds a session-level advisory lock for its lifetime.
class AdvisoryLock {
 public:
  AdvisoryLock(pqxx::connection& c, long long key) : c_(c), key_(key) {
    pqxx::nontransaction tx(c_);
    tx.exec(fmt::format("SELECT pg_advisory_lock({})", key_));
  }
  ~AdvisoryLock() {
    try {
      pqxx::nontransaction tx(c_);
      tx.exec(fmt::format("SELECT pg_advisory_unlock({})", key_));
    } catch (const std::exception&) {
      // Connection gone: the server released the lock with the session.
    }
  }
  AdvisoryLock(const AdvisoryLock&) = delete;
  AdvisoryLock& operator=(const AdvisoryLock&) = delete;

 private:
  pqxx::connection& c_;
  long long key_;
};

}  // namespace

std::string sha256_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) out += fmt::format("{:02x}", digest[i]);
  return out;
}

Migrator::Migrator(Database& db, std::vector<EmbeddedMigration> migrations)
    : db_(db), migrations_(std::move(migrations)) {}

Migrator::Migrator(Database& db) : Migrator(db, embedded_migrations()) {}

void Migrator::ensure_table(pqxx::connection& c) {
  pqxx::nontransaction tx(c);
  tx.exec(
      "CREATE TABLE IF NOT EXISTS schema_migrations ("
      " name text PRIMARY KEY,"
      " checksum text NOT NULL,"
      " applied_at timestamptz NOT NULL DEFAULT now())");
}

void Migrator::verify(pqxx::connection& c) {
  auto applied = read_applied(c);
  std::map<std::string, std::string> known;
  for (const auto& m : migrations_) known[std::string(m.name)] = sha256_hex(m.sql);
  for (const auto& [name, a] : applied) {
    auto it = known.find(name);
    if (it == known.end()) {
      throw MigrationError(
          fmt::format("migration {} is applied in the database but unknown to this mailer binary "
                      "(a newer version migrated this database); refusing to continue",
                      name));
    }
    if (it->second != a.checksum) {
      throw MigrationError(fmt::format(
          "migration {} was changed after it was applied (applied checksum {}, file checksum {}); "
          "applied migrations must never be edited: restore the file and add a new migration",
          name, a.checksum.substr(0, 12), it->second.substr(0, 12)));
    }
  }
}

std::vector<std::string> Migrator::apply() {
  pqxx::connection& c = db_.connection();
  // Session-level lock, taken before anything else: a second runner waits
  // here, then finds everything applied and does nothing.
  AdvisoryLock lock(c, kMigrationLockKey);
  ensure_table(c);
  verify(c);
  auto applied = read_applied(c);
  std::vector<std::string> done;
  for (const auto& m : migrations_) {
    const std::string name(m.name);
    if (applied.count(name)) continue;
    spdlog::info("applying migration {}", name);
    pqxx::work w(c);
    try {
      w.exec(std::string(m.sql));
    } catch (const pqxx::sql_error& e) {
      throw MigrationError(
          fmt::format("migration {} failed and was rolled back: {}", name, e.what()));
    }
    w.exec_params("INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)", name,
                  sha256_hex(m.sql));
    w.commit();
    done.push_back(name);
  }
  return done;
}

std::vector<MigrationStatus> Migrator::status() {
  pqxx::connection& c = db_.connection();
  std::map<std::string, Applied> applied;
  bool have_table = false;
  {
    pqxx::nontransaction tx(c);
    have_table = tx.exec1("SELECT to_regclass('schema_migrations') IS NOT NULL")[0].as<bool>();
  }
  if (have_table) applied = read_applied(c);
  if (!applied.empty()) verify(c);
  std::vector<MigrationStatus> out;
  for (const auto& m : migrations_) {
    MigrationStatus s{std::string(m.name), sha256_hex(m.sql), false, ""};
    if (auto it = applied.find(s.name); it != applied.end()) {
      s.applied = true;
      s.applied_at = it->second.applied_at;
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace mailer::db
