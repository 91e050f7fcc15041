// SmtpTransport against real SMTP peers on loopback: Postfix's smtp-sink
// (with its fault options) and our own rehearsal sink.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "sender/smtp_sink.h"
#include "sender/smtp_transport.h"
#include "tests/sender/loopback_peers.h"
#include "tests/sender/sink_thread.h"
#include "throttle/provider_profiles.h"

namespace mailer::sender {
namespace {

using namespace std::chrono_literals;
using mailer::testing::PostfixSmtpSink;
using mailer::testing::run_until;
using mailer::testing::SinkThread;
using throttle::SmtpStage;

std::shared_ptr<const std::string> test_message(std::size_t body_bytes = 200) {
  std::string m =
      "From: Sender <sender@example.com>\r\nTo: <rcpt@example.net>\r\n"
      "Subject: transport test\r\nMessage-ID: <t1@example.com>\r\n\r\n";
  while (m.size() < body_bytes) m += "line of text for the body of the test message\r\n";
  return std::make_shared<const std::string>(std::move(m));
}

SendRequest request_to(const std::string& route) {
  SendRequest r;
  r.route = route;
  r.tls = TlsMode::kNone;
  r.helo_name = "client.example.com";
  r.envelope_from = "bounce@example.com";
  r.recipient = "rcpt@example.net";
  r.message = test_message();
  r.timeouts.connect = 5s;
  r.timeouts.reply = 5s;
  r.timeouts.total = 10s;
  return r;
}

class TransportTest : public ::testing::Test {
 protected:
  // Sends one request and runs the loop until its result arrives.
  SendResult send_one(SendRequest request, std::chrono::milliseconds limit = 15s) {
    std::optional<SendResult> result;
    transport_.submit(std::move(request), [&](SendResult r) { result = std::move(r); });
    EXPECT_TRUE(run_until(
        io_, [&] { return result.has_value(); }, limit))
        << "no result in time";
    return result.value_or(SendResult{});
  }

