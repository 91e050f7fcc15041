// SmtpClient against real peers on loopback: a scripted SMTP server written
// here on Asio (it plays a script of expected commands and replies, can send
// a reply one byte at a time, close in the middle of a reply, stall, speak
// STARTTLS with a test certificate and check credentials), Postfix's
// smtp-sink for many messages over one connection, and `mailer sink`'s own
// STARTTLS with the same test certificate.

// clang-format off
#include <utility>  // first: Boost 1.74's awaitable.hpp uses std::exchange without it
// clang-format on
#include "sender/smtp_client.h"

#include <gtest/gtest.h>

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sender/smtp_reply_reader.h"
#include "sender/smtp_sink.h"
#include "tests/sender/loopback_peers.h"
#include "tests/sender/sink_thread.h"
#include "throttle/reply_classifier.h"

namespace mailer::sender {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using namespace std::chrono_literals;
using mailer::testing::PostfixSmtpSink;
using mailer::testing::run_until;
using tcp = asio::ip::tcp;
using throttle::SmtpStage;

// --- the scripted peer ---------------------------------------------------------

struct Step {
  enum Kind {
    kReply,          // send `text` (wire form, CRLFs included)
    kReplyBytewise,  // send `text` one byte per write
    kExpect,         // read one command line; it must start with `text`
    kCheck,          // read one line: `ok` if it equals `text`, else `refusal`
    kData,           // read message data up to and including CRLF.CRLF
    kReadSome,       // read whatever has arrived (at least one byte)
    kStartTls,       // TLS handshake as the server
    kClose,          // close the connection
    kStall,          // answer nothing; wait for the client to close
    kExpectEof,      // the client must close without sending anything more
  };
  Kind kind;
  std::string text;
  std::string ok;
  std::string refusal;
};

Step reply(std::string wire) {
  return {Step::kReply, std::move(wire), {}, {}};
}
Step reply_bytewise(std::string wire) {
  return {Step::kReplyBytewise, std::move(wire), {}, {}};
}
Step expect(std::string prefix) {
  return {Step::kExpect, std::move(prefix), {}, {}};
}
Step check(std::string line, std::string ok, std::string refusal) {
  return {Step::kCheck, std::move(line), std::move(ok), std::move(refusal)};
}
Step data() {
  return {Step::kData, {}, {}, {}};
}
Step read_some() {
  return {Step::kReadSome, {}, {}, {}};
}
Step start_tls() {
  return {Step::kStartTls, {}, {}, {}};
}
Step close_connection() {
  return {Step::kClose, {}, {}, {}};
}
Step stall() {
  return {Step::kStall, {}, {}, {}};
}
Step expect_eof() {
  return {Step::kExpectEof, {}, {}, {}};
}

// A one-connection SMTP server that plays a script on the test's io_context.
class ScriptedPeer {
 public:
  // `lockstep`: the peer is a server without PIPELINING and records a
  // problem when a command arrives before the reply to the one before it.
  ScriptedPeer(asio::io_context& io, std::vector<Step> script, bool lockstep = false,
               std::shared_ptr<ssl::context> tls = nullptr)
      : state_(std::make_shared<State>(io)) {
    state_->script = std::move(script);
    state_->lockstep = lockstep;
    state_->tls_context = std::move(tls);
    asio::co_spawn(io, run(state_), asio::detached);
  }

  std::vector<tcp::endpoint> endpoints() const { return {state_->acceptor.local_endpoint()}; }
  // The script ran to its end.
  bool finished() const { return state_->finished; }
  // Every command line received, without CRLF.
  const std::vector<std::string>& commands() const { return state_->commands; }
  // The message data received, each up to and including CRLF.CRLF.
  const std::vector<std::string>& data() const { return state_->data; }
  // What went against the script.
  const std::vector<std::string>& problems() const { return state_->problems; }
  std::size_t count(std::string_view prefix) const {
    std::size_t n = 0;
    for (const std::string& c : state_->commands) n += c.starts_with(prefix);
    return n;
  }

 private:
  struct State {
    explicit State(asio::io_context& io)
        : acceptor(io, {asio::ip::make_address("127.0.0.1"), 0}), socket(io) {}
    tcp::acceptor acceptor;
    tcp::socket socket;
    std::shared_ptr<ssl::context> tls_context;
    std::unique_ptr<ssl::stream<tcp::socket&>> tls;
    std::vector<Step> script;
    bool lockstep = false;
    std::string in;
    bool finished = false;
    std::vector<std::string> commands;
    std::vector<std::string> data;
    std::vector<std::string> problems;

    asio::awaitable<void> write(std::string_view bytes) {
      if (tls) {
        co_await asio::async_write(*tls, asio::buffer(bytes), asio::use_awaitable);
      } else {
        co_await asio::async_write(socket, asio::buffer(bytes), asio::use_awaitable);
      }
    }
    asio::awaitable<std::string> read_until(std::string_view delimiter) {
      std::size_t n = 0;
      if (tls) {
        n = co_await asio::async_read_until(*tls, asio::dynamic_buffer(in), delimiter,
                                            asio::use_awaitable);
      } else {
        n = co_await asio::async_read_until(socket, asio::dynamic_buffer(in), delimiter,
                                            asio::use_awaitable);
      }
      std::string got = in.substr(0, n);
      in.erase(0, n);
      co_return got;
    }
    asio::awaitable<std::size_t> read_some() {
      std::array<char, 4096> buf;
      std::size_t n = tls ? co_await tls->async_read_some(asio::buffer(buf), asio::use_awaitable)
                          : co_await socket.async_read_some(asio::buffer(buf), asio::use_awaitable);
      in.append(buf.data(), n);
      co_return n;
    }
    asio::awaitable<std::string> read_line() {
      std::string line = co_await read_until("\r\n");
      line.resize(line.size() - 2);
      commands.push_back(line);
      if (lockstep && !in.empty()) problems.push_back("pipelined after: " + line);
      co_return line;
    }
  };

  static asio::awaitable<void> run(std::shared_ptr<State> s) {
    try {
      co_await s->acceptor.async_accept(s->socket, asio::use_awaitable);
      for (const Step& step : s->script) co_await play(*s, step);
      s->finished = true;
    } catch (const std::exception& e) {
      s->problems.push_back(std::string("peer: ") + e.what());
    }
  }

