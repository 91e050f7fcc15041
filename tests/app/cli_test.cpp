// The command line contract: help, exit codes, unavailable commands, logging.
#include <gtest/gtest.h>

#include "app/base/logging.h"
#include "tests/support/process.h"

namespace mailer::app {
namespace {

using mailer::testing::run_mailer;

TEST(Cli, HelpListsEveryCommandAndExitsZero) {
  auto r = run_mailer({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* cmd : {"migrate", "lists", "import", "suppress", "campaign", "run", "serve",
                          "status", "sink", "simulate", "doctor"}) {
    EXPECT_NE(r.out.find(cmd), std::string::npos) << cmd;
  }
  EXPECT_EQ(run_mailer({"migrate", "--help"}).exit_code, 0);
}

TEST(Cli, BadUsageExitsTwo) {
  EXPECT_EQ(run_mailer({}).exit_code, 2);
  EXPECT_EQ(run_mailer({"no-such-command"}).exit_code, 2);
  EXPECT_EQ(run_mailer({"migrate", "--no-such-flag"}).exit_code, 2);
  EXPECT_EQ(run_mailer({"--log-level", "loud", "migrate"}).exit_code, 2);
}

TEST(Cli, UnknownCommandIsNamedWithTheListOfCommandsAndExitsTwo) {
  auto r = run_mailer({"no-such-command", "--json"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown command \"no-such-command\""), std::string::npos) << r.err;
  for (const char* cmd : {"migrate", "campaign", "run", "serve", "doctor", "bounces", "inbound"}) {
    EXPECT_NE(r.err.find(std::string("\n  ") + cmd + " "), std::string::npos) << cmd << r.err;
  }
  EXPECT_EQ(r.err.find("A subcommand is required"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(Cli, InboundWithNoDomainToAcceptIsAUsageErrorNamingTheKey) {
  const std::string dir = mailer::testing::make_temp_dir("cli-inbound");
  mailer::testing::write_file(dir + "/empty.toml", "");
  auto r = run_mailer({"--config", dir + "/empty.toml", "inbound", "--listen", "127.0.0.1:0"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("[inbound] domains"), std::string::npos) << r.err;
  r = run_mailer({"--config", dir + "/empty.toml", "inbound", "--listen", "nowhere"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--listen"), std::string::npos) << r.err;
}

TEST(Cli, BadConfigurationExitsTwoNamingTheKey) {
  const std::string dir = mailer::testing::make_temp_dir("cli");
  mailer::testing::write_file(dir + "/bad.toml", "[retry]\nmax_age = \"forever\"\n");
  auto r = run_mailer({"--config", dir + "/bad.toml", "migrate"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(dir + "/bad.toml:2: key \"retry.max_age\""), std::string::npos) << r.err;
}

TEST(Cli, MissingDatabaseUrlIsAUsageError) {
  const std::string dir = mailer::testing::make_temp_dir("cli-nodb");
  mailer::testing::write_file(dir + "/empty.toml", "");
  // Run where no private cluster's URL file exists.
  auto r = mailer::testing::run_process({MAILER_BINARY, "--config", dir + "/empty.toml", "migrate"},
                                        {{"MAILER_DATABASE_URL", ""}}, "", std::chrono::seconds(30),
                                        dir);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("no database configured"), std::string::npos) << r.err;
}

TEST(Logging, RedactsPasswordsInUrlsAndKeyValueStrings) {
  EXPECT_EQ(redact_secrets("postgresql://mailer:hunter2@db:5432/mailer"),
            "postgresql://mailer:***@db:5432/mailer");
  EXPECT_EQ(redact_secrets("host=db password=hunter2 dbname=x"), "host=db password=*** dbname=x");
  EXPECT_EQ(redact_secrets("smtp://relay.example:587"), "smtp://relay.example:587");
}

}  // namespace
}  // namespace mailer::app
