// Configuration: defaults, lookup order, environment override, and the exact
// error messages for bad configuration.
#include "app/config/config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "app/base/errors.h"
#include "tests/support/config_error.h"
#include "tests/support/process.h"

namespace mailer::app {
namespace {

using mailer::testing::config_error_of;

TEST(Config, EmptyFileGivesDocumentedDefaults) {
  Config c = parse_config("", "mailer.toml");
  EXPECT_EQ(c.sender.egress, "default");
  EXPECT_EQ(c.sender.default_route, "mx");
  EXPECT_EQ(c.http.listen, "127.0.0.1:8080");
  ASSERT_EQ(c.throttle.providers.count("gmail"), 1u);
  EXPECT_DOUBLE_EQ(c.throttle.providers.at("gmail").initial_rate, 20);
  EXPECT_EQ(c.throttle.providers.at("yahoo").suspend_for, std::chrono::hours(2));
  EXPECT_EQ(c.throttle.retry.min_backoff, std::chrono::minutes(5));
  EXPECT_EQ(c.throttle.retry.max_age, std::chrono::hours(72));
  EXPECT_TRUE(c.dkim.empty());
}

TEST(Config, ReadsEveryDocumentedSection) {
  Config c = parse_config(R"(
[database]
url = "postgresql://mailer@db.internal/mailer"
[sender]
helo_name = "mailer.example.com"
egress = "ip-1"
default_route = "smtp://127.0.0.1:2604"
[routes]
gmail = "smtp://127.0.0.1:2601"
yahoo = "smtps://127.0.0.1:2602"
[providers.gmail]
initial_rate = 30
min_rate = 2
max_rate = 500
max_connections = 8
suspend_for = "90m"
[retry]
min_backoff = "1m"
max_backoff = "2h"
max_age = "1d"
[[dkim]]
domain = "example.com"
selector = "s1"
key_file = "/etc/mailer/rsa.pem"
[[dkim]]
domain = "example.com"
selector = "s2"
algorithm = "ed25519-sha256"
key_file = "/etc/mailer/ed.pem"
[unsubscribe]
base_url = "https://mail.example.com"
mailto = "unsubscribe@example.com"
secret_file = "/etc/mailer/unsubscribe.key"
[http]
listen = "0.0.0.0:9000"
)",
                          "mailer.toml");
  EXPECT_EQ(c.database.url, "postgresql://mailer@db.internal/mailer");
  EXPECT_EQ(c.sender.egress, "ip-1");
  EXPECT_EQ(c.routes.at("yahoo"), "smtps://127.0.0.1:2602");
  EXPECT_EQ(c.throttle.providers.at("gmail").max_connections, 8);
  EXPECT_EQ(c.throttle.providers.at("gmail").suspend_for, std::chrono::minutes(90));
  EXPECT_DOUBLE_EQ(c.throttle.providers.at("outlook").max_rate, 2000);
  EXPECT_EQ(c.throttle.retry.max_age, std::chrono::hours(24));
  ASSERT_EQ(c.dkim.size(), 2u);
  EXPECT_EQ(c.dkim[1].algorithm, "ed25519-sha256");
  EXPECT_EQ(c.unsubscribe.mailto, "unsubscribe@example.com");
  EXPECT_EQ(c.http.listen, "0.0.0.0:9000");
}

TEST(Config, UnknownKeyIsAnErrorNamingFileLineAndKey) {
  EXPECT_EQ(config_error_of("[sender]\nhelo_name = \"a\"\nhelo = \"b\"\n"),
            "mailer.toml:3: unknown key \"sender.helo\"");
  EXPECT_EQ(config_error_of("[sendr]\nx = 1\n"), "mailer.toml:1: unknown key \"sendr\"");
}

TEST(Config, WrongTypeNamesExpectedType) {
  EXPECT_EQ(config_error_of("[providers.gmail]\nmax_rate = \"fast\"\n"),
            "mailer.toml:2: key \"providers.gmail.max_rate\": expected a number, got a string");
  EXPECT_EQ(config_error_of("[providers.yahoo]\nmax_connections = 2.5\n"),
            "mailer.toml:2: key \"providers.yahoo.max_connections\": expected an integer, got a "
            "number");
}

TEST(Config, BadDurationNamesTheAcceptedForms) {
  EXPECT_EQ(config_error_of("[retry]\nmax_age = \"3 days\"\n"),
            "mailer.toml:2: key \"retry.max_age\": expected a duration like \"500ms\", \"30s\", "
            "\"5m\", \"4h\", \"3d\", got \"3 days\"");
  EXPECT_EQ(config_error_of("[retry]\nmin_backoff = 300\n"),
            "mailer.toml:2: key \"retry.min_backoff\": expected a duration string like \"30s\", "
            "\"5m\", \"4h\", got an integer");
}

TEST(Config, InconsistentValuesAreRejected) {
  EXPECT_EQ(config_error_of("[providers.gmail]\nmin_rate = 10\nmax_rate = 5\n"),
            "mailer.toml:3: key \"providers.gmail.max_rate\": must be >= min_rate (10)");
  EXPECT_EQ(config_error_of("[providers.hotmail]\n"),
            "mailer.toml:1: key \"providers.hotmail\": unknown provider (expected gmail, outlook, "
            "yahoo or other)");
  EXPECT_EQ(config_error_of("[sender]\ndefault_route = \"127.0.0.1:25\"\n"),
            "mailer.toml:2: key \"sender.default_route\": expected \"mx\", \"smtp://host:port\" or "
            "\"smtps://host:port\", got \"127.0.0.1:25\"");
  EXPECT_EQ(config_error_of("[[dkim]]\ndomain = \"example.com\"\nselector = \"s\"\n"),
            "mailer.toml:1: key \"dkim[0].key_file\": is required");
  EXPECT_EQ(config_error_of(
                "[[dkim]]\ndomain=\"d\"\nselector=\"s\"\nkey_file=\"k\"\nalgorithm=\"rsa\"\n"),
            "mailer.toml:5: key \"dkim[0].algorithm\": expected one of rsa-sha256, ed25519-sha256, "
            "got \"rsa\"");
}

TEST(Config, SourceAddressIsAnIpLiteral) {
  EXPECT_EQ(parse_config("", "mailer.toml").sender.source_address, "");
  EXPECT_EQ(parse_config("[sender]\nsource_address = \"192.0.2.10\"\n", "mailer.toml")
                .sender.source_address,
            "192.0.2.10");
  EXPECT_EQ(parse_config("[sender]\nsource_address = \"2001:db8::25\"\n", "mailer.toml")
                .sender.source_address,
            "2001:db8::25");
  EXPECT_EQ(config_error_of("[sender]\nsource_address = \"eth0\"\n"),
            "mailer.toml:2: key \"sender.source_address\": expected an IPv4 or IPv6 address, got "
            "\"eth0\"");
  EXPECT_EQ(config_error_of("[sender]\nsource_address = \"10.0.0.1\\r\\nX: y\"\n"),
            "mailer.toml:2: key \"sender.source_address\": expected an IPv4 or IPv6 address, got "
            "\"10.0.0.1\\x0d\\x0aX: y\"");
}

TEST(Config, SenderSessionAndIdentityKeys) {
  const Config c = parse_config(
      "[sender]\nstarttls = \"required\"\nverify_certificates = false\nauth_user = \"relay\"\n"
      "auth_password_file = \"/run/pw\"\nverp_domain = \"bounces.example.com\"\n"
      "feedback_id = \"acme\"\nmessage_id_domain = \"mail.example.com\"\n"
      "reply_timeout = \"20s\"\nmessages_per_connection = 50\nidle_timeout = \"30s\"\nmx_port = "
      "2525\ndns_server = \"127.0.0.1:5353\"\n"
      "[doctor]\nip_blocklists = [\"bl.example.net\"]\ndomain_blocklists = []\n",
      "mailer.toml");
  EXPECT_EQ(c.sender.starttls, "required");
  EXPECT_FALSE(c.sender.verify_certificates);
  EXPECT_EQ(c.sender.auth_user, "relay");
  EXPECT_EQ(c.sender.auth_password_file, "/run/pw");
  EXPECT_EQ(c.sender.verp_domain, "bounces.example.com");
  EXPECT_EQ(c.sender.feedback_id, "acme");
  EXPECT_EQ(c.sender.message_id_domain, "mail.example.com");
  EXPECT_EQ(c.sender.reply_timeout, std::chrono::seconds(20));
  EXPECT_EQ(c.sender.messages_per_connection, 50);
  EXPECT_EQ(c.sender.idle_timeout, std::chrono::seconds(30));
  EXPECT_EQ(c.sender.mx_port, 2525);
  EXPECT_EQ(c.sender.dns_server, "127.0.0.1:5353");
  EXPECT_EQ(c.doctor.ip_blocklists, std::vector<std::string>{"bl.example.net"});
  EXPECT_TRUE(c.doctor.domain_blocklists.empty());
  const Config d = parse_config("", "mailer.toml");
  EXPECT_EQ(d.sender.starttls, "opportunistic");
  EXPECT_TRUE(d.sender.verify_certificates);
  EXPECT_EQ(d.sender.mx_port, 25);
  EXPECT_FALSE(d.doctor.ip_blocklists.empty());

  EXPECT_EQ(
      config_error_of("[sender]\nstarttls = \"maybe\"\n"),
      "mailer.toml:2: key \"sender.starttls\": expected one of opportunistic, required, none, "
      "got \"maybe\"");
  EXPECT_EQ(config_error_of("[sender]\nverp_domain = \"a@b\"\n"),
            "mailer.toml:2: key \"sender.verp_domain\": expected a domain name, got \"a@b\"");
  // The key of the thread-per-lane sender is refused with the reason.
  EXPECT_EQ(config_error_of("[sender]\nlanes = 4\n"),
            "mailer.toml:2: key \"sender.lanes\": is gone: sending no longer uses threads; every "
            "connection is a state machine on one event loop, and the connections per provider "
            "come from the throttle's connection limit ([providers.*] max_connections); remove "
            "the key");
  EXPECT_EQ(config_error_of("[sender]\nmessages_per_connection = 0\n"),
            "mailer.toml:2: key \"sender.messages_per_connection\": must be at least 1, got 0");
  EXPECT_EQ(config_error_of("[sender]\nreply_timeout = \"10ms\"\n"),
            "mailer.toml:2: key \"sender.reply_timeout\": must be at least 1s");
  EXPECT_EQ(
      config_error_of("[doctor]\nip_blocklists = \"zen.spamhaus.org\"\n"),
      "mailer.toml:2: key \"doctor.ip_blocklists\": expected an array of strings, got a string");
  EXPECT_EQ(config_error_of("[doctor]\nip_blocklists = [1]\n"),
            "mailer.toml:2: key \"doctor.ip_blocklists\": expected an array of strings, found an "
            "integer in it");
}

TEST(Config, InvalidTomlReportsLineAndColumn) {
  const std::string e = config_error_of("[sender\n");
  EXPECT_EQ(e.rfind("mailer.toml:1:", 0), 0u) << e;
  EXPECT_NE(e.find("invalid TOML"), std::string::npos) << e;
}

class ConfigLookup : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = mailer::testing::make_temp_dir("config");
    old_cwd_ = std::filesystem::current_path();
    std::filesystem::current_path(dir_);
    unsetenv("MAILER_CONFIG");
    unsetenv("MAILER_DATABASE_URL");
  }
  void TearDown() override {
    std::filesystem::current_path(old_cwd_);
    std::filesystem::remove_all(dir_);
    unsetenv("MAILER_CONFIG");
    unsetenv("MAILER_DATABASE_URL");
  }
  std::string dir_;
  std::filesystem::path old_cwd_;
};