  static asio::awaitable<void> play(State& s, const Step& step) {
    switch (step.kind) {
      case Step::kReply:
        co_await s.write(step.text);
        break;
      case Step::kReplyBytewise:
        for (char c : step.text) co_await s.write(std::string_view(&c, 1));
        break;
      case Step::kExpect: {
        std::string line = co_await s.read_line();
        if (!line.starts_with(step.text)) {
          s.problems.push_back("expected " + step.text + ", got " + line);
        }
        break;
      }
      case Step::kCheck: {
        std::string line = co_await s.read_line();
        co_await s.write(line == step.text ? step.ok : step.refusal);
        break;
      }
      case Step::kData: {
        std::string d = co_await s.read_until("\r\n.\r\n");
        s.data.push_back(std::move(d));
        break;
      }
      case Step::kReadSome:
        co_await s.read_some();
        break;
      case Step::kStartTls:
        s.tls = std::make_unique<ssl::stream<tcp::socket&>>(s.socket, *s.tls_context);
        co_await s.tls->async_handshake(ssl::stream_base::server, asio::use_awaitable);
        break;
      case Step::kClose: {
        boost::system::error_code ignored;
        s.socket.shutdown(tcp::socket::shutdown_both, ignored);
        s.socket.close(ignored);
        break;
      }
      case Step::kStall:
      case Step::kExpectEof: {
        boost::system::error_code ec;
        std::array<char, 512> buf;
        std::size_t n = 0;
        if (s.tls) {
          n = co_await s.tls->async_read_some(asio::buffer(buf),
                                              asio::redirect_error(asio::use_awaitable, ec));
        } else {
          n = co_await s.socket.async_read_some(asio::buffer(buf),
                                                asio::redirect_error(asio::use_awaitable, ec));
        }
        if (!ec && step.kind == Step::kExpectEof) {
          s.problems.push_back("unexpected bytes: " + std::string(buf.data(), n));
        }
        break;
      }
    }
  }

  std::shared_ptr<State> state_;
};

// --- test certificates ---------------------------------------------------------

// A CA and a server certificate for mx.test.example signed by it, made once
// per run with the openssl command line in a temporary directory.
struct TestPki {
  std::filesystem::path dir;
  std::filesystem::path ca() const { return dir / "ca.pem"; }
  std::filesystem::path cert() const { return dir / "server.pem"; }
  std::filesystem::path key() const { return dir / "server.key"; }
};

// Removes the directory at exit.
struct TempDir {
  std::filesystem::path path;
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
};

const TestPki& test_pki() {
  static const TempDir temp{std::filesystem::temp_directory_path() /
                            ("mailer-smtp-client-pki-" + std::to_string(::getpid()))};
  static const TestPki pki = [] {
    TestPki p;
    p.dir = temp.path;
    std::filesystem::create_directories(p.dir);
    std::string d = p.dir.string();
    const std::string key = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    std::string cmd =
        "cd '" + d + "' && (openssl req -x509" + key +
        " -keyout ca.key -out ca.pem -subj '/CN=mailer test CA' -days 2"
        " && openssl req" +
        key +
        " -keyout server.key -out server.csr -subj '/CN=mx.test.example'"
        " && printf 'subjectAltName=DNS:mx.test.example\\n' > ext.cnf"
        " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key"
        " -CAcreateserial -out server.pem -days 2 -extfile ext.cnf) >openssl.log 2>&1";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("openssl failed, see " + d);
    return p;
  }();
  return pki;
}

std::shared_ptr<ssl::context> server_tls() {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  ctx->use_certificate_chain_file(test_pki().cert().string());
  ctx->use_private_key_file(test_pki().key().string(), ssl::context::pem);
  return ctx;
}

// A client context that trusts the test CA (or, with trust_test_ca false,
// only the system's CAs, which never signed the test certificate).
std::shared_ptr<ssl::context> client_tls(bool trust_test_ca = true) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  if (trust_test_ca) {
    ctx->load_verify_file(test_pki().ca().string());
  } else {
    ctx->set_default_verify_paths();
  }
  return ctx;
}

// --- scripts and helpers --------------------------------------------------------

const std::string kGreeting = "220 peer.example ESMTP\r\n";
const std::string kEhloPipelining =
    "250-peer.example\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 10000000\r\n250 SMTPUTF8\r\n";
const std::string kEhloPlain = "250-peer.example\r\n250 SIZE 10000000\r\n";

std::vector<Step> operator+(std::vector<Step> a, const std::vector<Step>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::vector<Step> opening(const std::string& ehlo_reply) {
  return {reply(kGreeting), expect("EHLO client.example.com"), reply(ehlo_reply)};
}

// One accepted transaction for one recipient on a server without PIPELINING.
std::vector<Step> lockstep_transaction() {
  return {expect("MAIL FROM:<bounce@example.com>"),
          reply("250 2.1.0 Ok\r\n"),
          expect("RCPT TO:<rcpt@example.net>"),
          reply("250 2.1.5 Ok\r\n"),
          expect("DATA"),
          reply("354 End data with <CR><LF>.<CR><LF>\r\n"),
          data(),
          reply("250 2.0.0 Ok: queued as 1\r\n")};
}

SmtpClientOptions options(std::chrono::milliseconds step_timeout = 5s) {
  SmtpClientOptions o;
  o.helo_name = "client.example.com";
  o.starttls = StartTls::kNone;
  SmtpTimeouts& t = o.timeouts;
  t.connect = t.greeting = t.ehlo = t.tls = t.auth = t.mail = t.rcpt = step_timeout;
  t.data_initiation = t.data_block = t.data_termination = t.rset = t.quit = step_timeout;
  return o;
}

SmtpMessage message(std::vector<std::string> recipients = {"rcpt@example.net"},
                    std::string content = "Subject: test\r\n\r\nHello.\r\n") {
  SmtpMessage m;
  m.envelope_from = "bounce@example.com";
  m.recipients = std::move(recipients);
  m.content = std::make_shared<const std::string>(std::move(content));
  return m;
}

class SmtpClientTest : public ::testing::Test {
 protected:
  std::shared_ptr<SmtpClient> make_client(SmtpClientOptions o = options()) {
    return SmtpClient::create(io_, std::move(o));
  }

  SmtpResult wait_for(std::optional<SmtpResult>& slot, std::chrono::milliseconds limit = 20s) {
    EXPECT_TRUE(run_until(
        io_, [&] { return slot.has_value(); }, limit))
        << "no result in time";
    return slot.value_or(SmtpResult{});
  }

  SmtpResult connect(SmtpClient& client, const ScriptedPeer& peer,
                     std::string server_name = "mx.test.example") {
    std::optional<SmtpResult> r;
    client.connect(peer.endpoints(), std::move(server_name), [&](SmtpResult x) { r = x; });
    return wait_for(r);
  }

  SmtpResult send(SmtpClient& client, SmtpMessage m) {
    std::optional<SmtpResult> r;
    client.send(std::move(m), [&](SmtpResult x) { r = x; });
    return wait_for(r);
  }

  SmtpResult quit(SmtpClient& client) {
    std::optional<SmtpResult> r;
    client.quit([&](SmtpResult x) { r = x; });
    return wait_for(r);
  }

  // Lets the peer finish reading what the client sent last.
  void settle(const ScriptedPeer& peer) {
    EXPECT_TRUE(run_until(
        io_, [&] { return peer.finished(); }, 10s))
        << "peer did not finish";
    EXPECT_TRUE(peer.problems().empty()) << ::testing::PrintToString(peer.problems());
  }

  asio::io_context io_;
};

// --- the reader on its own --------------------------------------------------------

TEST(SmtpReplyReaderTest, AssemblesAMultiLineReplyFedOneByteAtATime) {
  SmtpReplyReader reader;
  std::string wire = "250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n354 go\r\n";
  for (char c : wire) reader.feed(std::string_view(&c, 1));
  std::optional<ReceivedReply> first = reader.take();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->reply.code, 250);
  EXPECT_EQ(first->reply.text, "mx.example\nPIPELINING\n8BITMIME");
  std::optional<ReceivedReply> second = reader.take();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->reply.code, 354);
  EXPECT_FALSE(reader.take());
}

