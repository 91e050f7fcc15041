// `mailer run` on its default route, `default_route = "mx"`, end to end: the
// real worker binary and PostgreSQL queue, dnsmasq on loopback serving the MX
// records ([sender] dns_server), and rehearsal sinks listening on the MX hosts'
// port ([sender] mx_port). Covers a plain MX delivery, the fallback to a host
// of lower preference within one attempt, null MX and NXDOMAIN as hard
// bounces, an unanswering DNS server as a deferral, and Google Workspace and
// Microsoft 365 customer domains sent under the gmail and outlook throttles.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "tests/lists/dnsmasq_server.h"
#include "tests/sender/dispatch_fixture.h"
#include "tests/sender/sink_thread.h"

namespace mailer::sender {
namespace {

using mailer::lists::DnsmasqServer;
using mailer::testing::SinkThread;

// Message files in a maildir's new/.
std::size_t maildir_count(const std::filesystem::path& dir) {
  if (!std::filesystem::exists(dir / "new")) return 0;
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir / "new")) ++n;
  return n;
}

// Lines of `log` that contain `needle`.
std::size_t lines_with(const std::string& log, const std::string& needle) {
  std::size_t n = 0;
  for (std::size_t at = 0; (at = log.find(needle, at)) != std::string::npos; at += needle.size()) {
    ++n;
  }
  return n;
}

// A UDP socket on loopback that receives DNS questions and never answers.
class SilentDnsServer {
 public:
  SilentDnsServer() {
    fd_ = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      throw std::runtime_error("SilentDnsServer: cannot bind a UDP socket");
    }
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~SilentDnsServer() { ::close(fd_); }
  SilentDnsServer(const SilentDnsServer&) = delete;
  SilentDnsServer& operator=(const SilentDnsServer&) = delete;
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// The zone of these tests. Everything under .test that is not listed is
// NXDOMAIN. The sinks listen on 127.0.0.1 only, so 127.0.0.2 refuses.
std::vector<std::string> mx_route_zone() {
  return {"--local=/test/",
          // One mail host.
          "--mx-host=good.test,mail.good.test,10", "--host-record=mail.good.test,127.0.0.1",
          // The preferred host refuses connections, the next one accepts.
          "--mx-host=pref.test,mx1.pref.test,10", "--mx-host=pref.test,mx2.pref.test,20",
          "--host-record=mx1.pref.test,127.0.0.2", "--host-record=mx2.pref.test,127.0.0.1",
          // One mail host with two addresses, the first one answered
          // refusing: dnsmasq answers the last of these records first, so
          // 127.0.0.2, then 127.0.0.1. (With only the first address tried,
          // the test below fails.)
          "--mx-host=multi.test,mx.multi.test,10", "--dns-rr=mx.multi.test,1,7f000001",
          "--dns-rr=mx.multi.test,1,7f000002",
          // The preferred host defers (see the test); the next one, on
          // 127.0.0.3, would accept.
          "--mx-host=defer.test,mx1.defer.test,10", "--mx-host=defer.test,mx2.defer.test,20",
          "--host-record=mx1.defer.test,127.0.0.1", "--host-record=mx2.defer.test,127.0.0.3",
          // RFC 7505 null MX: "MX 0 .".
          "--dns-rr=nullmx.test,15,0000:00",
          // A Google Workspace and a Microsoft 365 customer, their providers'
          // mail hosts pointed at loopback.
          "--mx-host=acme-ws.test,aspmx.l.google.com,1",
          "--host-record=aspmx.l.google.com,127.0.0.1",
          "--mx-host=contoso.test,contoso-test.mail.protection.outlook.com,0",
          "--host-record=contoso-test.mail.protection.outlook.com,127.0.0.1"};
}

SinkOptions stored_in(const std::filesystem::path& maildir) {
  SinkOptions o;
  o.maildir = maildir;
  return o;
}

class DispatchMxTest : public mailer::testing::DispatchFixture {
 protected:
  DispatchMxTest() : DispatchFixture("dispatch_mx") {}