TEST_F(ConfigLookup, FollowsExplicitThenEnvironmentThenWorkingDirectory) {
  mailer::testing::write_file("mailer.toml", "[sender]\negress = \"cwd\"\n");
  mailer::testing::write_file("env.toml", "[sender]\negress = \"env\"\n");
  mailer::testing::write_file("explicit.toml", "[sender]\negress = \"explicit\"\n");
  EXPECT_EQ(load_config("").sender.egress, "cwd");
  setenv("MAILER_CONFIG", "env.toml", 1);
  EXPECT_EQ(load_config("").sender.egress, "env");
  EXPECT_EQ(load_config("explicit.toml").sender.egress, "explicit");
  std::filesystem::remove("mailer.toml");
  unsetenv("MAILER_CONFIG");
  EXPECT_EQ(load_config("").source, "(built-in defaults)");
}

TEST_F(ConfigLookup, DatabaseUrlFromEnvironmentOverridesFile) {
  mailer::testing::write_file("mailer.toml", "[database]\nurl = \"postgresql://file/db\"\n");
  EXPECT_EQ(load_config("").database.url, "postgresql://file/db");
  setenv("MAILER_DATABASE_URL", "postgresql://env/db", 1);
  EXPECT_EQ(load_config("").database.url, "postgresql://env/db");
}