TEST(SmtpReplyReaderTest, YieldsAReplyCutShortByTheEndOfTheStream) {
  SmtpReplyReader reader;
  reader.feed("421-4.7.28 Our system has detected an unusual rate\r\n421-4.7.28 of unsol");
  EXPECT_FALSE(reader.ready());
  reader.finish();
  std::optional<ReceivedReply> r = reader.take();
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->cut_short);
  EXPECT_EQ(r->reply.code, 421);
  EXPECT_EQ(r->reply.enhanced_status, "4.7.28");
  EXPECT_EQ(r->reply.text, "Our system has detected an unusual rate\nof unsol");
}

TEST(SmtpReplyReaderTest, RefusesLinesWithoutACodeAndOverlongLines) {
  SmtpReplyReader garbage;
  garbage.feed("250 ok\r\nHTTP/1.1 400 Bad Request\r\n");
  EXPECT_TRUE(garbage.take());
  EXPECT_TRUE(garbage.broken());
  SmtpReplyReader overlong(16);
  overlong.feed("250 " + std::string(40, 'x'));
  EXPECT_TRUE(overlong.broken());
  EXPECT_FALSE(overlong.take());
}

TEST(DotStuffingTest, DoublesLeadingDotsAndTerminatesTheData) {
  EXPECT_EQ(dot_stuffed(".a\r\nb\r\n..c\r\n.\r\nend"), "..a\r\nb\r\n...c\r\n..\r\nend\r\n.\r\n");
  EXPECT_EQ(dot_stuffed("x\r\n"), "x\r\n.\r\n");
}

// --- connections and transactions -------------------------------------------------

TEST_F(SmtpClientTest, PipelinesTheEnvelopeAndReportsTheOneRefusedRecipient) {
  ScriptedPeer peer(io_, opening(kEhloPipelining) +
                             std::vector<Step>{
                                 // Every command of the group is read before
                                 // any reply goes out: only a pipelining client
                                 // gets past this point.
                                 expect("MAIL FROM:<bounce@example.com> SIZE="),
                                 expect("RCPT TO:<a@example.net>"),
                                 expect("RCPT TO:<b@example.net>"),
                                 expect("RCPT TO:<c@example.net>"),
                                 expect("DATA"),
                                 reply("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 <b@example.net>: "
                                       "Recipient address rejected\r\n250 2.1.5 Ok\r\n354 Go\r\n"),
                                 data(),
                                 reply("250 2.0.0 Ok: queued as 7\r\n"),
                                 expect("QUIT"),
                                 reply("221 2.0.0 Bye\r\n"),
                             });
  auto client = make_client();
  ASSERT_TRUE(connect(*client, peer).ok());
  EXPECT_TRUE(client->capabilities().pipelining);
  SmtpResult r = send(*client, message({"a@example.net", "b@example.net", "c@example.net"}));
  EXPECT_EQ(r.outcome, SmtpOutcome::kOk) << r.error;
  ASSERT_EQ(r.recipients.size(), 3u);
  EXPECT_TRUE(r.recipients[0].accepted());
  EXPECT_FALSE(r.recipients[1].accepted());
  EXPECT_EQ(r.recipients[1].address, "b@example.net");
  EXPECT_EQ(r.recipients[1].reply.code, 550);
  EXPECT_EQ(r.recipients[1].reply.enhanced_status, "5.1.1");
  EXPECT_TRUE(r.recipients[2].accepted());
  ASSERT_TRUE(r.end_of_data);
  EXPECT_EQ(r.end_of_data->code, 250);
  EXPECT_EQ(quit(*client).outcome, SmtpOutcome::kOk);
  settle(peer);
}

TEST_F(SmtpClientTest, WaitsForEachReplyWhenTheServerDoesNotPipeline) {
  ScriptedPeer peer(io_,
                    opening(kEhloPlain) + lockstep_transaction() +
                        std::vector<Step>{expect("QUIT"), reply("221 Bye\r\n")},
                    /*lockstep=*/true);
  auto client = make_client();
  ASSERT_TRUE(connect(*client, peer).ok());
  EXPECT_FALSE(client->capabilities().pipelining);
  SmtpResult r = send(*client, message());
  EXPECT_EQ(r.outcome, SmtpOutcome::kOk) << r.error;
  EXPECT_FALSE(r.reused_connection);
  EXPECT_EQ(quit(*client).outcome, SmtpOutcome::kOk);
  settle(peer);
}

TEST_F(SmtpClientTest, FallsBackToHeloWhenEhloIsUnknown) {
  ScriptedPeer peer(io_, {reply(kGreeting), expect("EHLO"), reply("502 5.5.2 Error\r\n"),
                          expect("HELO client.example.com"), reply("250 peer.example\r\n")});
  auto client = make_client();
  SmtpResult r = connect(*client, peer);
  EXPECT_EQ(r.outcome, SmtpOutcome::kOk) << r.error;
  EXPECT_FALSE(client->capabilities().esmtp);
  settle(peer);
}

