// Hostile configuration: every integer and duration key is range-checked
// before use, long values are not echoed whole, malformed database URLs are
// refused up front without their password, and files the configuration names
// are read with a size limit.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <string>

#include "app/base/bounded_file.h"
#include "app/base/errors.h"
#include "app/config/config.h"
#include "app/config/config_reader.h"
#include "app/config/unsubscribe_secret.h"
#include "app/db/database.h"
#include "app/worker/dispatcher_setup.h"
#include "tests/support/config_error.h"
#include "tests/support/process.h"

namespace mailer::app {
namespace {

using mailer::testing::config_error_of;
using std::chrono::steady_clock;

// The message of the UsageError `fn` throws ("(no error)" when none).
template <typename Fn>
std::string usage_error_of(Fn&& fn) {
  try {
    fn();
  } catch (const UsageError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ConfigLimits, IntegerKeysAreCheckedBeforeNarrowing) {
  // 2^32 + 1 would wrap to 1 in an int; 2^31 would turn negative.
  EXPECT_EQ(config_error_of("[providers.gmail]\nmax_connections = 4294967297\n"),
            "mailer.toml:2: key \"providers.gmail.max_connections\": must be at most 10000, got "
            "4294967297");
  EXPECT_EQ(config_error_of("[providers.gmail]\nmax_connections = 2147483648\n"),
            "mailer.toml:2: key \"providers.gmail.max_connections\": must be at most 10000, got "
            "2147483648");
  EXPECT_EQ(config_error_of("[providers.gmail]\nmax_connections = 0\n"),
            "mailer.toml:2: key \"providers.gmail.max_connections\": must be at least 1, got 0");
  EXPECT_EQ(config_error_of("[sender]\nmx_port = 65536\n"),
            "mailer.toml:2: key \"sender.mx_port\": must be at most 65535, got 65536");
  EXPECT_EQ(config_error_of("[worker]\nclaim_batch = -9223372036854775808\n"),
            "mailer.toml:2: key \"worker.claim_batch\": must be at least 1, got "
            "-9223372036854775808");
  EXPECT_EQ(config_error_of("[import]\nchunk_rows = 4294967297\n"),
            "mailer.toml:2: key \"import.chunk_rows\": must be at most 1000000, got 4294967297");
  EXPECT_EQ(parse_config("[providers.gmail]\nmax_connections = 10000\n", "mailer.toml")
                .throttle.providers.at("gmail")
                .max_connections,
            10000);
}

TEST(ConfigLimits, DurationsHaveUpperBoundsNamingTheKey) {
  EXPECT_EQ(config_error_of("[worker]\nlease = \"106751991d\"\n"),
            "mailer.toml:2: key \"worker.lease\": must be at most 1d, got \"106751991d\"");
  EXPECT_EQ(config_error_of("[retry]\nmax_age = \"366d\"\n"),
            "mailer.toml:2: key \"retry.max_age\": must be at most 365d, got \"366d\"");
  EXPECT_EQ(config_error_of("[providers.yahoo]\nsuspend_for = \"100000d\"\n"),
            "mailer.toml:2: key \"providers.yahoo.suspend_for\": must be at most 365d, got "
            "\"100000d\"");
  EXPECT_EQ(config_error_of("[sender]\nreply_timeout = \"2h\"\n"),
            "mailer.toml:2: key \"sender.reply_timeout\": must be at most 1h, got \"2h\"");
  EXPECT_EQ(parse_config("[worker]\nlease = \"1d\"\n", "mailer.toml").worker.lease,
            std::chrono::hours(24));
  EXPECT_EQ(parse_config("[retry]\nmax_age = \"365d\"\n", "mailer.toml").throttle.retry.max_age,
            std::chrono::hours(24 * 365));
}

TEST(ConfigLimits, ReconnectWaitsCannotMakeABusyLoop) {
  EXPECT_EQ(config_error_of("[database]\nreconnect_min = \"0s\"\n"),
            "mailer.toml:2: key \"database.reconnect_min\": must be at least 10ms");
  EXPECT_EQ(config_error_of("[database]\nreconnect_min = \"20s\"\nreconnect_max = \"5s\"\n"),
            "mailer.toml:3: key \"database.reconnect_max\": must be at least reconnect_min (20s)");
  EXPECT_EQ(config_error_of("[database]\nreconnect_max = \"2h\"\n"),
            "mailer.toml:2: key \"database.reconnect_max\": must be at most 1h, got \"2h\"");
  const Config c =
      parse_config("[database]\nreconnect_min = \"10ms\"\nreconnect_max = \"10ms\"\n", "m.toml");
  EXPECT_EQ(c.database.reconnect_min, std::chrono::milliseconds(10));
}

TEST(ConfigLimits, LongValuesAreCutInErrors) {
  const std::string huge(1 << 20, 'x');
  const std::string e = config_error_of("[sender]\ndefault_route = \"" + huge + "\"\n");
  EXPECT_LT(e.size(), 300u) << e.substr(0, 300);
  EXPECT_EQ(e,
            "mailer.toml:2: key \"sender.default_route\": expected \"mx\", \"smtp://host:port\" "
            "or \"smtps://host:port\", got \"" +
                std::string(80, 'x') + "\u2026\" (1048576 bytes)");
  const std::string k = config_error_of("[sender]\n" + huge + " = 1\n");
  EXPECT_LT(k.size(), 300u) << k.substr(0, 300);
  EXPECT_NE(k.find("unknown key \"sender." + std::string(73, 'x') + "\u2026\""), std::string::npos)
      << k.substr(0, 300);
  // Cut on a character boundary: never half of a UTF-8 sequence.
  const std::string accents = std::string(79, 'a') + "\u00e9\u00e9\u00e9";
  EXPECT_EQ(quote_value(accents), "\"" + std::string(79, 'a') + "\u00e9\u2026\" (85 bytes)");
}

TEST(ConfigLimits, NulByteIsRefusedBeforeTheTomlParser) {
  // Found by the configuration fuzzer: a NUL in a table header tripped an
  // assertion inside the TOML parser.
  EXPECT_EQ(config_error_of(std::string("[sender]\n[\0\0]\n", 13)),
            "mailer.toml:2:2: invalid TOML: NUL byte");
  EXPECT_EQ(config_error_of(std::string("\0", 1)), "mailer.toml:1:1: invalid TOML: NUL byte");
}

TEST(ConfigLimits, TextTheTomlParserAssertsOnIsRefusedBeforeIt) {
  // Found by the configuration fuzzer: the TOML parser asserts that a key
  // follows "[" or "[[" instead of reporting it.
  EXPECT_EQ(config_error_of("[sender]\n[[/dev/zero\"\n"),
            "mailer.toml:2: invalid TOML: a table header must start with a key");
  EXPECT_EQ(config_error_of("[ /x]\n"),
            "mailer.toml:1: invalid TOML: a table header must start with a key");
  // U+021B where whitespace may be: the parser's Unicode whitespace test
  // reached an unreachable branch.
  EXPECT_EQ(config_error_of("x = 1\n\xc8\x9b/\n"),
            "mailer.toml:2: invalid TOML: a non-ASCII character outside a string or comment");
  EXPECT_EQ(parse_config("[sender] # \xc3\xa9\nhelo_name = \"\xc3\xa9\"\n", "mailer.toml")
                .sender.helo_name,
            "\xc3\xa9");
  EXPECT_EQ(config_error_of("[i\xc3\xa9]\n"),
            "mailer.toml:1: invalid TOML: a non-ASCII character outside a string or comment");
  EXPECT_EQ(config_error_of("[\"\xc3\xa9\"]\n"),
            "mailer.toml:1: invalid TOML: a non-ASCII character in a quoted key");
  EXPECT_EQ(config_error_of("[sender]\nhelo_name = \"\"\"a\\\n  \xc3\xa9\"\"\"\n"),
            "mailer.toml:3: invalid TOML: a non-ASCII character after '\\'");
  EXPECT_EQ(config_error_of("[sender]\nlanes = 4u\"\"\"\xce\x8a\n"),
            "mailer.toml:2: invalid TOML: a non-ASCII character outside a string or comment");
  EXPECT_EQ(config_error_of("[sender]\nlanes = 4u[\"\"\"\xce\x8a\n"),
            "mailer.toml:2: invalid TOML: a non-ASCII character outside a string or comment");
  EXPECT_EQ(config_error_of("[sender]\nlanes = [[ }\n"),
            "mailer.toml:2: invalid TOML: expected a value");
  EXPECT_EQ(config_error_of("[sender]\nlanes =\n"),
            "mailer.toml:2: invalid TOML: expected a value after '='");
  EXPECT_EQ(parse_config("[doctor]\nip_blocklists = [\"\xc3\xa9\", \"b\xc3\xa9\"]\n", "m.toml")
                .doctor.ip_blocklists.size(),
            2u);
  // A '[' that starts a line inside a string or an array is no header.
  const Config c = parse_config(
      "[sender]\nhelo_name = \"\"\"\n[/x\"\"\"\n[doctor]\nip_blocklists = [\n\"a\",\n]\n",
      "mailer.toml");
  EXPECT_EQ(c.sender.helo_name, "[/x");
  EXPECT_EQ(c.doctor.ip_blocklists, std::vector<std::string>{"a"});
}

TEST(ConfigLimits, MalformedDatabaseUrlIsRefusedWithoutItsPassword) {
  for (const std::string url :
       {"postgresql://u:Secret@[::1/db", "postgresql://u:Sec%zzret@localhost/db",
        "postgresql://u@localhost/db?password=Secret%zz", "host=db password='Secret",
        "host=db password=Secret hots=x", "postgresql://u:Secret@localhost/db?bogus=1"}) {
    const std::string e = config_error_of("[database]\nurl = \"" + url + "\"\n");
    EXPECT_EQ(e.rfind("mailer.toml:2: key \"database.url\": invalid database URL: ", 0), 0u) << e;
    EXPECT_EQ(e.find("Secret"), std::string::npos) << e;
    EXPECT_EQ(e.find("Sec%zz"), std::string::npos) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
  EXPECT_EQ(config_error_of("[database]\nurl = \"postgresql://u:Secret@db/mailer\"\n"),
            "(no error)");
}

TEST(ConfigLimits, RedactionCoversEveryConnectionStringShape) {
  EXPECT_EQ(db::redact_conninfo("cannot parse postgresql://u:Secret@[::1/db"),
            "cannot parse postgresql://u:***@[::1/db");
  EXPECT_EQ(db::redact_conninfo("host=db password = 'Se cret' user=u"),
            "host=db password = *** user=u");
  EXPECT_EQ(db::redact_conninfo("q?password=Secret&sslmode=require"),
            "q?password=***&sslmode=require");
  // A fragment libpq quotes alone is found through the URL it came from.
  EXPECT_EQ(db::redact_conninfo("invalid percent-encoded token: \"Sec%zzret\"",
                                "postgresql://u:Sec%zzret@h/db"),
            "invalid percent-encoded token: \"***\"");
  EXPECT_EQ(db::redact_conninfo("bad \"S ecret\"", "postgresql://u:S%20ecret@h/db"), "bad \"***\"");
  EXPECT_EQ(db::conninfo_syntax_error("postgresql://u:Secret@localhost/db"), std::nullopt);
}

TEST(ConfigLimits, BoundedReadRefusesEndlessFilesAndDirectories) {
  const auto start = steady_clock::now();
  try {
    read_bounded_file("/dev/zero", 4096);
    FAIL() << "expected an error";
  } catch (const FileReadError& e) {
    EXPECT_EQ(std::string(e.what()), "/dev/zero: larger than 4096 bytes");
  }
  EXPECT_LT(steady_clock::now() - start, std::chrono::seconds(2));

  const std::string dir = mailer::testing::make_temp_dir("bounded");
  try {
    read_bounded_file(dir, 4096);
    FAIL() << "expected an error";
  } catch (const FileReadError& e) {
    EXPECT_EQ(e.reason(), "is a directory, not a file");
  }
  mailer::testing::write_file(dir + "/big", std::string(4097, 'k'));
  EXPECT_THROW(read_bounded_file(dir + "/big", 4096), FileReadError);
  mailer::testing::write_file(dir + "/ok", std::string(4096, 'k'));
  EXPECT_EQ(read_bounded_file(dir + "/ok", 4096).size(), 4096u);
  // A FIFO nobody writes to reads as empty instead of blocking the open.
  ASSERT_EQ(::mkfifo((dir + "/fifo").c_str(), 0600), 0);
  EXPECT_EQ(read_bounded_file(dir + "/fifo", 4096), "");
  std::filesystem::remove_all(dir);
}

TEST(ConfigLimits, SecretAndKeyFilesAreBoundedAndNamed) {
  const std::string dir = mailer::testing::make_temp_dir("secrets");
  Config c = parse_config("", "mailer.toml");
  c.unsubscribe.secret_file = "/dev/zero";
  EXPECT_EQ(usage_error_of([&] { load_unsubscribe_secret(c); }),
            "mailer.toml: key \"unsubscribe.secret_file\": /dev/zero: larger than 65536 bytes");
  c.unsubscribe.secret_file = dir;
  EXPECT_EQ(
      usage_error_of([&] { load_unsubscribe_secret(c); }),
      "mailer.toml: key \"unsubscribe.secret_file\": " + dir + ": is a directory, not a file");
  mailer::testing::write_file(dir + "/short", "abc\n");
  c.unsubscribe.secret_file = dir + "/short";
  EXPECT_EQ(usage_error_of([&] { load_unsubscribe_secret(c); }),
            "mailer.toml: key \"unsubscribe.secret_file\": " + dir +
                "/short: holds 3 bytes, at least 16 needed");
  mailer::testing::write_file(dir + "/secret", "0123456789abcdef0123456789abcdef\n");
  c.unsubscribe.secret_file = dir + "/secret";
  EXPECT_EQ(load_unsubscribe_secret(c), "0123456789abcdef0123456789abcdef");

  c.dkim.push_back({"example.com", "s1", "rsa-sha256", "/dev/zero"});
  EXPECT_EQ(usage_error_of([&] { dispatcher_settings(c); }),
            "mailer.toml: key \"dkim[0].key_file\": /dev/zero: larger than 65536 bytes");
  c.dkim.clear();
  c.sender.auth_user = "relay";
  c.sender.auth_password_file = "/dev/zero";
  EXPECT_EQ(usage_error_of([&] { dispatcher_settings(c); }),
            "mailer.toml: key \"sender.auth_password_file\": /dev/zero: larger than 65536 bytes");
  std::filesystem::remove_all(dir);
}

TEST(ConfigLimits, ConfigurationThatIsADirectoryIsAnError) {
  const std::string dir = mailer::testing::make_temp_dir("confdir");
  EXPECT_EQ(usage_error_of([&] { load_config(dir); }),
            dir + ": cannot read configuration file: is a directory, not a file");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace mailer::app