  // Every provider on the MX route, MX lookups at `dns`, mail hosts on
  // `mx_port`; short SMTP limits, retries an hour away; `sender` is added
  // to [sender], `extra` at the end.
  void configure_mx(const std::string& dns, unsigned short mx_port, const std::string& sender = "",
                    const std::string& extra = "") {
    mailer::testing::write_file(
        dir_ + "/mailer.toml",
        fmt::format("[worker]\ntick = \"100ms\"\nlease = \"30s\"\nflush_interval = \"50ms\"\n"
                    "[sender]\nhelo_name = \"test.example.com\"\nhistory_interval = \"1s\"\n"
                    "default_route = \"mx\"\ndns_server = \"{}\"\nmx_port = {}\n"
                    "connect_timeout = \"2s\"\nreply_timeout = \"2s\"\n{}"
                    "[import]\ndns_server = \"{}\"\n"
                    "[unsubscribe]\nbase_url = \"https://mail.example.com\"\n"
                    "secret_file = \"{}/secret\"\n"
                    "[retry]\nmin_backoff = \"1h\"\nmax_backoff = \"2h\"\n{}",
                    dns, mx_port, sender, dns, dir_, extra));
  }

  // A list of `local-I@domain` for I in 1..n, a campaign over it, started.
  std::int64_t start_campaign_to(const std::string& domain, int n) {
    const std::string url = t_.url();
    std::int64_t list = 0;
    {
      pqxx::connection c(url);
      pqxx::work w(c);
      list = w.exec_params1("INSERT INTO lists (name) VALUES ($1) RETURNING id", domain)[0]
                 .as<std::int64_t>();
      w.exec_params(
          "WITH r AS (INSERT INTO recipients (email, email_key, domain, attributes)"
          " SELECT 'reader-' || i || '@' || $1, 'reader-' || i || '@' || $1, $1,"
          "  jsonb_build_object('first_name', 'Reader ' || i)"
          " FROM generate_series(1, $2::int) i RETURNING id)"
          " INSERT INTO list_members (list_id, recipient_id) SELECT $3, id FROM r",
          domain, n, list);
      w.commit();
    }
    const auto id = mailer::testing::seed_campaign(url, list);
    start(id);
    return id;
  }

  // `mailer run --until-idle`, which must exit 0.
  mailer::testing::ProcessResult run_until_idle() {
    auto r = mailer({"run", "--worker-id", "w1", "--until-idle"}, std::chrono::seconds(30));
    EXPECT_EQ(r.exit_code, 0) << r.err << unsent();
    return r;
  }