TEST_F(SmtpClientTest, ReadsMultiLineRepliesArrivingOneByteAtATime) {
  ScriptedPeer peer(io_,
                    {reply_bytewise(kGreeting), expect("EHLO"), reply_bytewise(kEhloPipelining),
                     expect("MAIL"), expect("RCPT"), expect("DATA"),
                     reply_bytewise("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 Go\r\n"), data(),
                     reply_bytewise("250-2.0.0 Ok: queued as 9\r\n250-2.0.0 scanned clean\r\n"
                                    "250 2.0.0 see you\r\n")});
  auto client = make_client();
  ASSERT_TRUE(connect(*client, peer).ok());
  EXPECT_TRUE(client->capabilities().pipelining);
  EXPECT_TRUE(client->capabilities().eight_bit_mime);
  EXPECT_TRUE(client->capabilities().smtputf8);
  EXPECT_EQ(client->capabilities().size, 10000000u);
  SmtpResult r = send(*client, message());
  ASSERT_EQ(r.outcome, SmtpOutcome::kOk) << r.error;
  ASSERT_TRUE(r.end_of_data);
  EXPECT_EQ(r.end_of_data->enhanced_status, "2.0.0");
  EXPECT_EQ(r.end_of_data->text, "Ok: queued as 9\nscanned clean\nsee you");
  settle(peer);
}

TEST_F(SmtpClientTest, AReplyCutShortByTheServerClosingCountsWithItsCode) {
  ScriptedPeer peer(
      io_, opening(kEhloPipelining) +
               std::vector<Step>{expect("MAIL"), expect("RCPT"), expect("DATA"),
                                 reply("421-4.7.28 Our system has detected an unusual rate of\r\n"
                                       "421-4.7.28 unsolicited mail originating from your IP"),
                                 close_connection()});
  auto client = make_client();
  ASSERT_TRUE(connect(*client, peer).ok());
  SmtpResult r = send(*client, message());
  EXPECT_EQ(r.outcome, SmtpOutcome::kRejected);
  EXPECT_TRUE(r.reply_from_server);
  EXPECT_TRUE(r.reply_cut_short);
  EXPECT_EQ(r.reply.code, 421);
  EXPECT_EQ(r.reply.enhanced_status, "4.7.28");
  EXPECT_EQ(r.reply.stage, SmtpStage::kMail);
  EXPECT_NE(r.reply.text.find("unsolicited mail"), std::string::npos);
  EXPECT_TRUE(r.deferral());
  EXPECT_FALSE(client->usable());
  // The throttle hears it as what it is: a provider asking to slow down.
  EXPECT_EQ(throttle::ReplyClassifier().classify(r.reply, "gmail").signal,
            throttle::Signal::kThrottle);
  settle(peer);
}

TEST_F(SmtpClientTest, BytesThatAreNotRepliesAreAProtocolError) {
  ScriptedPeer peer(io_, {reply("HTTP/1.1 400 Bad Request\r\n\r\n"), stall()});
  auto client = make_client();
  SmtpResult r = connect(*client, peer);
  EXPECT_EQ(r.outcome, SmtpOutcome::kProtocolError) << r.error;
  EXPECT_FALSE(r.reply_from_server);
  EXPECT_TRUE(r.deferral());
  EXPECT_FALSE(client->usable());
  settle(peer);
}

TEST_F(SmtpClientTest, GreetingOf421EndsTheConnectionWithThatReply) {
  ScriptedPeer peer(
      io_, {reply("421 4.7.0 peer.example Service not available\r\n"), close_connection()});
  auto client = make_client();
  SmtpResult r = connect(*client, peer);
  EXPECT_EQ(r.outcome, SmtpOutcome::kRejected);
  EXPECT_EQ(r.reply.code, 421);
  EXPECT_EQ(r.reply.stage, SmtpStage::kGreeting);
  EXPECT_TRUE(r.deferral());
  EXPECT_FALSE(client->usable());
  settle(peer);
}

// A refusal at each stage of a transaction, from a server without PIPELINING.
struct Refusal {
  SmtpStage stage;
  std::string wire;
  const char* name;
};

class SmtpClientRefusalTest : public SmtpClientTest,
                              public ::testing::WithParamInterface<Refusal> {};

TEST_P(SmtpClientRefusalTest, RefusalEndsTheTransactionWithTheServersReplyAtItsStage) {
  const Refusal& refusal = GetParam();
  std::vector<Step> script = opening(kEhloPlain);
  auto answer = [&](SmtpStage stage, const char* ok) {
    script.push_back(reply(stage == refusal.stage ? refusal.wire : ok));
  };
  script.push_back(expect("MAIL"));
  answer(SmtpStage::kMail, "250 Ok\r\n");
  if (refusal.stage != SmtpStage::kMail) {
    script.push_back(expect("RCPT"));
    answer(SmtpStage::kRcpt, "250 Ok\r\n");
  }
  if (refusal.stage == SmtpStage::kData || refusal.stage == SmtpStage::kEndOfData) {
    script.push_back(expect("DATA"));
    answer(SmtpStage::kData, "354 Go\r\n");
  }
  if (refusal.stage == SmtpStage::kEndOfData) {
    script.push_back(data());
    answer(SmtpStage::kEndOfData, "");
  }
  // The connection stays usable: the next transaction starts clean, with
  // RSET when the refused one was left open.
  if (refusal.stage != SmtpStage::kMail) {
    if (refusal.stage != SmtpStage::kEndOfData) {
      script.push_back(expect("RSET"));
      script.push_back(reply("250 Ok\r\n"));
    }
  }
  script = script + lockstep_transaction();
  ScriptedPeer peer(io_, script, /*lockstep=*/true);
  auto client = make_client();
  ASSERT_TRUE(connect(*client, peer).ok());
  SmtpResult r = send(*client, message());
  EXPECT_EQ(r.outcome, SmtpOutcome::kRejected) << r.error;
  EXPECT_TRUE(r.reply_from_server);
  EXPECT_EQ(r.reply.stage, refusal.stage);
  EXPECT_EQ(r.reply.code, std::stoi(refusal.wire.substr(0, 3)));
  EXPECT_EQ(r.deferral(), refusal.wire[0] == '4');
  EXPECT_EQ(r.end_of_data.has_value(), refusal.stage == SmtpStage::kEndOfData);
  SmtpResult next = send(*client, message());
  EXPECT_EQ(next.outcome, SmtpOutcome::kOk) << next.error;
  EXPECT_TRUE(next.reused_connection);
  settle(peer);
}

INSTANTIATE_TEST_SUITE_P(
    AtEveryStage, SmtpClientRefusalTest,
    ::testing::Values(
        Refusal{SmtpStage::kMail, "451 4.3.0 Try again later\r\n", "TransientAtMail"},
        Refusal{SmtpStage::kMail, "553 5.7.1 Sender rejected\r\n", "PermanentAtMail"},
        Refusal{SmtpStage::kRcpt, "450 4.2.1 Receiving too fast\r\n", "TransientAtRcpt"},
        Refusal{SmtpStage::kRcpt, "550 5.1.1 User unknown\r\n", "PermanentAtRcpt"},
        Refusal{SmtpStage::kData, "451 4.3.0 Not now\r\n", "TransientAtData"},
        Refusal{SmtpStage::kData, "554 5.5.1 No valid recipients\r\n", "PermanentAtData"},
        Refusal{SmtpStage::kEndOfData, "452 4.2.2 Mailbox full\r\n", "TransientAtEndOfData"},
        Refusal{SmtpStage::kEndOfData, "554 5.7.1 Message refused\r\n", "PermanentAtEndOfData"}),
    [](const ::testing::TestParamInfo<Refusal>& info) { return std::string(info.param.name); });