TEST_F(ConfigLookup, MissingExplicitFileIsAUsageError) {
  try {
    load_config("nope.toml");
    FAIL() << "expected an error";
  } catch (const UsageError& e) {
    EXPECT_EQ(std::string(e.what()),
              "nope.toml: cannot read configuration file: No such file or directory");
  }
}

}  // namespace
}  // namespace mailer::app

namespace mailer::app {
namespace {

std::string shipped_example() {
  const std::string path = std::string(MAILER_SOURCE_DIR) + "/deploy/mailer.example.toml";
  std::ifstream in(path);
  EXPECT_TRUE(in) << path;
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The example's commented-out tables ("# [[reply_rule]]" and the lines up to
// the next blank line) made live, as a user who copies them would.
std::string with_commented_tables_enabled(const std::string& text) {
  std::istringstream in(text);
  std::string out, line;
  bool live = false;
  while (std::getline(in, line)) {
    if (line.rfind("# [", 0) == 0) live = true;
    if (line.empty() || line.rfind("# ", 0) != 0) live = false;
    out += (live ? line.substr(2) : line) + "\n";
  }
  return out;
}

// The shipped example documents every key; it must stay valid, and the values
// it says are the defaults must be the defaults.
TEST(Config, ShippedExampleParses) {
  Config c = parse_config(shipped_example(), "mailer.example.toml");
  EXPECT_EQ(c.dkim.size(), 1u);
  EXPECT_EQ(c.sender.default_route, "mx");
  const throttle::ProviderPolicy defaults;
  const throttle::ProviderPolicy& gmail = c.throttle.providers.at("gmail");
  EXPECT_DOUBLE_EQ(gmail.increase_step, defaults.increase_step);
  EXPECT_DOUBLE_EQ(gmail.decrease_factor, defaults.decrease_factor);
  EXPECT_EQ(gmail.reaction_window, defaults.reaction_window);
  EXPECT_DOUBLE_EQ(gmail.slow_start_growth, defaults.slow_start_growth);
  EXPECT_DOUBLE_EQ(gmail.slow_start_threshold, defaults.slow_start_threshold);
  EXPECT_DOUBLE_EQ(gmail.restart_factor, defaults.restart_factor);
  EXPECT_EQ(gmail.auth_pause, defaults.auth_pause);
  EXPECT_EQ(gmail.block_pause, defaults.block_pause);
  EXPECT_EQ(gmail.connection_recovery, defaults.connection_recovery);
  EXPECT_DOUBLE_EQ(gmail.burst, defaults.burst);
  const throttle::RetryPolicy retry_defaults;
  EXPECT_DOUBLE_EQ(c.throttle.retry.multiplier, retry_defaults.multiplier);
  EXPECT_DOUBLE_EQ(c.throttle.retry.jitter, retry_defaults.jitter);
  EXPECT_TRUE(c.throttle.reply_rules.empty());
  EXPECT_TRUE(c.throttle.provider_rules.empty());
  const BouncesSettings bounces;
  EXPECT_EQ(c.bounces.poll_every, bounces.poll_every);
  EXPECT_EQ(c.bounces.soft_limit, bounces.soft_limit);
  EXPECT_EQ(c.bounces.soft_window, bounces.soft_window);
  EXPECT_EQ(c.bounces.max_message_bytes, bounces.max_message_bytes);
  EXPECT_EQ(c.bounces.imap_not_report_folder, bounces.imap_not_report_folder);
  EXPECT_EQ(c.database.reconnect_for, DatabaseSettings{}.reconnect_for);
  const GuardSettings guard;
  EXPECT_EQ(c.guard.min_sent, guard.min_sent);
  EXPECT_DOUBLE_EQ(c.guard.max_complaint_rate, guard.max_complaint_rate);
  EXPECT_DOUBLE_EQ(c.guard.max_bounce_rate, guard.max_bounce_rate);
}

TEST(Config, BouncesAndGuardAreValidated) {
  EXPECT_THROW(parse_config("[bounces]\nsoft_limit = 0\n", "m.toml"), UsageError);
  EXPECT_THROW(parse_config("[bounces]\nimap_url = \"http://x\"\n", "m.toml"), UsageError);
  EXPECT_THROW(parse_config("[guard]\nmax_complaint_rate = 1.5\n", "m.toml"), UsageError);
  EXPECT_THROW(parse_config("[guard]\nmin_sent = -1\n", "m.toml"), UsageError);
  Config c = parse_config("[bounces]\nsoft_limit = 5\nsoft_window = \"7d\"\n", "m.toml");
  EXPECT_EQ(c.bounces.soft_limit, 5);
  EXPECT_EQ(c.bounces.soft_window, std::chrono::hours(24 * 7));
}

TEST(Config, InboundIsValidatedAndTheExampleStatesItsDefaults) {
  const InboundSettings defaults;
  const Config example = parse_config(shipped_example(), "mailer.example.toml");
  EXPECT_EQ(example.inbound.listen, defaults.listen);
  EXPECT_EQ(example.inbound.max_message_size, defaults.max_message_size);
  EXPECT_EQ(example.inbound.max_connections, defaults.max_connections);
  EXPECT_EQ(example.inbound.command_timeout, defaults.command_timeout);
  EXPECT_EQ(example.inbound.data_timeout, defaults.data_timeout);
  EXPECT_EQ(example.inbound.drain_timeout, defaults.drain_timeout);
  EXPECT_TRUE(example.inbound.domains.empty());
  EXPECT_THROW(parse_config("[inbound]\ntls_cert_file = \"c.pem\"\n", "m.toml"), UsageError);
  EXPECT_THROW(parse_config("[inbound]\ndomains = [\"a@b\"]\n", "m.toml"), UsageError);
  EXPECT_THROW(parse_config("[inbound]\nlisten = \"25\"\n", "m.toml"), UsageError);
  EXPECT_THROW(parse_config("[inbound]\ncommand_timeout = \"0s\"\n", "m.toml"), UsageError);
  EXPECT_THROW(parse_config("[inbound]\nmax_connections = 0\n", "m.toml"), UsageError);
  EXPECT_THROW(parse_config("[inbound]\nbogus = 1\n", "m.toml"), UsageError);
  const Config c = parse_config(
      "[inbound]\ndomains = [\"bounces.example.com\", \"fbl.example.com\"]\n"
      "max_message_size = 65536\ndata_timeout = \"90s\"\n",
      "m.toml");
  EXPECT_EQ(c.inbound.domains,
            (std::vector<std::string>{"bounces.example.com", "fbl.example.com"}));
  EXPECT_EQ(c.inbound.max_message_size, 65536);
  EXPECT_EQ(c.inbound.data_timeout, std::chrono::seconds(90));
}

TEST(Config, ImapSettingsAndReconnectForAreReadAndAQuotedFolderNameIsRefused) {
  Config c = parse_config(
      "[database]\nreconnect_for = \"0s\"\n[bounces]\nimap_ca_file = \"/etc/ca.pem\"\n"
      "imap_not_report_folder = \"Junk/bounces\"\n",
      "m.toml");
  EXPECT_EQ(c.database.reconnect_for, Duration::zero());
  EXPECT_EQ(c.bounces.imap_ca_file, "/etc/ca.pem");
  EXPECT_EQ(c.bounces.imap_not_report_folder, "Junk/bounces");
  EXPECT_EQ(Config{}.bounces.imap_not_report_folder, "mailer-not-reports");
  const std::string e = config_error_of("[bounces]\nimap_not_report_folder = 'a\"b'\n");
  EXPECT_NE(e.find("mailer.toml:2"), std::string::npos) << e;
  EXPECT_NE(e.find("imap_not_report_folder"), std::string::npos) << e;
}

TEST(Config, ShippedExampleCommentedTablesParse) {
  Config c = parse_config(with_commented_tables_enabled(shipped_example()), "example.toml");
  ASSERT_EQ(c.throttle.provider_rules.size(), 1u);
  EXPECT_EQ(c.throttle.provider_rules[0].provider, "corp");
  EXPECT_EQ(c.throttle.providers.count("corp"), 1u);
  ASSERT_EQ(c.throttle.reply_rules.size(), 2u);
  EXPECT_EQ(c.throttle.reply_rules[1].signal, throttle::Signal::kSuspend);
  EXPECT_EQ(c.throttle.reply_rules[1].suspend_for, std::chrono::hours(1));
  ASSERT_EQ(c.throttle.retry_by_signal.count(throttle::Signal::kRecipientTempfail), 1u);
  EXPECT_EQ(c.throttle.retry_by_signal.at(throttle::Signal::kRecipientTempfail).min_backoff,
            std::chrono::minutes(30));
}

}  // namespace
}  // namespace mailer::app
