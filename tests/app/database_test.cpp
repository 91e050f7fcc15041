// The database layer: clear connection errors and reconnection.
#include "app/db/database.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/support/pg_fixture.h"
#include "tests/support/process.h"

namespace mailer::db {
namespace {

// A loopback port with nothing listening on it.
int closed_port() {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  close(s);
  return ntohs(a.sin_port);
}

TEST(Database, ServerDownIsOneClearLineNamingHostAndDatabase) {
  const int port = closed_port();
  Database db(DatabaseOptions{
      .url = "postgresql://mailer:s3cret@127.0.0.1:" + std::to_string(port) + "/campaigns",
      .reconnect_for = std::chrono::milliseconds(0)});
  try {
    db.transact([](pqxx::work& w) { w.exec("SELECT 1"); });
    FAIL() << "expected ConnectionError";
  } catch (const ConnectionError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_EQ(msg.rfind("cannot connect to PostgreSQL (host=127.0.0.1 port=" +
                            std::to_string(port) + " dbname=campaigns): ",
                        0),
              0u)
        << msg;
    EXPECT_NE(msg.find("refused"), std::string::npos) << msg;
    EXPECT_EQ(msg.find("s3cret"), std::string::npos) << "password leaked: " << msg;
  }
}

TEST(Database, CommandReportsServerDownWithExitOne) {
  const int port = closed_port();
  auto r = mailer::testing::run_mailer(
      {"migrate"}, {{"MAILER_DATABASE_URL",
                     "postgresql://mailer:s3cret@127.0.0.1:" + std::to_string(port) + "/mailer"}});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err,
            "mailer: cannot connect to PostgreSQL (host=127.0.0.1 port=" + std::to_string(port) +
                " dbname=mailer): " + r.err.substr(r.err.find("): ") + 3));
  EXPECT_EQ(r.err.find("s3cret"), std::string::npos);
}

TEST(Database, PreparedStatementsSurviveAReconnect) {
  mailer::testing::TestDatabase t("database_reconnect");
  Database db(DatabaseOptions{.url = t.url()});
  db.prepare("add", "SELECT $1::int + $2::int");
  auto sum = [&] {
    return db.transact([](pqxx::work& w) { return w.exec_prepared1("add", 2, 3)[0].as<int>(); });
  };
  EXPECT_EQ(sum(), 5);
  // Kill our own backend: the next transaction must reconnect and re-prepare.
  const int pid = db.connection().backendpid();
  {
    pqxx::connection admin(t.url());
    pqxx::nontransaction tx(admin);
    tx.exec("SELECT pg_terminate_backend(" + std::to_string(pid) + ")");
  }
  EXPECT_EQ(sum(), 5);
  EXPECT_NE(db.connection().backendpid(), pid);
}

TEST(Database, DescribesKeyValueConnectionStrings) {
  EXPECT_EQ(describe_conninfo("host=/tmp/sock port=6000 dbname=x user=u password=p"),
            "host=/tmp/sock port=6000 dbname=x");
  EXPECT_EQ(describe_conninfo("postgresql://u@db.example:5433/mail"),
            "host=db.example port=5433 dbname=mail");
}

}  // namespace
}  // namespace mailer::db