TEST_F(SmtpClientTest, ConnectionDroppedMidDataIsADeferralNeverASend) {
  ScriptedPeer peer(io_, opening(kEhloPipelining) +
                             std::vector<Step>{expect("MAIL"), expect("RCPT"), expect("DATA"),
                                               reply("250 Ok\r\n250 Ok\r\n354 Go\r\n"), read_some(),
                                               close_connection()});
  auto client = make_client();
  ASSERT_TRUE(connect(*client, peer).ok());
  std::string big = "Subject: big\r\n\r\n";
  while (big.size() < 512 * 1024) big += "a line of the body that goes on and on and on\r\n";
  SmtpResult r = send(*client, message({"rcpt@example.net"}, big));
  EXPECT_EQ(r.outcome, SmtpOutcome::kConnectionLost) << r.error;
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(r.deferral());
  EXPECT_FALSE(r.end_of_data);
  EXPECT_EQ(r.reply.stage, SmtpStage::kEndOfData);
  EXPECT_FALSE(client->usable());
  settle(peer);
}

// Found by the client's fuzz target: a 3xx after the final dot counted as
// accepted. Only 2xx completes MAIL, RCPT and the end of data; anything else
// of class 3 means the dialogue is out of step: a deferral, never a send.
TEST_F(SmtpClientTest, IntermediateReplyWhereACompletionIsDueIsADeferralNeverASend) {
  for (const std::string stage : {"RCPT", "EOD"}) {
    SCOPED_TRACE(stage);
    std::vector<Step> script = opening(kEhloPlain);
    script.push_back(expect("MAIL"));
    script.push_back(reply("250 Ok\r\n"));
    script.push_back(expect("RCPT"));
    if (stage == "RCPT") {
      script.push_back(reply("350 Go on\r\n"));
    } else {
      script.push_back(reply("250 Ok\r\n"));
      script.push_back(expect("DATA"));
      script.push_back(reply("354 Go\r\n"));
      script.push_back(data());
      script.push_back(reply("350 Ok\r\n"));
    }
    ScriptedPeer peer(io_, script, /*lockstep=*/true);
    auto client = make_client();
    ASSERT_TRUE(connect(*client, peer).ok());
    SmtpResult r = send(*client, message());
    EXPECT_EQ(r.outcome, SmtpOutcome::kProtocolError) << r.error;
    EXPECT_FALSE(r.ok());
    EXPECT_TRUE(r.deferral());
    EXPECT_NE(r.error.find("350"), std::string::npos) << r.error;
    EXPECT_FALSE(client->usable());
    settle(peer);
  }
}

TEST_F(SmtpClientTest, StalledServerHitsTheStageTimeout) {
  ScriptedPeer peer(
      io_, opening(kEhloPlain) +
               std::vector<Step>{expect("MAIL"), reply("250 Ok\r\n"), expect("RCPT"), stall()});
  SmtpClientOptions o = options();
  o.timeouts.rcpt = 300ms;
  auto client = make_client(o);
  ASSERT_TRUE(connect(*client, peer).ok());
  auto start = std::chrono::steady_clock::now();
  SmtpResult r = send(*client, message());
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.outcome, SmtpOutcome::kTimedOut) << r.error;
  EXPECT_EQ(r.reply.stage, SmtpStage::kRcpt);
  EXPECT_TRUE(r.deferral());
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 3s);
  settle(peer);
}

TEST_F(SmtpClientTest, RequiredStartTlsNotOfferedFailsWithoutSending) {
  ScriptedPeer peer(io_, opening(kEhloPipelining) + std::vector<Step>{expect_eof()});
  SmtpClientOptions o = options();
  o.starttls = StartTls::kRequired;
  auto client = make_client(o);
  SmtpResult r = connect(*client, peer);
  EXPECT_EQ(r.outcome, SmtpOutcome::kTlsFailed);
  EXPECT_TRUE(r.deferral());
  SmtpResult s = send(*client, message());
  EXPECT_EQ(s.outcome, SmtpOutcome::kNotAttempted);
  settle(peer);
  EXPECT_EQ(peer.count("MAIL"), 0u);
}

std::vector<Step> starttls_opening() {
  return {reply(kGreeting),
          expect("EHLO client.example.com"),
          reply("250-peer.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n"),
          expect("STARTTLS"),
          reply("220 2.0.0 Ready to start TLS\r\n"),
          start_tls()};
}

TEST_F(SmtpClientTest, StartTlsVerifiesTheCertificateAndSendsOverTls) {
  ScriptedPeer peer(
      io_,
      starttls_opening() + std::vector<Step>{expect("EHLO client.example.com"),
                                             reply("250-peer.example\r\n250 PIPELINING\r\n"),
                                             expect("MAIL"), expect("RCPT"), expect("DATA"),
                                             reply("250 Ok\r\n250 Ok\r\n354 Go\r\n"), data(),
                                             reply("250 Ok: queued\r\n")},
      false, server_tls());
  SmtpClientOptions o = options();
  o.starttls = StartTls::kRequired;
  o.tls_context = client_tls();
  auto client = make_client(o);
  SmtpResult c = connect(*client, peer, "mx.test.example");
  ASSERT_EQ(c.outcome, SmtpOutcome::kOk) << c.error;
  EXPECT_TRUE(client->tls_active());
  SmtpResult r = send(*client, message());
  EXPECT_EQ(r.outcome, SmtpOutcome::kOk) << r.error;
  settle(peer);
}

TEST_F(SmtpClientTest, StartTlsRefusesACertificateForAnotherName) {
  ScriptedPeer peer(io_, starttls_opening(), false, server_tls());
  SmtpClientOptions o = options();
  o.starttls = StartTls::kOpportunistic;
  o.tls_context = client_tls();
  auto client = make_client(o);
  SmtpResult r = connect(*client, peer, "mx.other.example");
  EXPECT_EQ(r.outcome, SmtpOutcome::kTlsFailed) << r.error;
  EXPECT_FALSE(client->usable());
  EXPECT_FALSE(client->tls_active()) << "a handshake that failed is no TLS session";
  run_until(
      io_, [&] { return !peer.problems().empty() || peer.finished(); }, 5s);
  EXPECT_EQ(peer.count("MAIL"), 0u);
}