  boost::asio::io_context io_;
  SmtpTransport transport_{io_};
};

TEST_F(TransportTest, AcceptsOnlyAfterTheReplyToTheFinalDot) {
  PostfixSmtpSink peer;
  SendResult r = send_one(request_to(peer.route()));
  EXPECT_EQ(r.outcome, SendOutcome::kAccepted) << r.error;
  EXPECT_TRUE(r.reply_from_server);
  EXPECT_EQ(r.reply.code, 250);
  EXPECT_EQ(r.reply.stage, SmtpStage::kEndOfData);
  EXPECT_EQ(transport_.counters(peer.route()).accepted, 1u);
}

TEST_F(TransportTest, SoftRejectionAtMailCarriesTheServersReply) {
  PostfixSmtpSink peer({"-r", "MAIL"});
  SendResult r = send_one(request_to(peer.route()));
  EXPECT_EQ(r.outcome, SendOutcome::kRejected);
  EXPECT_EQ(r.reply.code, 450);
  EXPECT_EQ(r.reply.enhanced_status, "4.3.0");
  EXPECT_EQ(r.reply.stage, SmtpStage::kMail);
  EXPECT_TRUE(r.reply_from_server);
}

TEST_F(TransportTest, HardRejectionAtRcptIsReportedAtRcpt) {
  PostfixSmtpSink peer({"-f", "RCPT"});
  SendResult r = send_one(request_to(peer.route()));
  EXPECT_EQ(r.outcome, SendOutcome::kRejected);
  EXPECT_EQ(r.reply.code, 500);
  EXPECT_EQ(r.reply.stage, SmtpStage::kRcpt);
}

TEST_F(TransportTest, RejectionOfDataCommandIsReportedAtData) {
  PostfixSmtpSink peer({"-r", "DATA"});
  SendResult r = send_one(request_to(peer.route()));
  EXPECT_EQ(r.outcome, SendOutcome::kRejected);
  EXPECT_EQ(r.reply.code, 450);
  EXPECT_EQ(r.reply.stage, SmtpStage::kData);
}

TEST_F(TransportTest, RejectionAfterTheFinalDotIsNotAnAcceptance) {
  PostfixSmtpSink peer({"-r", "."});
  SendResult r = send_one(request_to(peer.route()));
  EXPECT_EQ(r.outcome, SendOutcome::kRejected);
  EXPECT_EQ(r.reply.code, 450);
  EXPECT_EQ(r.reply.stage, SmtpStage::kEndOfData);
}

TEST_F(TransportTest, GreetingOf421IsARejectionAtTheGreeting) {
  PostfixSmtpSink peer({"-Q", "CONNECT"});
  SendResult r = send_one(request_to(peer.route()));
  EXPECT_EQ(r.outcome, SendOutcome::kRejected);
  EXPECT_EQ(r.reply.code, 421);
  EXPECT_EQ(r.reply.stage, SmtpStage::kGreeting);
}

TEST_F(TransportTest, ConnectionLostAfterTheFinalDotIsADeferralNotASend) {
  PostfixSmtpSink peer({"-q", "."});
  SendResult r = send_one(request_to(peer.route()));
  EXPECT_EQ(r.outcome, SendOutcome::kConnectionFailed);
  EXPECT_FALSE(r.reply_from_server);
  EXPECT_TRUE(r.reply.transient_failure());
  EXPECT_EQ(r.reply.stage, SmtpStage::kEndOfData);
}

TEST_F(TransportTest, ConnectionDroppedMidDataIsADeferral) {
  SinkOptions o;
  o.drop_mid_data_every = 1;
  SinkThread sink(o);
  SendResult r = send_one(request_to(sink.route()));
  EXPECT_EQ(r.outcome, SendOutcome::kConnectionFailed);
  EXPECT_TRUE(r.reply.transient_failure());
  EXPECT_EQ(sink.counters().accepted, 0u);
  EXPECT_EQ(sink.counters().dropped, 1u);
}

TEST_F(TransportTest, RefusedConnectionIsAConnectionFailure) {
  SendResult r =
      send_one(request_to("smtp://127.0.0.1:" + std::to_string(mailer::testing::free_tcp_port())));
  EXPECT_EQ(r.outcome, SendOutcome::kConnectionFailed);
  EXPECT_EQ(r.reply.enhanced_status, "4.4.1");
}

TEST_F(TransportTest, CapturesTheWholeMultiLineDeferral) {
  SinkOptions o;
  o.profile = *sink_profile("gmail");
  o.capacity = 0.001;  // one token, then deferrals
  SinkThread sink(o);
  SendResult first = send_one(request_to(sink.route()));
  ASSERT_EQ(first.outcome, SendOutcome::kAccepted) << first.error;
  SendResult r = send_one(request_to(sink.route()));
  EXPECT_EQ(r.outcome, SendOutcome::kRejected);
  EXPECT_EQ(r.reply.code, 421);
  EXPECT_EQ(r.reply.enhanced_status, "4.7.28");
  EXPECT_EQ(r.reply.stage, SmtpStage::kEndOfData);
  auto expected = throttle::find_provider_profile("gmail")->throttle.text;
  EXPECT_EQ(r.reply.text, expected);
  EXPECT_NE(r.reply.text.find('\n'), std::string::npos) << "more than one line";
}

TEST_F(TransportTest, StalledPeerHitsTheReplyTimeout) {
  SinkOptions o;
  o.stall_after = SinkStage::kMail;
  SinkThread sink(o);
  SendRequest req = request_to(sink.route());
  req.timeouts.reply = 1s;
  auto start = std::chrono::steady_clock::now();
  SendResult r = send_one(req);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.outcome, SendOutcome::kTimedOut) << r.error;
  EXPECT_EQ(r.reply.stage, SmtpStage::kMail);
  EXPECT_EQ(r.reply.enhanced_status, "4.4.2");
  EXPECT_LT(took, 4s);
}

TEST_F(TransportTest, StalledGreetingHitsTheConnectTimeout) {
  SinkOptions o;
  o.stall_after = SinkStage::kGreeting;
  SinkThread sink(o);
  SendRequest req = request_to(sink.route());
  req.timeouts.connect = 300ms;
  auto start = std::chrono::steady_clock::now();
  SendResult r = send_one(req);
  EXPECT_EQ(r.outcome, SendOutcome::kTimedOut) << r.error;
  EXPECT_EQ(r.reply.stage, SmtpStage::kGreeting);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST_F(TransportTest, RequiredStartTlsThatIsNotOfferedFailsWithoutSending) {
  SinkThread sink(SinkOptions{});
  SendRequest req = request_to(sink.route());
  req.tls = TlsMode::kRequired;
  SendResult r = send_one(req);
  EXPECT_EQ(r.outcome, SendOutcome::kConnectionFailed);
  EXPECT_EQ(r.reply.enhanced_status, "4.7.4");
  EXPECT_EQ(sink.counters().accepted, 0u);
}

TEST_F(TransportTest, OpportunisticTlsFallsBackToPlainText) {
  PostfixSmtpSink peer;
  SendRequest req = request_to(peer.route());
  req.tls = TlsMode::kOpportunistic;
  EXPECT_EQ(send_one(req).outcome, SendOutcome::kAccepted);
}

TEST_F(TransportTest, ReusesConnectionsAcrossMessages) {
  SinkThread sink(SinkOptions{});
  transport_.set_connection_limit(sink.route(), 2);
  constexpr int kMessages = 30;
  int accepted = 0;
  int reused = 0;
  int done = 0;
  for (int i = 0; i < kMessages; ++i) {
    transport_.submit(request_to(sink.route()), [&](SendResult r) {
      ++done;
      accepted += r.outcome == SendOutcome::kAccepted;
      reused += r.reused_connection;
    });
  }
  ASSERT_TRUE(run_until(
      io_, [&] { return done == kMessages; }, 20s));
  EXPECT_EQ(accepted, kMessages);
  EXPECT_GE(reused, kMessages - 2);
  EXPECT_LE(sink.counters().connections, 2u);
  EXPECT_LE(transport_.counters(sink.route()).connections_opened, 2u);
  EXPECT_EQ(sink.counters().accepted, static_cast<std::uint64_t>(kMessages));
}

TEST_F(TransportTest, NeverExceedsTheRoutesConnectionLimit) {
  PostfixSmtpSink peer;
  transport_.set_connection_limit(peer.route(), 3);
  constexpr int kMessages = 60;
  int done = 0;
  int accepted = 0;
  std::size_t most_in_flight = 0;
  for (int i = 0; i < kMessages; ++i) {
    transport_.submit(request_to(peer.route()), [&](SendResult r) {
      ++done;
      accepted += r.outcome == SendOutcome::kAccepted;
      most_in_flight = std::max(most_in_flight, transport_.counters(peer.route()).in_flight);
    });
  }
  EXPECT_EQ(transport_.counters(peer.route()).in_flight, 3u);
  EXPECT_EQ(transport_.counters(peer.route()).queued, static_cast<std::size_t>(kMessages - 3));
  ASSERT_TRUE(run_until(
      io_, [&] { return done == kMessages; }, 20s));
  EXPECT_EQ(accepted, kMessages);
  EXPECT_LE(most_in_flight, 3u);
  EXPECT_LE(transport_.counters(peer.route()).connections_opened, 3u);
  EXPECT_EQ(transport_.pending(), 0u);
}

TEST_F(TransportTest, MalformedRouteCompletesWithAnError) {
  SendRequest req = request_to("http://127.0.0.1:25");
  SendResult r = send_one(req);
  EXPECT_EQ(r.outcome, SendOutcome::kConnectionFailed);
  EXPECT_NE(r.error.find("route"), std::string::npos);
}

// A peer that records the address each connection comes from and turns it
// away with a 421 greeting.
class AddressRecordingPeer {
 public:
  AddressRecordingPeer() : acceptor_(io_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
    thread_ = std::thread([this] {
      boost::system::error_code ec;
      for (;;) {
        boost::asio::ip::tcp::socket s(io_);
        acceptor_.accept(s, ec);
        if (ec) return;
        {
          std::lock_guard lock(mutex_);
          peers_.push_back(s.remote_endpoint(ec).address().to_string());
        }
        boost::asio::write(s, boost::asio::buffer(std::string("421 4.3.2 not now\r\n")), ec);
      }
    });
  }
  ~AddressRecordingPeer() {
    // Closing does not wake a blocked accept(); shutting the listening socket
    // down does (accept fails with EINVAL).
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
    thread_.join();
  }
  std::string route() const {
    return "smtp://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port());
  }
  std::vector<std::string> peers() {
    std::lock_guard lock(mutex_);
    return peers_;
  }

 private:
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::mutex mutex_;
  std::vector<std::string> peers_;
  std::thread thread_;
};

TEST_F(TransportTest, ConnectsFromTheConfiguredSourceAddress) {
  AddressRecordingPeer peer;
  SendRequest req = request_to(peer.route());
  req.source_address = "127.0.0.2";
  SendResult r = send_one(req);
  EXPECT_EQ(r.outcome, SendOutcome::kRejected);
  EXPECT_EQ(r.reply.code, 421);
  SendResult plain = send_one(request_to(peer.route()));
  EXPECT_EQ(plain.outcome, SendOutcome::kRejected);
  EXPECT_EQ(peer.peers(), (std::vector<std::string>{"127.0.0.2", "127.0.0.1"}));
}

TEST_F(TransportTest, SourceAddressNotOfThisHostIsAConnectionFailure) {
  AddressRecordingPeer peer;
  SendRequest req = request_to(peer.route());
  req.source_address = "192.0.2.77";  // TEST-NET-1: on no interface here
  SendResult r = send_one(req);
  EXPECT_EQ(r.outcome, SendOutcome::kConnectionFailed);
  EXPECT_TRUE(peer.peers().empty());
}

TEST_F(TransportTest, EnvelopeWithLineBreakIsRefusedBeforeConnecting) {
  PostfixSmtpSink peer;
  SendRequest req = request_to(peer.route());
  req.recipient = "a@example.net>\r\nRCPT TO:<b@example.net";
  SendResult r = send_one(req);
  EXPECT_EQ(r.outcome, SendOutcome::kConnectionFailed);
  EXPECT_EQ(transport_.counters(peer.route()).connections_opened, 0u);
}

}  // namespace
}  // namespace mailer::sender
