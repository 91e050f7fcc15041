// Bad configuration seen from outside the process: exit status 2 at once, one
// line on stderr naming the file or variable and the key, and never the
// database password.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "tests/support/process.h"

namespace {

using mailer::testing::ProcessResult;
using mailer::testing::run_mailer;
using std::chrono::steady_clock;

// Runs mailer, checking that it refuses its configuration quickly: exit 2 and
// one line on stderr within five seconds.
ProcessResult refused(const std::vector<std::string>& args,
                      const std::map<std::string, std::string>& env) {
  const auto start = steady_clock::now();
  ProcessResult r = run_mailer(args, env, "", std::chrono::seconds(30));
  EXPECT_LT(steady_clock::now() - start, std::chrono::seconds(5)) << r.err;
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  return r;
}

TEST(ConfigProcess, MalformedDatabaseUrlExitsTwoAtOnceWithoutThePassword) {
  const std::string dir = mailer::testing::make_temp_dir("badurl");
  mailer::testing::write_file(dir + "/empty.toml", "");
  for (const std::string url :
       {"postgresql://u:Secret@[::1/db", "postgresql://u:Sec%zzret@127.0.0.1/db",
        "postgresql://u@127.0.0.1/db?password=Secret%zz", "host=127.0.0.1 password='Secret",
        "host=127.0.0.1 password=Secret hots=x"}) {
    SCOPED_TRACE(url);
    const ProcessResult r =
        refused({"--config", dir + "/empty.toml", "lists", "list"}, {{"MAILER_DATABASE_URL", url}});
    EXPECT_EQ(r.err.rfind("mailer: $MAILER_DATABASE_URL: invalid database URL: ", 0), 0u) << r.err;
    EXPECT_EQ(r.err.find("Secret"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("Sec%zz"), std::string::npos) << r.err;
  }
  mailer::testing::write_file(dir + "/url.toml",
                              "[database]\nurl = \"postgresql://u:Secret@[::1/db\"\n");
  const ProcessResult r =
      refused({"--config", dir + "/url.toml", "lists", "list"}, {{"MAILER_DATABASE_URL", ""}});
  EXPECT_NE(r.err.find(dir + "/url.toml:2: key \"database.url\": invalid database URL"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("Secret"), std::string::npos) << r.err;
  std::filesystem::remove_all(dir);
}

// Values libpq refuses only when it connects are configuration too: refused at
// once, not retried as if the server were down.
TEST(ConfigProcess, DatabaseUrlOptionValuesLibpqRefusesExitTwoAtOnce) {
  const std::string dir = mailer::testing::make_temp_dir("badopt");
  mailer::testing::write_file(dir + "/empty.toml", "");
  for (const auto& [url, says] : std::vector<std::pair<std::string, std::string>>{
           {"postgresql://u:Secret@127.0.0.1:1/db?sslmode=bogus", "invalid sslmode value"},
           {"postgresql://u:Secret@127.0.0.1:abc/db", "invalid integer value \"abc\""},
           {"host=127.0.0.1 port=1 password=Secret connect_timeout=x", "\"connect_timeout\""}}) {
    SCOPED_TRACE(url);
    const ProcessResult r =
        refused({"--config", dir + "/empty.toml", "lists", "list"}, {{"MAILER_DATABASE_URL", url}});
    EXPECT_NE(r.err.find("invalid database URL: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("Secret"), std::string::npos) << r.err;
  }
  std::filesystem::remove_all(dir);
}

TEST(ConfigProcess, HostileValuesExitTwoAtOnceNamingTheKey) {
  const std::string dir = mailer::testing::make_temp_dir("hostile");
  const std::map<std::string, std::string> env = {
      {"MAILER_DATABASE_URL", "postgresql://u:Secret@127.0.0.1:1/db"}};
  struct Case {
    std::string toml;
    std::string expected;
  };
  for (const Case& c : {
           Case{"[database]\nreconnect_min = \"0s\"\n",
                ":2: key \"database.reconnect_min\": must be at least 10ms"},
           Case{"[database]\nreconnect_min = \"5s\"\nreconnect_max = \"1s\"\n",
                ":3: key \"database.reconnect_max\": must be at least reconnect_min (5s)"},
           Case{"[worker]\nlease = \"106751991d\"\n",
                ":2: key \"worker.lease\": must be at most 1d, got \"106751991d\""},
           Case{"[providers.gmail]\nmax_connections = 4294967297\n",
                ":2: key \"providers.gmail.max_connections\": must be at most 10000, got "
                "4294967297"},
           Case{"[sender]\nhelo_name = 1\negress = \"" + std::string(1 << 20, 'e') +
                    "\"\nsource_address = \"" + std::string(1 << 20, 's') + "\"\n",
                ":2: key \"sender.helo_name\": expected a string, got an integer"},
           Case{"[sender]\nsource_address = \"" + std::string(1 << 20, 's') + "\"\n",
                ":2: key \"sender.source_address\": expected an IPv4 or IPv6 address, got \"" +
                    std::string(80, 's') + "\u2026\" (1048576 bytes)"},
       }) {
    mailer::testing::write_file(dir + "/c.toml", c.toml);
    const ProcessResult r = refused({"--config", dir + "/c.toml", "lists", "list"}, env);
    EXPECT_EQ(r.err, "mailer: " + dir + "/c.toml" + c.expected + "\n");
  }
  std::filesystem::remove_all(dir);
}

TEST(ConfigProcess, ConfigurationThatCannotBeReadExitsTwo) {
  const std::string dir = mailer::testing::make_temp_dir("confdir");
  ProcessResult r = refused({"--config", dir, "lists", "list"}, {});
  EXPECT_EQ(r.err,
            "mailer: " + dir + ": cannot read configuration file: is a directory, not a file\n");
  r = refused({"--config", "/dev/zero", "lists", "list"}, {});
  EXPECT_EQ(r.err,
            "mailer: /dev/zero: cannot read configuration file: larger than 16777216 bytes\n");
  r = refused({"lists", "list"}, {{"MAILER_CONFIG", dir + "/none.toml"}});
  EXPECT_EQ(r.err, "mailer: " + dir +
                       "/none.toml: cannot read configuration file: No such file or directory\n");
  std::filesystem::remove_all(dir);
}

}  // namespace