TEST_F(SmtpClientTest, StartTlsRefusesACertificateFromAnUntrustedCa) {
  ScriptedPeer peer(io_, starttls_opening(), false, server_tls());
  SmtpClientOptions o = options();
  o.starttls = StartTls::kOpportunistic;
  o.tls_context = client_tls(/*trust_test_ca=*/false);
  auto client = make_client(o);
  SmtpResult r = connect(*client, peer, "mx.test.example");
  EXPECT_EQ(r.outcome, SmtpOutcome::kTlsFailed) << r.error;
  EXPECT_NE(r.error.find("certificate"), std::string::npos) << r.error;
  EXPECT_FALSE(client->tls_active());
}

TEST_F(SmtpClientTest, OpportunisticStartTlsFallsBackToPlainTextWhenNotOffered) {
  ScriptedPeer peer(io_, opening(kEhloPipelining) +
                             std::vector<Step>{expect("MAIL"), expect("RCPT"), expect("DATA"),
                                               reply("250 Ok\r\n250 Ok\r\n354 Go\r\n"), data(),
                                               reply("250 Ok\r\n")});
  SmtpClientOptions o = options();
  o.starttls = StartTls::kOpportunistic;
  auto client = make_client(o);
  ASSERT_EQ(connect(*client, peer).outcome, SmtpOutcome::kOk);
  EXPECT_FALSE(client->tls_active());
  EXPECT_EQ(send(*client, message()).outcome, SmtpOutcome::kOk);
  settle(peer);
}

TEST_F(SmtpClientTest, ImplicitTlsSpeaksTlsFromTheFirstByte) {
  ScriptedPeer peer(
      io_,
      std::vector<Step>{start_tls()} + opening(kEhloPipelining) +
          std::vector<Step>{expect("MAIL"), expect("RCPT"), expect("DATA"),
                            reply("250 Ok\r\n250 Ok\r\n354 Go\r\n"), data(), reply("250 Ok\r\n")},
      false, server_tls());
  SmtpClientOptions o = options();
  o.implicit_tls = true;
  o.tls_context = client_tls();
  auto client = make_client(o);
  SmtpResult c = connect(*client, peer);
  ASSERT_EQ(c.outcome, SmtpOutcome::kOk) << c.error;
  EXPECT_TRUE(client->tls_active());
  EXPECT_EQ(send(*client, message()).outcome, SmtpOutcome::kOk);
  settle(peer);
}

TEST_F(SmtpClientTest, RepliesSentBeforeTheTlsHandshakeAreRefused) {
  // A man in the middle appends a reply to the 220 in clear text, hoping it
  // is read as if it came over TLS (CVE-2011-0411).
  ScriptedPeer peer(
      io_, {reply(kGreeting), expect("EHLO"), reply("250-peer.example\r\n250 STARTTLS\r\n"),
            expect("STARTTLS"), reply("220 Go ahead\r\n250 injected\r\n")});
  SmtpClientOptions o = options();
  o.starttls = StartTls::kRequired;
  o.tls_context = client_tls();
  auto client = make_client(o);
  SmtpResult r = connect(*client, peer);
  EXPECT_EQ(r.outcome, SmtpOutcome::kProtocolError) << r.error;
  EXPECT_FALSE(client->usable());
}

TEST_F(SmtpClientTest, AuthPlainOverStartTlsWithCredentialsTheServerChecks) {
  std::string token = "AHJlbGF5LXVzZXIAczNjcjN0";  // base64("\0relay-user\0s3cr3t")
  ScriptedPeer peer(
      io_,
      starttls_opening() +
          std::vector<Step>{expect("EHLO"), reply("250-peer.example\r\n250 AUTH LOGIN PLAIN\r\n"),
                            check("AUTH PLAIN " + token, "235 2.7.0 Authenticated\r\n",
                                  "535 5.7.8 Authentication failed\r\n")},
      false, server_tls());
  SmtpClientOptions o = options();
  o.starttls = StartTls::kRequired;
  o.tls_context = client_tls();
  o.login = SmtpLogin{"relay-user", "s3cr3t"};
  auto client = make_client(o);
  SmtpResult r = connect(*client, peer);
  EXPECT_EQ(r.outcome, SmtpOutcome::kOk) << r.error;
  EXPECT_EQ(r.reply.code, 235);
  settle(peer);
}

TEST_F(SmtpClientTest, AuthLoginWithAWrongPasswordIsRefusedAndNeverShown) {
  // base64: "relay-user" -> cmVsYXktdXNlcg==, "s3cr3t" -> czNjcjN0
  ScriptedPeer peer(
      io_, opening("250-peer.example\r\n250 AUTH LOGIN\r\n") +
               std::vector<Step>{expect("AUTH LOGIN"), reply("334 VXNlcm5hbWU6\r\n"),
                                 check("cmVsYXktdXNlcg==", "334 UGFzc3dvcmQ6\r\n", "535 no\r\n"),
                                 check("czNjcjN0", "235 2.7.0 Ok\r\n",
                                       "535 5.7.8 Authentication credentials invalid\r\n")});
  SmtpClientOptions o = options();
  o.allow_login_without_tls = true;
  o.login = SmtpLogin{"relay-user", "wrong-password"};
  auto client = make_client(o);
  SmtpResult r = connect(*client, peer);
  EXPECT_EQ(r.outcome, SmtpOutcome::kRejected);
  EXPECT_EQ(r.reply.code, 535);
  EXPECT_EQ(r.error.find("wrong-password"), std::string::npos);
  EXPECT_EQ(r.error.find("d3JvbmctcGFzc3dvcmQ"), std::string::npos);
  EXPECT_FALSE(client->usable());
  settle(peer);
}

TEST_F(SmtpClientTest, AuthLoginWithTheRightPasswordOpensTheSession) {
  ScriptedPeer peer(
      io_, opening("250-peer.example\r\n250 AUTH LOGIN\r\n") +
               std::vector<Step>{expect("AUTH LOGIN"), reply("334 VXNlcm5hbWU6\r\n"),
                                 check("cmVsYXktdXNlcg==", "334 UGFzc3dvcmQ6\r\n", "535 no\r\n"),
                                 check("czNjcjN0", "235 2.7.0 Ok\r\n", "535 5.7.8 invalid\r\n")});
  SmtpClientOptions o = options();
  o.allow_login_without_tls = true;
  o.login = SmtpLogin{"relay-user", "s3cr3t"};
  auto client = make_client(o);
  SmtpResult r = connect(*client, peer);
  EXPECT_EQ(r.outcome, SmtpOutcome::kOk) << r.error;
  settle(peer);
}

