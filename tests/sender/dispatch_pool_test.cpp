// `mailer run` and its connection pools at the edges: a stop request while
// transactions are on the wire and their peer does not answer, a pooled
// connection that the peer closed while it sat idle, and a deferral from a
// mail host reached through MX that must reach the provider's throttle.
// Real peers on loopback (the rehearsal sink, dnsmasq), the real worker
// binary and the real queue; outcomes are checked in the database and
// against what the sink counted.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <string>

#include "tests/lists/dnsmasq_server.h"
#include "tests/sender/dispatch_fixture.h"
#include "tests/sender/sink_thread.h"

namespace mailer::sender {
namespace {

using mailer::testing::SinkThread;

class DispatchPoolTest : public mailer::testing::DispatchFixture {
 protected:
  DispatchPoolTest() : DispatchFixture("dispatch_pool") {}

  static SinkOptions generic() {
    SinkOptions o;
    o.profile = *sink_profile("generic");
    return o;
  }

  // Writes mailer.toml with `sender` lines in [sender] and `rest` after it
  // (routes, providers, retry).
  void write_config(const std::string& sender, const std::string& rest) {
    mailer::testing::write_file(
        dir_ + "/mailer.toml",
        fmt::format("[worker]\ntick = \"100ms\"\nlease = \"30s\"\nflush_interval = \"50ms\"\n"
                    "[sender]\nhelo_name = \"test.example.com\"\nhistory_interval = \"1s\"\n{}"
                    "[unsubscribe]\nbase_url = \"https://mail.example.com\"\n"
                    "secret_file = \"{}/secret\"\n{}",
                    sender, dir_, rest));
  }

