// Applies the SQL migrations in order, each in its own transaction, recorded
// in schema_migrations with a checksum. Re-running is a no-op; an applied
// migration whose text changed is refused; concurrent runners serialise on an
// advisory lock so no migration is applied twice.
#pragma once

#include <string>
#include <vector>

#include "app/db/database.h"
#include "app/db/embedded_migrations.h"

namespace mailer::db {

// A migration found inconsistent with the database (changed after it was
// applied, or applied by a newer binary). what() says which and what to do.
class MigrationError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct MigrationStatus {
  std::string name;
  std::string checksum;  // sha256 hex of the embedded file
  bool applied = false;
  std::string applied_at;  // ISO 8601, when applied
};

class Migrator {
 public:
  // `migrations` sorted by name (embedded_migrations() by default).
  Migrator(Database& db, std::vector<EmbeddedMigration> migrations);
  explicit Migrator(Database& db);

  // Applies what is pending; returns the names applied (empty: no-op).
  // Throws MigrationError on a checksum mismatch or unknown applied version,
  // before applying anything.
  std::vector<std::string> apply();

  // Every known migration with its state. Does not lock or change anything.
  // Throws MigrationError as apply() does.
  std::vector<MigrationStatus> status();

 private:
  void ensure_table(pqxx::connection& c);
  void verify(pqxx::connection& c);

  Database& db_;
  std::vector<EmbeddedMigration> migrations_;
};

// Lower-case hex SHA-256 of `data`.
std::string sha256_hex(std::string_view data);

}  // namespace mailer::db