TEST_F(SmtpClientTest, CredentialsAreNotSentWithoutTls) {
  ScriptedPeer peer(
      io_, opening("250-peer.example\r\n250 AUTH PLAIN\r\n") + std::vector<Step>{expect_eof()});
  SmtpClientOptions o = options();
  o.login = SmtpLogin{"relay-user", "s3cr3t"};
  auto client = make_client(o);
  SmtpResult r = connect(*client, peer);
  EXPECT_EQ(r.outcome, SmtpOutcome::kTlsFailed);
  settle(peer);
  EXPECT_EQ(peer.count("AUTH"), 0u);
}

TEST_F(SmtpClientTest, EightBitContentToAServerWithout8BitMimeIsNotSent) {
  ScriptedPeer peer(io_, opening(kEhloPlain) + lockstep_transaction(), /*lockstep=*/true);
  auto client = make_client();
  ASSERT_TRUE(connect(*client, peer).ok());
  SmtpResult r =
      send(*client, message({"rcpt@example.net"}, "Subject: caf\xc3\xa9\r\n\r\n\xc3\xa9\r\n"));
  EXPECT_EQ(r.outcome, SmtpOutcome::kNotAttempted);
  EXPECT_EQ(r.reply.code, 554);
  EXPECT_EQ(r.reply.enhanced_status, "5.6.3");
  EXPECT_FALSE(r.reply_from_server);
  // The connection is still good for content the server can take.
  EXPECT_EQ(send(*client, message()).outcome, SmtpOutcome::kOk);
  settle(peer);
  EXPECT_EQ(peer.count("MAIL"), 1u);
  EXPECT_EQ(peer.data().at(0).find('\xc3'), std::string::npos);
}

TEST_F(SmtpClientTest, EightBitContentIsDeclaredToAServerWith8BitMime) {
  ScriptedPeer peer(
      io_, opening(kEhloPipelining) +
               std::vector<Step>{expect("MAIL FROM:<bounce@example.com> SIZE="), expect("RCPT"),
                                 expect("DATA"), reply("250 Ok\r\n250 Ok\r\n354 Go\r\n"), data(),
                                 reply("250 Ok\r\n")});
  auto client = make_client();
  ASSERT_TRUE(connect(*client, peer).ok());
  SmtpResult r = send(*client, message({"rcpt@example.net"}, "Subject: x\r\n\r\n\xc3\xa9\r\n"));
  EXPECT_EQ(r.outcome, SmtpOutcome::kOk) << r.error;
  settle(peer);
  ASSERT_FALSE(peer.commands().empty());
  EXPECT_NE(peer.commands().at(1).find(" BODY=8BITMIME"), std::string::npos);
}

TEST_F(SmtpClientTest, RefusedMailInAPipelinedGroupIsTheResult) {
  ScriptedPeer peer(io_, opening(kEhloPipelining) +
                             std::vector<Step>{expect("MAIL"), expect("RCPT"), expect("DATA"),
                                               reply("553 5.7.1 Sender address rejected\r\n"
                                                     "503 5.5.1 Error: need MAIL command\r\n"
                                                     "503 5.5.1 Error: need RCPT command\r\n")} +
                             std::vector<Step>{expect("MAIL"), expect("RCPT"), expect("DATA"),
                                               reply("250 Ok\r\n250 Ok\r\n354 Go\r\n"), data(),
                                               reply("250 Ok\r\n")});
  auto client = make_client();
  ASSERT_TRUE(connect(*client, peer).ok());
  SmtpResult r = send(*client, message());
  EXPECT_EQ(r.outcome, SmtpOutcome::kRejected);
  EXPECT_EQ(r.reply.code, 553);
  EXPECT_EQ(r.reply.stage, SmtpStage::kMail);
  ASSERT_EQ(r.recipients.size(), 1u);
  EXPECT_EQ(r.recipients[0].reply.code, 503);
  // Nothing was left open, so the next message goes without RSET.
  EXPECT_EQ(send(*client, message()).outcome, SmtpOutcome::kOk);
  settle(peer);
  EXPECT_EQ(peer.count("RSET"), 0u);
}

TEST_F(SmtpClientTest, MessageLargerThanTheServersSizeLimitIsNotSent) {
  ScriptedPeer peer(
      io_, opening("250-peer.example\r\n250 SIZE 1000\r\n") + std::vector<Step>{expect_eof()},
      /*lockstep=*/true);
  auto client = make_client();
  ASSERT_TRUE(connect(*client, peer).ok());
  EXPECT_EQ(client->capabilities().size, 1000u);
  SmtpResult r = send(*client, message({"rcpt@example.net"}, std::string(2000, 'x') + "\r\n"));
  EXPECT_EQ(r.outcome, SmtpOutcome::kNotAttempted);
  EXPECT_EQ(r.reply.code, 552);
  EXPECT_FALSE(r.deferral());
  client->close();
  settle(peer);
  EXPECT_EQ(peer.count("MAIL"), 0u);
}

TEST_F(SmtpClientTest, NonAsciiAddressesNeedSmtpUtf8) {
  ScriptedPeer peer(
      io_,
      opening(kEhloPipelining) +
          std::vector<Step>{expect("MAIL FROM:<bounce@example.com> SIZE="),
                            expect("RCPT TO:<j\xc3\xb6rg@example.net>"), expect("DATA"),
                            reply("250 Ok\r\n250 Ok\r\n354 Go\r\n"), data(), reply("250 Ok\r\n")});
  auto client = make_client();
  ASSERT_TRUE(connect(*client, peer).ok());
  SmtpResult r = send(*client, message({"j\xc3\xb6rg@example.net"}));
  EXPECT_EQ(r.outcome, SmtpOutcome::kOk) << r.error;
  settle(peer);
  EXPECT_NE(peer.commands().at(1).find(" SMTPUTF8"), std::string::npos);
}

TEST_F(SmtpClientTest, DotStuffsTheContentOnTheWire) {
  ScriptedPeer peer(io_, opening(kEhloPlain) + lockstep_transaction(), /*lockstep=*/true);
  auto client = make_client();
  ASSERT_TRUE(connect(*client, peer).ok());
  SmtpResult r = send(
      *client, message({"rcpt@example.net"}, "Subject: dots\r\n\r\n.hidden\r\n..two\r\n.\r\nend"));
  EXPECT_EQ(r.outcome, SmtpOutcome::kOk) << r.error;
  settle(peer);
  ASSERT_EQ(peer.data().size(), 1u);
  EXPECT_EQ(peer.data()[0], "Subject: dots\r\n\r\n..hidden\r\n...two\r\n..\r\nend\r\n.\r\n");
}

