#include "tests/support/pg_fixture.h"

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <pqxx/pqxx>

#include "app/db/database.h"
#include "app/db/migrator.h"

namespace mailer::testing {

std::string server_url() {
  const char* url = std::getenv("MAILER_TEST_DATABASE_URL");
  if (url == nullptr || *url == '\0') {
    std::fprintf(stderr,
                 "MAILER_TEST_DATABASE_URL is not set: run the tests through tests/run.sh, "
                 "or start deploy/pg-local.sh and export its URL\n");
    std::abort();
  }
  return url;
}

std::string with_database(const std::string& base, const std::string& dbname) {
  // URL form: replace the path; key=value form: append dbname (last one wins).
  if (base.rfind("postgres", 0) == 0 && base.find("://") != std::string::npos) {
    const auto scheme_end = base.find("://") + 3;
    const auto query = base.find('?', scheme_end);
    const auto slash = base.find('/', scheme_end);
    const std::string head =
        base.substr(0, slash != std::string::npos && (query == std::string::npos || slash < query)
                           ? slash
                           : (query == std::string::npos ? base.size() : query));
    const std::string tail = query == std::string::npos ? "" : base.substr(query);
    return head + "/" + dbname + tail;
  }
  return base + " dbname=" + dbname;
}

TestDatabase::TestDatabase(const std::string& tag, bool migrate) {
  static std::atomic<int> counter{0};
  name_ = fmt::format("mailer_test_{}_{}_{}", tag, getpid(), counter++);
  const std::string admin = server_url();
  {
    pqxx::connection c(admin);
    pqxx::nontransaction tx(c);
    tx.exec("DROP DATABASE IF EXISTS " + tx.quote_name(name_));
    tx.exec("CREATE DATABASE " + tx.quote_name(name_));
  }
  url_ = with_database(admin, name_);
  if (migrate) {
    db::Database db(db::DatabaseOptions{.url = url_});
    db::Migrator(db).apply();
  }
}

TestDatabase::~TestDatabase() {
  try {
    pqxx::connection c(server_url());
    pqxx::nontransaction tx(c);
    tx.exec("DROP DATABASE IF EXISTS " + tx.quote_name(name_) + " WITH (FORCE)");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "warning: could not drop test database %s: %s\n", name_.c_str(), e.what());
  }
}

}  // namespace mailer::testing
