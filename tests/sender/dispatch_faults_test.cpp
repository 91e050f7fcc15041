// `mailer run` against faulty SMTP peers on loopback: Postfix's smtp-sink
// with its reject and disconnect options, and our rehearsal sink with its
// fault flags. Each case sends a small campaign and checks the outcome in the
// database: a temporary failure leaves the delivery deferred after one
// attempt with the peer's reply kept, a refused recipient is bounced and
// suppressed, and nothing is marked sent that the peer did not accept.
//
// Deferred deliveries would be retried after [retry] min_backoff; it is an
// hour here, so the worker runs in the background until every delivery has
// its outcome and is then stopped with SIGTERM.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>

#include "tests/sender/dispatch_fixture.h"
#include "tests/sender/loopback_peers.h"
#include "tests/sender/sink_thread.h"

namespace mailer::sender {
namespace {

using mailer::testing::PostfixSmtpSink;
using mailer::testing::SinkThread;

constexpr int kRecipients = 8;

class DispatchFaultsTest : public mailer::testing::DispatchFixture {
 protected:
  DispatchFaultsTest() : DispatchFixture("dispatch_faults") {}

  // Configures every provider to `route` with `sender` lines added to
  // [sender] (short SMTP time limits for the stalling peers; retries an hour
  // away), starts a campaign of kRecipients and a background worker, and
  // waits until no delivery is queued or leased any more; then stops it.
  void send_to(const std::string& route, const std::string& sender = "") {
    write_config(route, sender, "min_backoff = \"1h\"\nmax_backoff = \"2h\"\n");
    start_campaign(kRecipients);
    start_worker();
    const bool settled =
        wait_for([&] { return count("state = 'queued' OR lease_owner IS NOT NULL") == 0; },
                 std::chrono::seconds(30));
    const auto stopping = std::chrono::steady_clock::now();
    const int code = stop_worker();
    stop_took_ = std::chrono::steady_clock::now() - stopping;
    ASSERT_TRUE(settled) << worker_log() << unsent();
    EXPECT_EQ(code, 0) << worker_log();
  }

  // Every provider routed to `route`; `sender` lines added to [sender] and
  // `retry` lines to [retry].
  void write_config(const std::string& route, const std::string& sender, const std::string& retry) {
    std::string toml = fmt::format(
        "[worker]\ntick = \"100ms\"\nlease = \"30s\"\nflush_interval = \"50ms\"\n"
        "[sender]\nhelo_name = \"test.example.com\"\nhistory_interval = \"1s\"\n"
        "reply_timeout = \"1s\"\ntransaction_timeout = \"3s\"\nconnect_timeout = \"2s\"\n{}"
        "[unsubscribe]\nbase_url = \"https://mail.example.com\"\nsecret_file = \"{}/secret\"\n"
        "[retry]\n{}[routes]\n",
        sender, dir_, retry);
    for (const auto& p : mailer::testing::kDispatchProviders) {
      toml += fmt::format("{} = \"{}\"\n", p, route);
    }
    mailer::testing::write_file(dir_ + "/mailer.toml", toml);
  }

  // Every delivery deferred after exactly one attempt, with a reply that
  // matches `reply` kept, and none sent.
  void expect_all_deferred_once(const std::string& reply) {
    EXPECT_EQ(count("state = 'sent'"), 0) << unsent();
    EXPECT_EQ(count("state = 'deferred' AND attempts = 1 AND next_attempt_at > now() + "
                    "interval '30 minutes'"),
              kRecipients)
        << unsent();
    pqxx::connection c(t_.url());
    pqxx::work w(c);
    for (const auto& row : w.exec("SELECT coalesce(last_reply, '') FROM deliveries")) {
      const std::string text = row[0].as<std::string>();
      EXPECT_TRUE(std::regex_search(text, std::regex(reply))) << text << " !~ " << reply;
    }
    EXPECT_EQ(scalar("SELECT count(*) FROM suppressions"), 0);
  }

  // How long the worker took from SIGTERM to its exit.
  std::chrono::steady_clock::duration stop_took_{};