TEST_F(SmtpClientTest, DeliversManyMessagesOverOneConnectionToSmtpSink) {
  PostfixSmtpSink sink;
  constexpr std::size_t kMessages = 200;
  SmtpClientOptions o = options();
  o.max_messages = kMessages;
  auto client = make_client(o);
  std::optional<SmtpResult> connected;
  client->connect({tcp::endpoint(asio::ip::make_address("127.0.0.1"), sink.port())}, "localhost",
                  [&](SmtpResult r) { connected = r; });
  ASSERT_TRUE(wait_for(connected).ok()) << connected->error;
  EXPECT_TRUE(client->capabilities().pipelining);
  std::vector<SmtpResult> results;
  for (std::size_t i = 0; i < kMessages; ++i) {
    client->send(message({"rcpt" + std::to_string(i) + "@example.net"}),
                 [&](SmtpResult r) { results.push_back(std::move(r)); });
  }
  // One more than the connection may carry.
  std::optional<SmtpResult> extra;
  client->send(message(), [&](SmtpResult r) { extra = r; });
  ASSERT_TRUE(run_until(
      io_, [&] { return results.size() == kMessages && extra; }, 30s));
  for (std::size_t i = 0; i < kMessages; ++i) {
    ASSERT_EQ(results[i].outcome, SmtpOutcome::kOk) << i << ": " << results[i].error;
    EXPECT_EQ(results[i].reused_connection, i > 0);
  }
  EXPECT_EQ(extra->outcome, SmtpOutcome::kNotAttempted);
  EXPECT_EQ(client->messages_started(), kMessages);
  EXPECT_FALSE(client->usable());
  EXPECT_EQ(quit(*client).outcome, SmtpOutcome::kOk);
}

// The rehearsal sink with --tls-cert/--tls-key: the client requires
// STARTTLS and verifies the sink's certificate against the test CA; the
// messages go over TLS and arrive.
TEST_F(SmtpClientTest, RequiredStartTlsToTheSinkVerifiesItsCertificateAndDelivers) {
  SinkOptions so;
  so.tls = sink_tls_context(test_pki().cert().string(), test_pki().key().string());
  mailer::testing::SinkThread sink(std::move(so));
  SmtpClientOptions o = options();
  o.starttls = StartTls::kRequired;
  o.verify_certificates = true;
  o.tls_context = client_tls();
  auto client = make_client(o);
  std::optional<SmtpResult> connected;
  client->connect({tcp::endpoint(asio::ip::make_address("127.0.0.1"), sink.port())},
                  "mx.test.example", [&](SmtpResult r) { connected = r; });
  ASSERT_EQ(wait_for(connected).outcome, SmtpOutcome::kOk) << connected->error;
  EXPECT_TRUE(client->tls_active());
  // The EHLO after the upgrade no longer offers STARTTLS.
  EXPECT_FALSE(client->capabilities().starttls);
  EXPECT_TRUE(client->capabilities().pipelining);
  for (int i = 0; i < 3; ++i) {
    SmtpResult r = send(*client, message({"rcpt" + std::to_string(i) + "@example.net"}));
    EXPECT_EQ(r.outcome, SmtpOutcome::kOk) << r.error;
  }
  EXPECT_EQ(quit(*client).outcome, SmtpOutcome::kOk);
  const SinkCounters c = sink.counters();
  EXPECT_EQ(c.accepted, 3u);
  EXPECT_EQ(c.tls_sessions, 1u);
  EXPECT_EQ(c.tls_failed, 0u);
}

// The same sink reached under a name its certificate does not carry: the
// handshake is refused by the client and no message goes out.
TEST_F(SmtpClientTest, RequiredStartTlsToTheSinkUnderAnotherNameIsRefused) {
  SinkOptions so;
  so.tls = sink_tls_context(test_pki().cert().string(), test_pki().key().string());
  mailer::testing::SinkThread sink(std::move(so));
  SmtpClientOptions o = options();
  o.starttls = StartTls::kRequired;
  o.verify_certificates = true;
  o.tls_context = client_tls();
  auto client = make_client(o);
  std::optional<SmtpResult> connected;
  client->connect({tcp::endpoint(asio::ip::make_address("127.0.0.1"), sink.port())},
                  "mx.other.example", [&](SmtpResult r) { connected = r; });
  SmtpResult r = wait_for(connected);
  EXPECT_EQ(r.outcome, SmtpOutcome::kTlsFailed) << r.error;
  EXPECT_TRUE(r.deferral());
  EXPECT_FALSE(client->usable());
  SmtpResult s = send(*client, message());
  EXPECT_EQ(s.outcome, SmtpOutcome::kNotAttempted);
  // The sink saw the handshake fail and took nothing.
  EXPECT_TRUE(mailer::testing::run_until(
      io_, [&] { return sink.counters().tls_failed == 1; }, 5s));
  EXPECT_EQ(sink.counters().tls_sessions, 0u);
  EXPECT_EQ(sink.counters().accepted, 0u);
}

// A sink without a certificate neither offers STARTTLS nor takes it.
TEST_F(SmtpClientTest, SinkWithoutACertificateDoesNotOfferStartTls) {
  mailer::testing::SinkThread sink(SinkOptions{});
  SmtpClientOptions o = options();
  o.starttls = StartTls::kRequired;
  auto client = make_client(o);
  std::optional<SmtpResult> connected;
  client->connect({tcp::endpoint(asio::ip::make_address("127.0.0.1"), sink.port())},
                  "mx.test.example", [&](SmtpResult r) { connected = r; });
  SmtpResult r = wait_for(connected);
  EXPECT_EQ(r.outcome, SmtpOutcome::kTlsFailed) << r.error;
  EXPECT_EQ(sink.counters().accepted, 0u);
}

TEST_F(SmtpClientTest, RefusedConnectionIsAConnectionFailure) {
  // A socket bound to a port but not listening holds the port (no other
  // process can take it meanwhile) and makes the kernel refuse connections.
  tcp::socket held(io_);
  held.open(tcp::v4());
  held.bind(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const unsigned short port = held.local_endpoint().port();
  auto client = make_client();
  std::optional<SmtpResult> r;
  client->connect({tcp::endpoint(asio::ip::make_address("127.0.0.1"), port)}, "localhost",
                  [&](SmtpResult x) { r = x; });
  SmtpResult result = wait_for(r);
  EXPECT_EQ(result.outcome, SmtpOutcome::kConnectionLost);
  EXPECT_TRUE(result.deferral());
}

}  // namespace
}  // namespace mailer::sender
