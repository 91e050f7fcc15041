// The SQL migrations compiled into the binary, in apply order.
#pragma once

#include <string_view>
#include <vector>

namespace mailer::db {

struct EmbeddedMigration {
  // File name, e.g. "0001_core_schema.sql"; its numeric prefix orders it.
  std::string_view name;
  // The file's exact bytes.
  std::string_view sql;
};

// All migrations under migrations/ at build time, sorted by name.
const std::vector<EmbeddedMigration>& embedded_migrations();

}  // namespace mailer::db