  static std::string all_routes(const std::string& route) {
    std::string out = "[routes]\n";
    for (const auto& p : mailer::testing::kDispatchProviders) {
      out += fmt::format("{} = \"{}\"\n", p, route);
    }
    return out;
  }
};

// SIGTERM while every connection's transaction waits for the reply to its
// final "." from a peer that never gives it: the worker waits for those
// transactions (bounded by transaction_timeout), defers them, releases what it
// had not started, and exits. Nothing is sent without a 250, nothing is lost
// or left leased.
TEST_F(DispatchPoolTest, SigtermWithTransactionsUnansweredInFlightDefersThemAndLosesNothing) {
  SinkOptions o = generic();
  o.stall_after = SinkStage::kEndOfData;
  SinkThread sink(std::move(o));
  write_config("reply_timeout = \"1s\"\ntransaction_timeout = \"3s\"\n",
               all_routes(sink.route()) + "[retry]\nmin_backoff = \"1h\"\nmax_backoff = \"2h\"\n");
  const int n = 200;
  start_campaign(n);
  start_worker();
  // One connection per provider at least: each carries a transaction.
  ASSERT_TRUE(wait_for([&] { return sink.counters().connections >= 4; }, std::chrono::seconds(20)))
      << worker_log();
  const auto stopping = std::chrono::steady_clock::now();
  EXPECT_EQ(stop_worker(std::chrono::seconds(30)), 0) << worker_log();
  const auto took = std::chrono::steady_clock::now() - stopping;

  EXPECT_EQ(sink.counters().accepted, 0u);
  EXPECT_EQ(count("state = 'sent'"), 0) << unsent();
  EXPECT_EQ(count("lease_owner IS NOT NULL"), 0) << unsent();
  // The transactions on the wire were deferred once, with the time-out kept.
  const std::int64_t deferred =
      count("state = 'deferred' AND attempts = 1 AND last_reply LIKE '421 4.4.2 %timed out%'");
  EXPECT_GE(deferred, 4) << unsent();
  // Everything else went back to the queue untouched.
  EXPECT_EQ(count("state = 'queued' AND attempts = 0") + deferred, n) << unsent();
  // Bounded by transaction_timeout, not by the peer.
  EXPECT_LT(took, std::chrono::seconds(15));
}

// The sink drops a client that stays silent for 200 ms; the worker sends
// one message per provider every 500 ms over one pooled connection each, so
// every message after a provider's first finds its pooled connection closed
// by the server. Each goes out on a fresh connection in the same attempt:
// sent once, never deferred, never twice.
TEST_F(DispatchPoolTest, PooledConnectionClosedByTheServerWhileIdleIsRetriedOnAFreshOne) {
  SinkOptions o = generic();
  o.idle_timeout = std::chrono::milliseconds(200);
  o.maildir = dir_ + "/maildir";
  SinkThread sink(std::move(o));
  std::string providers;
  for (const char* p : {"gmail", "outlook", "yahoo", "other"}) {
    providers += fmt::format(
        "[providers.{}]\ninitial_rate = 2\nmax_rate = 2\nburst = 1\nmax_connections = 1\n", p);
  }
  write_config("idle_timeout = \"30s\"\n", all_routes(sink.route()) + providers);
  const int n = 12;  // three per provider
  start_campaign(n);
  auto run = mailer({"run", "--worker-id", "w1", "--until-idle"}, std::chrono::seconds(60));
  ASSERT_EQ(run.exit_code, 0) << run.err;

  EXPECT_EQ(count("state = 'sent' AND attempts = 1"), n) << unsent() << run.err;
  const SinkCounters c = sink.counters();
  EXPECT_EQ(c.accepted, static_cast<std::uint64_t>(n));
  // The premise: the server closed the idle connections (two per provider).
  ASSERT_GE(c.timed_out, 8u) << "the sink closed no idle connection: the test proves nothing";
  // Each message after the first of its provider needed a connection of its own.
  EXPECT_GE(c.connections, static_cast<std::uint64_t>(n));
  std::size_t stored = 0;
  for ([[maybe_unused]] const auto& e :
       std::filesystem::directory_iterator(dir_ + "/maildir/new")) {
    ++stored;
  }
  EXPECT_EQ(stored, static_cast<std::size_t>(n));
}

// MX delivery (dnsmasq answering the MX and address records) to a mail host
// that defers above 5 messages/s with Gmail's 421 4.7.28: the replies reach
// gmail's controller, which cuts its rate and records the reply; what the host
// accepted is exactly what is sent.
TEST_F(DispatchPoolTest, DeferralFromAnMxHostCutsTheProvidersRate) {
  SinkOptions o;
  o.profile = *sink_profile("gmail");
  o.capacity = 5;
  SinkThread sink(std::move(o));
  std::vector<std::string> records = {"--host-record=mx.mail.test,127.0.0.1"};
  for (const char* domain : {"gmail.com", "outlook.com", "yahoo.com", "example.org"}) {
    records.push_back(fmt::format("--mx-host={},mx.mail.test,10", domain));
  }
  mailer::lists::DnsmasqServer dns(records);
  write_config(fmt::format("default_route = \"mx\"\ndns_server = \"{}\"\nmx_port = {}\n",
                           dns.address(), sink.port()),
               "[providers.gmail]\ninitial_rate = 40\nmax_rate = 200\n"
               "[retry]\nmin_backoff = \"1h\"\nmax_backoff = \"2h\"\n");
  start_campaign(400);  // 100 for gmail.com
  start_worker();
  const bool cut = wait_for(
      [&] {
        return scalar(
                   "SELECT count(*) FROM throttle_state WHERE provider = 'gmail' AND rate < 40"
                   " AND last_throttle_reply LIKE '421 4.7.28%'") == 1;
      },
      std::chrono::seconds(30));
  EXPECT_EQ(stop_worker(), 0) << worker_log();
  ASSERT_TRUE(cut) << "gmail's rate was not cut by the MX host's 421 4.7.28\n"
                   << worker_log() << unsent();
  EXPECT_GT(scalar("SELECT coalesce(sum(count), 0) FROM reply_counters WHERE provider = 'gmail'"
                   " AND signal = 'throttle'"),
            0);
  EXPECT_GT(count("provider = 'gmail' AND state = 'deferred' AND last_reply LIKE '421 4.7.28%'"), 0)
      << unsent();
  EXPECT_EQ(count("state = 'sent'"), static_cast<std::int64_t>(sink.counters().accepted));
  EXPECT_EQ(count("lease_owner IS NOT NULL"), 0);
}

}  // namespace
}  // namespace mailer::sender
