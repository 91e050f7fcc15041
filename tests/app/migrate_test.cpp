// The migration runner against the real PostgreSQL server.
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "app/db/migrator.h"
#include "tests/support/pg_fixture.h"
#include "tests/support/process.h"

namespace mailer::db {
namespace {

using mailer::testing::TestDatabase;

DatabaseOptions options_for(const TestDatabase& t) {
  return DatabaseOptions{.url = t.url()};
}

long long count(Database& db, const std::string& sql) {
  return db.transact([&](pqxx::work& w) { return w.exec1(sql)[0].as<long long>(); });
}

TEST(Migrator, AppliesEveryEmbeddedMigrationThenIsANoOp) {
  TestDatabase t("migrate_apply", /*migrate=*/false);
  Database db(options_for(t));
  Migrator m(db);
  auto first = m.apply();
  ASSERT_EQ(first.size(), embedded_migrations().size());
  EXPECT_EQ(first.front(), "0001_core_schema.sql");
  EXPECT_EQ(count(db, "SELECT count(*) FROM schema_migrations"),
            static_cast<long long>(embedded_migrations().size()));
  // The core tables exist and are usable.
  EXPECT_EQ(count(db, "SELECT count(*) FROM deliveries"), 0);
  EXPECT_TRUE(m.apply().empty());
  for (const auto& s : m.status()) EXPECT_TRUE(s.applied) << s.name;
}

TEST(Migrator, AppliesInOrderEachInItsOwnTransaction) {
  TestDatabase t("migrate_order", false);
  Database db(options_for(t));
  std::vector<EmbeddedMigration> ms = {
      {"0001_a.sql", "CREATE TABLE a (x int);"},
      {"0002_b.sql", "CREATE TABLE b (x int REFERENCES a_missing);"},  // fails
      {"0003_c.sql", "CREATE TABLE c (x int);"},
  };
  Migrator m(db, ms);
  EXPECT_THROW(m.apply(), MigrationError);
  // 0001 stays applied; 0002 rolled back whole; 0003 never ran.
  auto st = m.status();
  EXPECT_TRUE(st[0].applied);
  EXPECT_FALSE(st[1].applied);
  EXPECT_FALSE(st[2].applied);
  EXPECT_EQ(count(db, "SELECT count(*) FROM pg_tables WHERE tablename IN ('a','b','c')"), 1);
}

TEST(Migrator, RefusesAnAppliedMigrationWhoseTextChanged) {
  TestDatabase t("migrate_changed", false);
  Database db(options_for(t));
  Migrator(db, {{"0001_a.sql", "CREATE TABLE a (x int);"}}).apply();
  Migrator changed(db, {{"0001_a.sql", "CREATE TABLE a (x bigint);"},
                        {"0002_b.sql", "CREATE TABLE b (x int);"}});
  try {
    changed.apply();
    FAIL() << "expected MigrationError";
  } catch (const MigrationError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("migration 0001_a.sql was changed after it was applied"), std::string::npos)
        << msg;
  }
  // Nothing after the refusal was applied.
  EXPECT_EQ(count(db, "SELECT count(*) FROM pg_tables WHERE tablename = 'b'"), 0);
}

TEST(Migrator, RefusesADatabaseMigratedByANewerBinary) {
  TestDatabase t("migrate_newer", false);
  Database db(options_for(t));
  Migrator(db, {{"0001_a.sql", "SELECT 1;"}, {"0002_b.sql", "SELECT 2;"}}).apply();
  EXPECT_THROW(Migrator(db, {{"0001_a.sql", "SELECT 1;"}}).apply(), MigrationError);
}

TEST(Migrator, ConcurrentRunnersApplyEachMigrationOnce) {
  TestDatabase t("migrate_concurrent", false);
  // A slow migration widens the race window.
  std::vector<EmbeddedMigration> ms = {
      {"0001_slow.sql", "SELECT pg_sleep(0.5); CREATE TABLE once (x int);"},
      {"0002_more.sql", "INSERT INTO once VALUES (1);"},
  };
  auto runner = [&] {
    Database db(options_for(t));
    return Migrator(db, ms).apply().size();
  };
  auto a = std::async(std::launch::async, runner);
  auto b = std::async(std::launch::async, runner);
  const std::size_t total = a.get() + b.get();
  EXPECT_EQ(total, 2u);  // each migration applied by exactly one runner
  Database db(options_for(t));
  EXPECT_EQ(count(db, "SELECT count(*) FROM once"), 1);
}

TEST(MigrateCommand, AppliesStatusAndIsIdempotentThroughTheBinary) {
  TestDatabase t("migrate_cli", false);
  std::map<std::string, std::string> env{{"MAILER_DATABASE_URL", t.url()}};
  auto status = mailer::testing::run_mailer({"migrate", "--status", "--json"}, env);
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_NE(status.out.find("\"applied\":false"), std::string::npos) << status.out;
  auto r = mailer::testing::run_mailer({"migrate", "--json"}, env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("0001_core_schema.sql"), std::string::npos) << r.out;
  auto again = mailer::testing::run_mailer({"migrate", "--json"}, env);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(again.out, "{\"applied\":[]}\n");
}

}  // namespace
}  // namespace mailer::db
