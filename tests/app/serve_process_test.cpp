// The `mailer serve` command as operators run it: it listens where it is
// told, answers, stops cleanly on SIGTERM and SIGINT, and refuses to start
// without what it needs.
#include <gtest/gtest.h>

#include <filesystem>

#include "tests/app/serve_support.h"
#include "tests/support/pg_fixture.h"

namespace mailer::app {
namespace {

using namespace std::chrono_literals;
using mailer::testing::http_call;

TEST(ServeProcess, AnswersAndExitsZeroOnSigtermAndSigint) {
  mailer::testing::TestDatabase t("serve_proc");
  for (int sig : {SIGTERM, SIGINT}) {
    const std::string dir = mailer::testing::make_temp_dir("serve_proc");
    mailer::testing::ServeProcess serve(t.url(), dir);
    const auto port = serve.wait_listening();
    ASSERT_TRUE(port) << serve.process().err();
    EXPECT_EQ(http_call(*port, "GET", "/healthz").status, 200);
    EXPECT_EQ(http_call(serve.admin_port(), "GET", "/metrics").status, 200);
    EXPECT_EQ(http_call(*port, "GET", "/metrics").status, 404) << "admin pages stay off /u/'s port";
    serve.process().signal(sig);
    EXPECT_EQ(serve.process().wait(10s), 0) << serve.process().err();
    std::filesystem::remove_all(dir);
  }
}

TEST(ServeProcess, HealthzIs503WhileTheDatabaseIsUnreachable) {
  const std::string dir = mailer::testing::make_temp_dir("serve_proc");
  const auto closed = mailer::testing::closed_loopback_port();
  mailer::testing::ServeProcess serve(
      fmt::format("postgresql://mailer@127.0.0.1:{}/mailer?connect_timeout=2", closed), dir);
  const auto port = serve.wait_listening();
  ASSERT_TRUE(port) << serve.process().err();
  const auto reply = http_call(*port, "GET", "/healthz");
  EXPECT_EQ(reply.status, 503);
  EXPECT_EQ(reply.body, "database unreachable\n");
  serve.process().signal(SIGTERM);
  EXPECT_EQ(serve.process().wait(10s), 0);
  std::filesystem::remove_all(dir);
}

TEST(ServeProcess, RefusesToStartWithoutAnUnsubscribeSecretOrWithABadAddress) {
  const std::string dir = mailer::testing::make_temp_dir("serve_proc");
  {
    mailer::testing::ServeProcess serve("postgresql://mailer@127.0.0.1:1/mailer", dir, false);
    EXPECT_EQ(serve.process().wait(20s), 2);
    EXPECT_NE(serve.process().err().find("secret"), std::string::npos) << serve.process().err();
  }
  mailer::testing::write_file(dir + "/unsubscribe.key", mailer::testing::kServeSecret);
  mailer::testing::write_file(dir + "/bad.toml",
                              "[database]\nurl = \"postgresql://x@127.0.0.1:1/x\"\n"
                              "[unsubscribe]\nsecret_file = \"" +
                                  dir + "/unsubscribe.key\"\n");
  const auto r = mailer::testing::run_mailer(
      {"--config", dir + "/bad.toml", "serve", "--listen", "example.com:80"}, {}, "", 20s);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--listen"), std::string::npos) << r.err;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace mailer::app
