// `mailer run` sending over SMTP end to end: the real worker binary, the real
// PostgreSQL queue, and rehearsal sinks on loopback standing in for gmail,
// outlook, yahoo and everyone else. Checks what arrived at the peers against
// what the database says, the throttle's reaction to deferrals, bounces,
// DKIM signatures with an independent verifier, unsubscribe tokens, and the
// drain on SIGTERM.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "sender/dkim_signer.h"
#include "sender/unsubscribe_token.h"
#include "tests/app/queue_seed.h"
#include "tests/app/queue_worker_process.h"
#include "tests/lists/dnsmasq_server.h"
#include "tests/sender/sink_thread.h"
#include "tests/support/pg_fixture.h"
#include "tests/support/process.h"

namespace mailer::sender {
namespace {

using mailer::testing::exec_sql;
using mailer::testing::query_int;
using mailer::testing::run_mailer;
using mailer::testing::run_process;
using mailer::testing::seed_campaign;
using mailer::testing::seed_list;
using mailer::testing::SinkThread;
using mailer::testing::write_file;

constexpr const char* kSecret = "0123456789abcdef0123456789abcdef";

std::vector<std::string> maildir_messages(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  if (!std::filesystem::exists(dir / "new")) return out;
  for (const auto& e : std::filesystem::directory_iterator(dir / "new")) {
    std::ifstream in(e.path(), std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    out.push_back(s.str());
  }
  return out;
}

std::string header(const std::string& message, const std::string& name) {
  std::smatch m;
  if (std::regex_search(message, m, std::regex("\r\n" + name + ": ([^\r]*)", std::regex::icase))) {
    return m[1];
  }
  if (std::regex_search(message, m, std::regex("^" + name + ": ([^\r]*)", std::regex::icase))) {
    return m[1];
  }
  return {};
}

SinkOptions sink_options(const std::string& profile, double capacity,
                         const std::filesystem::path& maildir) {
  SinkOptions o;
  o.profile = *sink_profile(profile);
  o.capacity = capacity;
  o.maildir = maildir;
  return o;
}

class DispatchTest : public ::testing::Test {
 protected:
  DispatchTest() : dir_(mailer::testing::make_temp_dir("dispatch")) {
    write_file(dir_ + "/secret", kSecret);
  }
  ~DispatchTest() override { std::filesystem::remove_all(dir_); }

  // A configuration routing each provider to its sink; `extra` is appended.
  void configure(const std::map<std::string, std::string>& routes, const std::string& extra) {
    std::string toml =
        "[worker]\ntick = \"100ms\"\nlease = \"10s\"\nflush_interval = \"50ms\"\n"
        "claim_batch = 100\nmax_leased = 1000\n"
        "[sender]\nhelo_name = \"test.example.com\"\nhistory_interval = \"1s\"\n"
        "[unsubscribe]\nbase_url = \"https://mail.example.com\"\nsecret_file = \"" +
        dir_ + "/secret\"\n[routes]\n";
    for (const auto& [provider, route] : routes) toml += provider + " = \"" + route + "\"\n";
    write_file(dir_ + "/mailer.toml", toml + extra);
  }

  mailer::testing::ProcessResult mailer(std::vector<std::string> args,
                                        std::chrono::seconds limit = std::chrono::seconds(90)) {
    args.insert(args.begin(), {"--config", dir_ + "/mailer.toml"});
    return run_mailer(args, {{"MAILER_DATABASE_URL", t_.url()}}, "", limit);
  }

  std::int64_t start_campaign(int recipients) {
    const auto list = seed_list(t_.url(), "news", recipients);
    const auto id = seed_campaign(t_.url(), list);
    auto r = mailer({"campaign", "start", std::to_string(id)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return id;
  }

  // Deliveries not sent, with their last reply, for failure messages.
  std::string unsent() {
    pqxx::connection c(t_.url());
    pqxx::work w(c);
    std::string out;
    for (const auto& row :
         w.exec("SELECT id, provider, state, attempts, coalesce(last_reply, '') FROM deliveries"
                " WHERE state <> 'sent' ORDER BY id LIMIT 10")) {
      out += fmt::format("\n  {} {} {} attempts {} {}", row[0].as<std::int64_t>(),
                         row[1].as<std::string>(), row[2].as<std::string>(), row[3].as<int>(),
                         row[4].as<std::string>());
    }
    return out;
  }

  std::int64_t count(const std::string& where) {
    return query_int(t_.url(), "SELECT count(*) FROM deliveries WHERE " + where);
  }

  mailer::testing::TestDatabase t_{"dispatch"};
  std::string dir_;
};

TEST_F(DispatchTest, DeliversEveryRecipientOnceWithSignedUnsubscribableMessages) {
  const std::filesystem::path maildir = dir_ + "/maildir";
  SinkThread gmail(sink_options("gmail", 0, maildir));
  SinkThread outlook(sink_options("outlook", 0, maildir));
  SinkThread yahoo(sink_options("yahoo", 0, maildir));
  SinkThread other(sink_options("generic", 0, maildir));
  ASSERT_EQ(run_process({"/usr/bin/openssl", "genpkey", "-algorithm", "ed25519", "-out",
                         dir_ + "/dkim.pem"})
                .exit_code,
            0);
  configure({{"gmail", gmail.route()},
             {"outlook", outlook.route()},
             {"yahoo", yahoo.route()},
             {"other", other.route()}},
            "[[dkim]]\ndomain = \"example.com\"\nselector = \"s1\"\nalgorithm = "
            "\"ed25519-sha256\"\nkey_file = \"" +
                dir_ + "/dkim.pem\"\n");
  const int n = 200;
  const auto campaign = start_campaign(n);

  auto run =
      mailer({"run", "--worker-id", "w1", "--until-idle", "--json"}, std::chrono::seconds(30));
  ASSERT_EQ(run.exit_code, 0) << run.err << unsent();

  // The database and the peers agree: everyone sent once.
  EXPECT_EQ(count("state = 'sent'"), n);
  EXPECT_EQ(gmail.counters().accepted + outlook.counters().accepted + yahoo.counters().accepted +
                other.counters().accepted,
            static_cast<std::uint64_t>(n));
  EXPECT_EQ(gmail.counters().accepted, static_cast<std::uint64_t>(n / 4));
  const auto messages = maildir_messages(maildir);
  ASSERT_EQ(messages.size(), static_cast<std::size_t>(n));
  std::set<std::string> recipients;
  for (const auto& m : messages) recipients.insert(header(m, "To"));
  EXPECT_EQ(recipients.size(), static_cast<std::size_t>(n));

  // Each message carries a one-click unsubscribe URL whose token names its
  // own delivery, and merge fields were rendered.
  const UnsubscribeTokenCodec codec(kSecret);
  int verified = 0;
  for (const auto& m : messages) {
    std::smatch u;
    const std::string lu = header(m, "List-Unsubscribe");
    ASSERT_TRUE(
        std::regex_search(lu, u, std::regex("https://mail\\.example\\.com/u/([A-Za-z0-9_-]+)")))
        << lu;
    const auto identity = codec.Verify(u[1].str());
    ASSERT_TRUE(identity.has_value());
    EXPECT_EQ(identity->campaign_id, campaign);
    const std::string to = header(m, "To");
    const auto email = query_int(
        t_.url(),
        "SELECT count(*) FROM deliveries d JOIN recipients r ON r.id = d.recipient_id"
        " WHERE d.id = " +
            std::to_string(identity->delivery_id) + " AND position(r.email in '" + to + "') > 0");
    EXPECT_EQ(email, 1) << to;
    EXPECT_EQ(header(m, "List-Unsubscribe-Post"), "List-Unsubscribe=One-Click");
    EXPECT_NE(m.find("Hi Reader "), std::string::npos);
    // Signed on a signing thread, each message still carries its signature.
    EXPECT_NE(m.find("DKIM-Signature: "), std::string::npos) << m.substr(0, 200);
    ++verified;
  }
  EXPECT_EQ(verified, n);

  // The first and last messages verify with python3-dkim against the key's
  // public record.
  const DkimSigner key = DkimSigner::FromPemFile("example.com", "s1", DkimAlgorithm::kEd25519Sha256,
                                                 dir_ + "/dkim.pem");
  for (const std::string* m : {&messages.front(), &messages.back()}) {
    write_file(dir_ + "/one.eml", *m);
    auto verify = run_process({"/usr/bin/python3",
                               std::string(MAILER_SOURCE_DIR) + "/tests/sender/dkim_verify.py",
                               dir_ + "/one.eml", key.RecordName() + "=" + key.PublicKeyRecord()});
    EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
  }

  // The throttle's state, history and counters were kept.
  EXPECT_EQ(query_int(t_.url(), "SELECT count(*) FROM throttle_state"), 4);
  EXPECT_GE(query_int(t_.url(), "SELECT count(*) FROM throttle_history"), 4);
  EXPECT_EQ(
      query_int(t_.url(),
                "SELECT coalesce(sum(count), 0) FROM reply_counters WHERE signal = 'accepted'"),
      n);
}

TEST_F(DispatchTest, ThrottledProviderSlowsDownAndEveryoneStillArrives) {
  const std::filesystem::path maildir = dir_ + "/maildir";
  // Gmail takes 15 messages/s; the others have no limit.
  SinkThread gmail(sink_options("gmail", 15, maildir));
  SinkThread rest(sink_options("generic", 0, maildir));
  configure({{"gmail", gmail.route()},
             {"outlook", rest.route()},
             {"yahoo", rest.route()},
             {"other", rest.route()}},
            "[providers.gmail]\ninitial_rate = 60\nmax_rate = 200\n"
            "[retry]\nmin_backoff = \"1s\"\nmax_backoff = \"2s\"\n");
  const int n = 600;  // 150 per provider
  start_campaign(n);
  auto run = mailer({"run", "--worker-id", "w1", "--until-idle"}, std::chrono::seconds(120));
  ASSERT_EQ(run.exit_code, 0) << run.err;

  EXPECT_EQ(count("state = 'sent'"), n);
  const SinkCounters g = gmail.counters();
  EXPECT_EQ(g.accepted, static_cast<std::uint64_t>(n / 4));
  ASSERT_GT(g.deferred.at("capacity"), 0u) << "the sink never deferred: the test proves nothing";
  // Deferred deliveries were retried (attempts > 1) and none was lost.
  EXPECT_GT(count("provider = 'gmail' AND attempts > 1"), 0);
  EXPECT_EQ(count("provider <> 'gmail' AND attempts > 1"), 0) << unsent();
  // The controller cut gmail's rate below where it started and remembered why.
  pqxx::connection c(t_.url());
  pqxx::work w(c);
  auto row = w.exec1(
      "SELECT rate, coalesce(last_throttle_reply, '') FROM throttle_state WHERE provider = "
      "'gmail'");
  EXPECT_LT(row[0].as<double>(), 60.0);
  EXPECT_NE(row[1].as<std::string>().find("421"), std::string::npos) << row[1].as<std::string>();
  EXPECT_GT(w.exec1("SELECT coalesce(sum(count), 0) FROM reply_counters WHERE provider = 'gmail'"
                    " AND signal = 'throttle'")[0]
                .as<std::int64_t>(),
            0);
}

TEST_F(DispatchTest, UnknownRecipientBouncesAndIsSuppressed) {
  SinkOptions o = sink_options("generic", 0, dir_ + "/maildir");
  o.fail_rcpt_matching = std::regex("news-(7|8)@");
  SinkThread sink(std::move(o));
  configure({{"gmail", sink.route()},
             {"outlook", sink.route()},
             {"yahoo", sink.route()},
             {"other", sink.route()}},
            "");
  start_campaign(12);
  auto run = mailer({"run", "--worker-id", "w1", "--until-idle"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(count("state = 'bounced'"), 2);
  EXPECT_EQ(count("state = 'sent'"), 10);
  EXPECT_EQ(
      query_int(t_.url(),
                "SELECT count(*) FROM suppressions WHERE reason = 'hard_bounce' AND email_key "
                "IN ('news-7@example.org', 'news-8@gmail.com')"),
      2)
      << unsent();
  EXPECT_EQ(query_int(t_.url(),
                      "SELECT count(*) FROM deliveries WHERE state = 'bounced' AND "
                      "last_reply LIKE '550%'"),
            2);
}

// Connections come from the throttle's connection limit and carry many
// messages each: 200 messages to four providers allowed 3 connections each
// open at most 12 connections, several messages in flight per provider.
TEST_F(DispatchTest, ConnectionsPerProviderFollowTheLimitAndAreReused) {
  SinkOptions o = sink_options("generic", 0, dir_ + "/maildir");
  o.latency = std::chrono::milliseconds(50);
  SinkThread sink(std::move(o));
  std::string limits;
  for (const char* p : {"gmail", "outlook", "yahoo", "other"}) {
    limits += fmt::format("[providers.{}]\ninitial_rate = 200\nmax_connections = 3\n", p);
  }
  configure({{"gmail", sink.route()},
             {"outlook", sink.route()},
             {"yahoo", sink.route()},
             {"other", sink.route()}},
            limits);
  const int n = 200;
  start_campaign(n);
  const auto began = std::chrono::steady_clock::now();
  auto run = mailer({"run", "--worker-id", "w1", "--until-idle"}, std::chrono::seconds(120));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
  EXPECT_EQ(count("state = 'sent'"), n) << unsent();
  const SinkCounters c = sink.counters();
  EXPECT_EQ(c.accepted, static_cast<std::uint64_t>(n));
  EXPECT_GE(c.connections, 4u);
  EXPECT_LE(c.connections, 12u) << "connections were not reused or exceeded the limit";
  // One connection at a time per provider would need 50 x 50 ms = 2.5 s of
  // end-of-DATA replies alone; three in flight need a third of that.
  EXPECT_LT(took, 30.0);
}

// MX delivery: each domain's preferred mail host has two addresses where
// nothing listens (connection refused); the message moves on to every
// address and then to the next host within the same attempt, and is sent
// there the first time.
TEST_F(DispatchTest, MxDeliveryMovesPastRefusingHostsWithinOneAttempt) {
  SinkThread sink(sink_options("generic", 0, dir_ + "/maildir"));
  std::vector<std::string> records = {"--host-record=dead.mx.test,127.0.0.2",
                                      "--host-record=dead2.mx.test,127.0.0.3",
                                      "--host-record=live.mx.test,127.0.0.1"};
  for (const char* domain : {"gmail.com", "outlook.com", "yahoo.com", "example.org"}) {
    records.push_back(fmt::format("--mx-host={},dead.mx.test,10", domain));
    records.push_back(fmt::format("--mx-host={},dead2.mx.test,10", domain));
    records.push_back(fmt::format("--mx-host={},live.mx.test,20", domain));
  }
  mailer::lists::DnsmasqServer dns(records);
  configure({}, fmt::format("[sender]\ndefault_route = \"mx\"\ndns_server = \"{}\"\nmx_port = {}\n",
                            dns.address(), sink.port()));
  // configure() wrote [sender] already: fold the two tables into one.
  std::ifstream in(dir_ + "/mailer.toml");
  std::stringstream text;
  text << in.rdbuf();
  std::string toml = text.str();
  const auto second = toml.rfind("[sender]\n");
  std::string extra = toml.substr(second + 9);
  toml = toml.substr(0, second);
  toml.replace(toml.find("[sender]\n") + 9, 0, extra);
  write_file(dir_ + "/mailer.toml", toml);

  const int n = 40;
  start_campaign(n);
  auto run = mailer({"run", "--worker-id", "w1", "--until-idle"}, std::chrono::seconds(90));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(count("state = 'sent' AND attempts <= 1"), n) << unsent() << run.err;
  EXPECT_EQ(sink.counters().accepted, static_cast<std::uint64_t>(n));
  // Each refusal is logged with its host.
  EXPECT_NE(run.err.find("dead.mx.test"), std::string::npos) << run.err;
}

// Draining, not abandoning: the sink counts a message accepted when its data
// ends and answers 250 a second later. The signal goes out as soon as the
// count reaches 5, so at least that fifth message is still waiting for its
// 250: a worker that drained records it sent; one that dropped its
// connections would leave it queued although the sink has it.
TEST_F(DispatchTest, SigtermDrainsInFlightSendsAndReleasesTheRest) {
  SinkOptions o = sink_options("generic", 0, dir_ + "/maildir");
  o.latency = std::chrono::milliseconds(1000);
  SinkThread sink(std::move(o));
  configure({{"gmail", sink.route()},
             {"outlook", sink.route()},
             {"yahoo", sink.route()},
             {"other", sink.route()}},
            "");
  start_campaign(400);
  mailer::testing::WorkerProcess w({"--config", dir_ + "/mailer.toml", "run", "--worker-id", "w1"},
                                   {{"MAILER_DATABASE_URL", t_.url()}}, dir_ + "/out",
                                   dir_ + "/err");
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (sink.counters().accepted < 5 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const std::uint64_t accepted_at_signal = sink.counters().accepted;
  ASSERT_GE(accepted_at_signal, 5u);
  w.signal(SIGTERM);
  EXPECT_EQ(w.wait(std::chrono::seconds(30)), 0);
  EXPECT_NE(w.err().find("stopped: drained"), std::string::npos) << w.err();
  // Every message the sink had at the signal, the unanswered ones included,
  // is sent; what the peer accepted is exactly what is sent; nothing is left
  // leased and the rest is queued again.
  EXPECT_GE(count("state = 'sent'"), static_cast<std::int64_t>(accepted_at_signal));
  EXPECT_EQ(count("state = 'sent'"), static_cast<std::int64_t>(sink.counters().accepted));
  EXPECT_EQ(count("lease_owner IS NOT NULL"), 0);
  EXPECT_LT(count("state = 'sent'"), 400);
  EXPECT_EQ(count("state = 'queued'") + count("state = 'sent'"), 400);
}

}  // namespace
}  // namespace mailer::sender