  // Every delivery bounced after one attempt with a reply matching `reply`,
  // and its address suppressed as a hard bounce.
  void expect_all_bounced_and_suppressed(int n, const std::string& reply) {
    EXPECT_EQ(count("state = 'bounced' AND attempts = 1"), n) << unsent();
    EXPECT_EQ(count("state = 'sent'"), 0);
    pqxx::connection c(t_.url());
    pqxx::work w(c);
    for (const auto& row : w.exec("SELECT coalesce(last_reply, '') FROM deliveries")) {
      const std::string text = row[0].as<std::string>();
      EXPECT_TRUE(std::regex_search(text, std::regex(reply))) << text << " !~ " << reply;
    }
    EXPECT_EQ(scalar("SELECT count(*) FROM suppressions s JOIN recipients r"
                     " ON r.email_key = s.email_key WHERE s.reason = 'hard_bounce'"),
              n);
  }
};

constexpr int kRecipients = 6;

TEST_F(DispatchMxTest, DeliversThroughTheDomainsMailHostFoundByMxLookup) {
  DnsmasqServer dns(mx_route_zone());
  const std::filesystem::path maildir = dir_ + "/maildir";
  SinkThread sink(stored_in(maildir));
  configure_mx(dns.address(), sink.port());
  start_campaign_to("good.test", kRecipients);
  run_until_idle();
  EXPECT_EQ(count("state = 'sent' AND attempts = 1"), kRecipients) << unsent();
  EXPECT_EQ(sink.counters().accepted, static_cast<std::uint64_t>(kRecipients));
  EXPECT_EQ(maildir_count(maildir), static_cast<std::size_t>(kRecipients));
}

TEST_F(DispatchMxTest, RefusingPreferredMxPassesEachMessageToTheNextHostInTheSameAttempt) {
  DnsmasqServer dns(mx_route_zone());
  const std::filesystem::path maildir = dir_ + "/maildir";
  SinkThread sink(stored_in(maildir));
  // One message per connection: every message looks the hosts up afresh
  // instead of reusing a pooled connection to the second host.
  configure_mx(dns.address(), sink.port(), "messages_per_connection = 1\n");
  start_campaign_to("pref.test", kRecipients);
  const auto run = run_until_idle();
  EXPECT_EQ(count("state = 'sent' AND attempts = 1"), kRecipients) << unsent();
  EXPECT_EQ(maildir_count(maildir), static_cast<std::size_t>(kRecipients));
  // Each message tried mx1 first (refused, logged per host), then mx2.
  EXPECT_EQ(sink.counters().connections, static_cast<std::uint64_t>(kRecipients));
  EXPECT_EQ(lines_with(run.err, "mx1.pref.test for reader-"), static_cast<std::size_t>(kRecipients))
      << run.err;
  EXPECT_EQ(lines_with(run.err, "mx2.pref.test for reader-"), 0u) << run.err;
}

TEST_F(DispatchMxTest, HostWithARefusingAddressIsReachedThroughItsOtherAddress) {
  DnsmasqServer dns(mx_route_zone());
  const std::filesystem::path maildir = dir_ + "/maildir";
  SinkThread sink(stored_in(maildir));
  configure_mx(dns.address(), sink.port(), "messages_per_connection = 1\n");
  start_campaign_to("multi.test", kRecipients);
  const auto run = run_until_idle();
  // Every message went out in its first attempt, over the address that
  // answers, and the host was never given up on.
  EXPECT_EQ(count("state = 'sent' AND attempts = 1"), kRecipients) << unsent();
  EXPECT_EQ(maildir_count(maildir), static_cast<std::size_t>(kRecipients));
  EXPECT_EQ(sink.counters().connections, static_cast<std::uint64_t>(kRecipients));
  EXPECT_EQ(lines_with(run.err, "mx.multi.test for reader-"), 0u) << run.err;
}

TEST_F(DispatchMxTest, DeferralFromThePreferredMxEndsTheAttemptWithoutTryingTheNextHost) {
  DnsmasqServer dns(mx_route_zone());
  // The preferred host answers every MAIL with Gmail's rate deferral; the
  // next host (127.0.0.3, same port) would accept everything.
  SinkOptions busy;
  busy.profile = *mailer::sender::sink_profile("gmail");
  busy.capacity = 0.001;
  SinkThread preferred(busy);
  SinkThread next(SinkOptions{}, "127.0.0.3", preferred.port());
  configure_mx(dns.address(), preferred.port());
  start_campaign_to("defer.test", kRecipients);
  start_worker();
  const bool settled =
      wait_for([&] { return count("state = 'queued' OR lease_owner IS NOT NULL") == 0; },
               std::chrono::seconds(30));
  EXPECT_EQ(stop_worker(), 0) << worker_log();
  ASSERT_TRUE(settled) << worker_log() << unsent();
  // A 4xx is the host's answer, not a failure to reach it: each message the
  // preferred host did not take (its bucket starts with one token) was
  // deferred once with that reply, and the second host never saw a
  // connection.
  const auto accepted = static_cast<int>(preferred.counters().accepted);
  EXPECT_LE(accepted, 1);
  EXPECT_EQ(count("state = 'sent'"), accepted);
  EXPECT_EQ(count("state = 'deferred' AND attempts = 1 AND last_reply ~ '^421 4\\.7\\.28'"),
            kRecipients - accepted)
      << unsent();
  EXPECT_EQ(preferred.counters().deferred["capacity"],
            static_cast<std::uint64_t>(kRecipients - accepted));
  EXPECT_EQ(next.counters().connections, 0u);
}

TEST_F(DispatchMxTest, NullMxIsAHardBounceAndSuppressesTheAddress) {
  DnsmasqServer dns(mx_route_zone());
  SinkThread sink(SinkOptions{});
  configure_mx(dns.address(), sink.port());
  start_campaign_to("nullmx.test", kRecipients);
  run_until_idle();
  expect_all_bounced_and_suppressed(kRecipients, "^550 5\\.1\\.2 .*nullmx\\.test: no mail host");
  EXPECT_EQ(sink.counters().connections, 0u);
}

TEST_F(DispatchMxTest, NxdomainIsAHardBounceAndSuppressesTheAddress) {
  DnsmasqServer dns(mx_route_zone());
  SinkThread sink(SinkOptions{});
  configure_mx(dns.address(), sink.port());
  start_campaign_to("gone.test", kRecipients);
  run_until_idle();
  expect_all_bounced_and_suppressed(kRecipients, "^550 5\\.1\\.2 .*gone\\.test: no mail host");
  EXPECT_EQ(sink.counters().connections, 0u);
}

TEST_F(DispatchMxTest, UnansweringDnsServerDefersInsteadOfFailing) {
  SilentDnsServer dns;
  SinkThread sink(SinkOptions{});
  configure_mx(dns.address(), sink.port());
  start_campaign_to("good.test", kRecipients);
  start_worker();
  // The resolver gives up after its tries (about 4 s).
  const bool settled =
      wait_for([&] { return count("state = 'queued' OR lease_owner IS NOT NULL") == 0; },
               std::chrono::seconds(30));
  EXPECT_EQ(stop_worker(), 0) << worker_log();
  ASSERT_TRUE(settled) << worker_log() << unsent();
  EXPECT_EQ(count("state = 'deferred' AND attempts = 1 AND next_attempt_at > now() + "
                  "interval '30 minutes'"),
            kRecipients)
      << unsent();
  EXPECT_EQ(count("state IN ('bounced', 'failed', 'sent')"), 0) << unsent();
  EXPECT_EQ(count("last_reply ~ '^451 4\\.4\\.3 .*good\\.test: MX lookup failed'"), kRecipients)
      << unsent();
  EXPECT_EQ(scalar("SELECT count(*) FROM suppressions"), 0);
  EXPECT_EQ(sink.counters().connections, 0u);
}

TEST_F(DispatchMxTest, WorkspaceAndMicrosoft365DomainsAreSentUnderGmailAndOutlook) {
  DnsmasqServer dns(mx_route_zone());
  const std::filesystem::path maildir = dir_ + "/maildir";
  SinkThread sink(stored_in(maildir));
  configure_mx(dns.address(), sink.port());
  // The import's MX check classifies the domains by their mail hosts.
  ASSERT_EQ(mailer({"lists", "create", "customers"}).exit_code, 0);
  mailer::testing::write_file(dir_ + "/in.csv",
                              "email,first_name\nalice@acme-ws.test,Alice\nbob@acme-ws.test,Bob\n"
                              "carol@contoso.test,Carol\ndave@contoso.test,Dave\n"
                              "erin@contoso.test,Erin\n");
  auto import = mailer({"import", "--list", "customers", "--mx-check", dir_ + "/in.csv"});
  ASSERT_EQ(import.exit_code, 0) << import.out << import.err;
  EXPECT_EQ(scalar("SELECT count(*) FROM domains WHERE domain = 'acme-ws.test' AND provider = "
                   "'gmail'"),
            1);
  EXPECT_EQ(scalar("SELECT count(*) FROM domains WHERE domain = 'contoso.test' AND provider = "
                   "'outlook'"),
            1);
  const auto list = scalar("SELECT id FROM lists WHERE name = 'customers'");
  start(mailer::testing::seed_campaign(t_.url(), list));
  run_until_idle();

  EXPECT_EQ(count("provider = 'gmail' AND state = 'sent'"), 2) << unsent();
  EXPECT_EQ(count("provider = 'outlook' AND state = 'sent'"), 3) << unsent();
  EXPECT_EQ(maildir_count(maildir), 5u);
  // The throttle kept its state under the provider, not the customer domain.
  EXPECT_EQ(scalar("SELECT count(*) FROM throttle_state WHERE provider IN ('gmail', 'outlook')"),
            2);
  EXPECT_EQ(scalar("SELECT count(*) FROM throttle_state WHERE provider ~ 'acme|contoso'"), 0);
  auto status = mailer({"status", "--json"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  const auto providers = nlohmann::json::parse(status.out).at("providers");
  EXPECT_TRUE(providers.contains("gmail")) << status.out;
  EXPECT_TRUE(providers.contains("outlook")) << status.out;
  std::set<std::string> names;
  for (const auto& [name, p] : providers.items()) names.insert(name);
  EXPECT_EQ(names, (std::set<std::string>{"gmail", "outlook"})) << status.out;
}

}  // namespace
}  // namespace mailer::sender