  static SinkOptions generic() {
    SinkOptions o;
    o.profile = *sink_profile("generic");
    return o;
  }
};

TEST_F(DispatchFaultsTest, GreetingRefusedWith421DefersEveryone) {
  SinkOptions o = generic();
  o.greeting_421 = true;
  SinkThread sink(std::move(o));
  send_to(sink.route());
  expect_all_deferred_once("^421");
  EXPECT_EQ(sink.counters().accepted, 0u);
  EXPECT_GT(sink.counters().rejected["greeting"], 0u);
}

TEST_F(DispatchFaultsTest, TemporaryRejectAtMailDefersWithTheReplyKept) {
  PostfixSmtpSink peer({"-r", "MAIL", "-b", "451 4.3.2 System not accepting mail at MAIL"});
  send_to(peer.route());
  expect_all_deferred_once("^451 4\\.3\\.2 System not accepting mail at MAIL");
}

TEST_F(DispatchFaultsTest, TemporaryRejectAtRcptDefersWithTheReplyKept) {
  PostfixSmtpSink peer({"-r", "RCPT", "-b", "452 4.2.2 Mailbox full at RCPT"});
  send_to(peer.route());
  expect_all_deferred_once("^452 4\\.2\\.2 Mailbox full at RCPT");
}

TEST_F(DispatchFaultsTest, TemporaryRejectAtDataDefersWithTheReplyKept) {
  PostfixSmtpSink peer({"-r", "DATA", "-b", "451 4.3.0 Try again at DATA"});
  send_to(peer.route());
  expect_all_deferred_once("^451 4\\.3\\.0 Try again at DATA");
}

TEST_F(DispatchFaultsTest, TemporaryRejectAfterTheMessageIsNotASend) {
  PostfixSmtpSink peer({"-r", ".", "-b", "451 4.3.0 Queue write error at end of data"});
  send_to(peer.route());
  expect_all_deferred_once("^451 4\\.3\\.0 Queue write error at end of data");
}

// A permanent refusal at MAIL FROM is about the sender, not the recipients:
// nobody bounces or is suppressed; everyone waits for a retry.
TEST_F(DispatchFaultsTest, PermanentRejectAtMailDefersAndSuppressesNobody) {
  PostfixSmtpSink peer({"-f", "MAIL", "-B", "550 5.7.1 Sender rejected at MAIL"});
  send_to(peer.route());
  expect_all_deferred_once("^550 5\\.7\\.1 Sender rejected at MAIL");
}

// A permanent "no such user" at DATA or at the end of data refuses this
// message for its recipient: bounced and suppressed, never sent.
TEST_F(DispatchFaultsTest, PermanentRejectAtDataBouncesAndSuppresses) {
  PostfixSmtpSink peer({"-f", "DATA", "-B", "550 5.1.1 User unknown at DATA"});
  send_to(peer.route());
  EXPECT_EQ(count("state = 'sent'"), 0) << unsent();
  EXPECT_EQ(count("state = 'bounced' AND attempts = 1 AND last_reply LIKE '550 5.1.1%DATA'"),
            kRecipients)
      << unsent();
  EXPECT_EQ(scalar("SELECT count(*) FROM suppressions WHERE reason = 'hard_bounce'"), kRecipients);
}

TEST_F(DispatchFaultsTest, PermanentRejectAtEndOfDataBouncesAndSuppresses) {
  PostfixSmtpSink peer({"-f", ".", "-B", "550 5.1.1 User unknown at end of data"});
  send_to(peer.route());
  EXPECT_EQ(count("state = 'sent'"), 0) << unsent();
  EXPECT_EQ(count("state = 'bounced' AND attempts = 1 AND last_reply LIKE '550 5.1.1%end of data'"),
            kRecipients)
      << unsent();
  EXPECT_EQ(scalar("SELECT count(*) FROM suppressions WHERE reason = 'hard_bounce'"), kRecipients);
}

// [retry] max_age through the worker: a peer that only ever defers, retries
// a second apart, and a max_age of 3 s; every delivery is tried more than
// once and then fails as expired, none is left to retry.
TEST_F(DispatchFaultsTest, DeliveriesPastMaxAgeFailAfterTheirRetries) {
  PostfixSmtpSink peer({"-r", "MAIL", "-b", "451 4.3.2 Not now"});
  write_config(peer.route(), "",
               "min_backoff = \"1s\"\nmax_backoff = \"1s\"\nmax_age = \"3s\"\njitter = 0\n");
  start_campaign(kRecipients);
  start_worker();
  const bool settled =
      wait_for([&] { return count("state = 'failed'") == kRecipients; }, std::chrono::seconds(60));
  EXPECT_EQ(stop_worker(), 0) << worker_log();
  ASSERT_TRUE(settled) << unsent() << worker_log();
  EXPECT_EQ(count("state = 'failed' AND attempts >= 2 AND last_reply LIKE '451 4.3.2%'"),
            kRecipients)
      << unsent();
  // Not before max_age had passed since the first attempt.
  EXPECT_EQ(count("state = 'failed' AND now() - first_attempt_at >= interval '3 s'"), kRecipients)
      << unsent();
  EXPECT_EQ(scalar("SELECT count(*) FROM suppressions"), 0);
}

TEST_F(DispatchFaultsTest, UnknownRecipientsBounceAndAreSuppressed) {
  // Postfix's smtp-sink refuses every RCPT with a permanent "user unknown".
  PostfixSmtpSink peer({"-f", "RCPT", "-B", "550 5.1.1 User unknown in local recipient table"});
  send_to(peer.route());
  EXPECT_EQ(count("state = 'sent'"), 0) << unsent();
  EXPECT_EQ(count("state = 'bounced' AND attempts = 1 AND last_reply LIKE '550 5.1.1%'"),
            kRecipients)
      << unsent();
  EXPECT_EQ(scalar("SELECT count(*) FROM suppressions s JOIN recipients r ON r.email_key ="
                   " s.email_key WHERE s.reason = 'hard_bounce'"),
            kRecipients);
}

TEST_F(DispatchFaultsTest, SomeUnknownRecipientsBounceWhileTheOthersAreSent) {
  SinkOptions o = generic();
  o.fail_rcpt_matching = std::regex("news-[1-3]@");
  SinkThread sink(std::move(o));
  send_to(sink.route());
  EXPECT_EQ(count("state = 'bounced' AND last_reply LIKE '550 5.1.1%'"), 3) << unsent();
  EXPECT_EQ(count("state = 'sent'"), kRecipients - 3) << unsent();
  EXPECT_EQ(count("state = 'sent'"), static_cast<std::int64_t>(sink.counters().accepted));
  EXPECT_EQ(scalar("SELECT count(*) FROM suppressions WHERE reason = 'hard_bounce' AND"
                   " email_key ~ '^news-[1-3]@'"),
            3);
  EXPECT_EQ(scalar("SELECT count(*) FROM suppressions"), 3);
}

TEST_F(DispatchFaultsTest, ConnectionDroppedMidDataIsDeferredNeverSent) {
  // Every second message loses its connection after the first line of data.
  SinkOptions o = generic();
  o.drop_mid_data_every = 2;
  SinkThread sink(std::move(o));
  send_to(sink.route());
  const SinkCounters c = sink.counters();
  ASSERT_GT(c.dropped, 0u);
  // What the peer accepted is exactly what is marked sent; the rest waits.
  EXPECT_EQ(count("state = 'sent'"), static_cast<std::int64_t>(c.accepted)) << unsent();
  EXPECT_EQ(count("state = 'deferred' AND attempts = 1"),
            kRecipients - static_cast<std::int64_t>(c.accepted))
      << unsent();
  EXPECT_EQ(count("state = 'deferred' AND last_reply LIKE '421 4.4.2 connection closed%'"),
            static_cast<std::int64_t>(c.dropped))
      << unsent();
  EXPECT_EQ(scalar("SELECT count(*) FROM suppressions"), 0);
}

TEST_F(DispatchFaultsTest, ConnectionClosedBeforeTheEndOfDataReplyIsNotASend) {
  // smtp-sink reads the whole message and hangs up instead of answering ".".
  PostfixSmtpSink peer({"-q", "."});
  send_to(peer.route());
  expect_all_deferred_once("^421 4\\.4\\.2 connection closed");
}

TEST_F(DispatchFaultsTest, PeerStallingAfterTheMessageTimesOutAndDefers) {
  SinkOptions o = generic();
  o.stall_after = SinkStage::kEndOfData;
  SinkThread sink(std::move(o));
  const auto began = std::chrono::steady_clock::now();
  send_to(sink.route());
  expect_all_deferred_once("^421 4\\.4\\.2 .*timed out");
  EXPECT_EQ(sink.counters().accepted, 0u);
  // Bounded by the time limits, not by the sink's own idle timeout (60 s).
  EXPECT_LT(std::chrono::steady_clock::now() - began, std::chrono::seconds(30));
}

// A peer that stalled after the end of data must not hold up the exit: its
// connections are dead once their transactions timed out (a client that kept
// them would, at teardown, wait for each one's answer to QUIT).
TEST_F(DispatchFaultsTest, WorkerExitsPromptlyAfterStalledPeersTimedOut) {
  SinkOptions o = generic();
  o.stall_after = SinkStage::kEndOfData;
  SinkThread sink(std::move(o));
  send_to(sink.route());
  expect_all_deferred_once("^421 4\\.4\\.2 .*timed out");
  EXPECT_LT(stop_took_, std::chrono::seconds(2));
}

TEST_F(DispatchFaultsTest, PeerStallingAtTheGreetingTimesOutAndDefers) {
  SinkOptions o = generic();
  o.stall_after = SinkStage::kGreeting;
  SinkThread sink(std::move(o));
  send_to(sink.route());
  expect_all_deferred_once("^421 4\\.4\\.2 .*timed out");
  EXPECT_EQ(sink.counters().accepted, 0u);
}

TEST_F(DispatchFaultsTest, RequiredStarttlsNotOfferedSendsNothing) {
  SinkThread sink(generic());
  send_to(sink.route(), "starttls = \"required\"\n");
  expect_all_deferred_once("^421 4\\.7\\.0 STARTTLS is required and the server does not offer it");
  EXPECT_EQ(sink.counters().accepted, 0u);
}

}  // namespace
}  // namespace mailer::sender
