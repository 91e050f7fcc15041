// The rehearsal sink spoken to over loopback: protocol, maildir, capacity,
// provider deferrals, penalty box and fault injection.
#include <gtest/gtest.h>

#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <fstream>
#include <sstream>

#include "sender/smtp_client.h"
#include "sender/smtp_sink.h"
#include "tests/sender/loopback_peers.h"
#include "tests/sender/sink_thread.h"

namespace mailer::sender {
namespace {

using namespace std::chrono_literals;
using mailer::testing::SinkThread;
namespace asio = boost::asio;

// A blocking SMTP client that reads whole (multi-line) replies.
class Client {
 public:
  explicit Client(unsigned short port) : socket_(io_) {
    socket_.connect({asio::ip::make_address("127.0.0.1"), port});
  }
  void send(const std::string& text) { asio::write(socket_, asio::buffer(text)); }
  // The next reply, all its lines joined with "\n"; "" when the server closed.
  std::string reply() {
    std::string all;
    boost::system::error_code ec;
    for (;;) {
      std::size_t n = asio::read_until(socket_, in_, "\r\n", ec);
      if (ec) return all;
      std::string line(asio::buffers_begin(in_.data()),
                       asio::buffers_begin(in_.data()) + static_cast<long>(n - 2));
      in_.consume(n);
      if (!all.empty()) all += "\n";
      all += line;
      if (line.size() < 4 || line[3] == ' ') return all;
    }
  }
  std::string command(const std::string& line) {
    send(line + "\r\n");
    return reply();
  }
  // Greeting and EHLO; returns the EHLO reply.
  std::string hello() {
    EXPECT_EQ(reply().substr(0, 3), "220");
    return command("EHLO client.example.com");
  }

 private:
  asio::io_context io_;
  asio::ip::tcp::socket socket_;
  asio::streambuf in_;
};

std::string code(const std::string& reply) {
  return reply.substr(0, 3);
}

std::filesystem::path fresh_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() /
             ("mailer-sink-test-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  return dir;
}

std::vector<std::filesystem::path> files_in(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> out;
  if (!std::filesystem::exists(dir)) return out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path());
  return out;
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(SinkTest, AdvertisesPipeliningSizeAnd8BitMime) {
  SinkThread sink(SinkOptions{});
  Client c(sink.port());
  std::string ehlo = c.hello();
  EXPECT_NE(ehlo.find("PIPELINING"), std::string::npos);
  EXPECT_NE(ehlo.find("8BITMIME"), std::string::npos);
  EXPECT_NE(ehlo.find("SIZE "), std::string::npos);
}

TEST(SinkTest, StoresMessagesInMaildirWithDotsUnstuffed) {
  auto dir = fresh_dir("maildir");
  SinkOptions o;
  o.maildir = dir;
  SinkThread sink(o);
  Client c(sink.port());
  c.hello();
  EXPECT_EQ(code(c.command("MAIL FROM:<bounce@example.com>")), "250");
  EXPECT_EQ(code(c.command("RCPT TO:<rcpt@example.net>")), "250");
  EXPECT_EQ(code(c.command("DATA")), "354");
  c.send("Subject: dots\r\n\r\n..leading dot\r\n...two dots\r\n..\r\nlast\r\n.\r\n");
  EXPECT_EQ(code(c.reply()), "250");
  EXPECT_EQ(code(c.command("QUIT")), "221");

  auto stored = files_in(dir / "new");
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_TRUE(files_in(dir / "tmp").empty());
  EXPECT_EQ(slurp(stored[0]),
            "Return-Path: <bounce@example.com>\r\nDelivered-To: rcpt@example.net\r\n"
            "Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nlast\r\n");
  EXPECT_EQ(sink.counters().accepted, 1u);
  std::filesystem::remove_all(dir);
}

TEST(SinkTest, AnswersPipelinedCommandsInOrder) {
  SinkThread sink(SinkOptions{});
  Client c(sink.port());
  c.hello();
  c.send(
      "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nRCPT "
      "TO:<c@example.net>\r\nDATA\r\n");
  EXPECT_EQ(code(c.reply()), "250");
  EXPECT_EQ(code(c.reply()), "250");
  EXPECT_EQ(code(c.reply()), "250");
  EXPECT_EQ(code(c.reply()), "354");
  c.send("Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n");
  EXPECT_EQ(code(c.reply()), "250");
  EXPECT_EQ(code(c.reply()), "221");
}

TEST(SinkTest, EnforcesCommandOrderAndResets) {
  SinkThread sink(SinkOptions{});
  Client c(sink.port());
  EXPECT_EQ(code(c.reply()), "220");
  EXPECT_EQ(code(c.command("MAIL FROM:<a@example.com>")), "503");  // no EHLO yet
  EXPECT_EQ(code(c.command("HELO client.example.com")), "250");
  EXPECT_EQ(code(c.command("RCPT TO:<b@example.net>")), "503");
  EXPECT_EQ(code(c.command("MAIL FROM:<a@example.com>")), "250");
  EXPECT_EQ(code(c.command("DATA")), "554");  // no recipients
  EXPECT_EQ(code(c.command("RSET")), "250");
  EXPECT_EQ(code(c.command("RCPT TO:<b@example.net>")), "503");
  EXPECT_EQ(code(c.command("NOOP")), "250");
  EXPECT_EQ(code(c.command("BOGUS")), "502");
  EXPECT_EQ(code(c.command("QUIT")), "221");
  EXPECT_EQ(c.reply(), "");  // closed
}

TEST(SinkTest, RefusesMessagesAboveTheSizeLimit) {
  SinkOptions o;
  o.max_message_size = 100;
  SinkThread sink(o);
  Client c(sink.port());
  c.hello();
  EXPECT_EQ(code(c.command("MAIL FROM:<a@example.com> SIZE=5000")), "552");
  EXPECT_EQ(code(c.command("MAIL FROM:<a@example.com>")), "250");
  EXPECT_EQ(code(c.command("RCPT TO:<b@example.net>")), "250");
  EXPECT_EQ(code(c.command("DATA")), "354");
  c.send(std::string(300, 'x') + "\r\n.\r\n");
  EXPECT_EQ(c.reply().substr(0, 9), "552 5.3.4");
  EXPECT_EQ(sink.counters().accepted, 0u);
  EXPECT_EQ(sink.counters().rejected.at("size"), 2u);
}

TEST(SinkTest, RejectsRecipientsMatchingThePattern) {
  SinkOptions o;
  o.fail_rcpt_matching = std::regex("^unknown");
  SinkThread sink(o);
  Client c(sink.port());
  c.hello();
  c.command("MAIL FROM:<a@example.com>");
  EXPECT_EQ(c.command("RCPT TO:<unknown@example.net>").substr(0, 9), "550 5.1.1");
  EXPECT_EQ(code(c.command("RCPT TO:<known@example.net>")), "250");
}

TEST(SinkTest, DropsAClientThatStalls) {
  SinkOptions o;
  o.idle_timeout = 200ms;
  SinkThread sink(o);
  Client c(sink.port());
  c.hello();
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(c.reply(), "");  // blocks until the sink closes
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_EQ(sink.counters().timed_out, 1u);
}

TEST(SinkTest, GreetingRefusalUsesTheProfilesText) {
  SinkOptions o;
  o.profile = *sink_profile("outlook");
  o.greeting_421 = true;
  SinkThread sink(o);
  Client c(sink.port());
  std::string greeting = c.reply();
  EXPECT_EQ(code(greeting), "421");
  EXPECT_NE(greeting.find("RP-003"), std::string::npos);
  EXPECT_EQ(c.reply(), "");
}

// Sends `n` messages to the sink on `port` over `connections` SmtpClient
// connections, each carrying its share one after the other (a connection the
// sink closes is replaced by a fresh one).
std::map<SmtpOutcome, int> send_many(unsigned short port, int n, std::size_t connections) {
  asio::io_context io;
  auto message = std::make_shared<const std::string>("Subject: load\r\n\r\nbody\r\n");
  const asio::ip::tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), port);
  std::map<SmtpOutcome, int> outcomes;
  int started = 0;
  int done = 0;
  std::function<void(std::shared_ptr<SmtpClient>)> next;
  auto open = [&] {
    SmtpClientOptions options;
    options.starttls = StartTls::kNone;
    options.max_messages = static_cast<std::size_t>(n);
    auto client = SmtpClient::create(io, options);
    client->connect({endpoint}, "127.0.0.1", [&, client](SmtpResult r) {
      if (!r.ok()) {
        ++outcomes[r.outcome];
        ++done;
        return;
      }
      next(client);
    });
  };
  next = [&](std::shared_ptr<SmtpClient> client) {
    if (started == n) return client->quit([client](SmtpResult) {});
    if (!client->usable()) return open();
    ++started;
    SmtpMessage m;
    m.envelope_from = "a@example.com";
    m.recipients = {"user" + std::to_string(started) + "@example.net"};
    m.content = message;
    client->send(std::move(m), [&, client](SmtpResult res) {
      ++outcomes[res.outcome];
      ++done;
      next(client);
    });
  };
  for (std::size_t i = 0; i < connections; ++i) open();
  EXPECT_TRUE(mailer::testing::run_until(
      io, [&] { return done >= n; }, 30s));
  return outcomes;
}

TEST(SinkTest, DefersAboveCapacityWithTheProvidersReply) {
  SinkOptions o;
  o.profile = *sink_profile("outlook");
  o.capacity = 100;
  SinkThread sink(o);
  auto start = std::chrono::steady_clock::now();
  auto outcomes = send_many(sink.port(), 400, 4);
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  SinkCounters c = sink.counters();
  EXPECT_EQ(outcomes[SmtpOutcome::kOk] + outcomes[SmtpOutcome::kRejected], 400);
  EXPECT_EQ(c.accepted, static_cast<std::uint64_t>(outcomes[SmtpOutcome::kOk]));
  // A full bucket (one second's worth) plus what refills while sending.
  EXPECT_LE(static_cast<double>(c.accepted), 100 + 100 * elapsed + 1);
  EXPECT_GT(c.deferred["capacity"], 0u);
  EXPECT_EQ(c.deferred["capacity"], static_cast<std::uint64_t>(outcomes[SmtpOutcome::kRejected]));
}

TEST(SinkTest, GmailDefersAtEndOfDataWithAMultiLineReply) {
  SinkOptions o;
  o.profile = *sink_profile("gmail");
  o.capacity = 0.001;  // a single token
  SinkThread sink(o);
  Client c(sink.port());
  c.hello();
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(code(c.command("MAIL FROM:<a@example.com>")), "250");
    EXPECT_EQ(code(c.command("RCPT TO:<b@example.net>")), "250");
    EXPECT_EQ(code(c.command("DATA")), "354");
    std::string answer = c.command("Subject: x\r\n\r\nbody\r\n.");
    if (i == 0) {
      EXPECT_EQ(code(answer), "250");
    } else {
      EXPECT_EQ(answer.substr(0, 11), "421-4.7.28 ");
      EXPECT_NE(answer.find("\n421 4.7.28 "), std::string::npos);
    }
  }
  EXPECT_EQ(c.reply(), "");  // a 421 closes the connection
}

TEST(SinkTest, YahooBurstLandsTheSenderInThePenaltyBox) {
  SinkOptions o;
  o.profile = *sink_profile("yahoo");
  o.profile.penalty_for = 1500ms;
  o.capacity = 2;
  SinkThread sink(o);
  auto mail_reply = [&] {
    Client c(sink.port());
    c.hello();
    return c.command("MAIL FROM:<a@example.com>");
  };
  EXPECT_EQ(code(mail_reply()), "250");
  EXPECT_EQ(code(mail_reply()), "250");
  const auto burst = std::chrono::steady_clock::now();
  std::string over = mail_reply();  // the burst: bucket empty
  EXPECT_EQ(code(over), "421");
  EXPECT_EQ(over.find("[TSS04]"), std::string::npos);
  // Polled until the box lets a message through. Capacity (2/s) refills a
  // token within 500 ms, but the box holds for its whole 1.5 s: boxed
  // replies keep coming after the refill, and the first 250 comes no sooner
  // than 1.5 s after the burst.
  std::uint64_t boxed = 0;
  std::chrono::steady_clock::duration last_boxed{};
  std::string reply;
  const auto give_up = burst + 20s;
  while (std::chrono::steady_clock::now() < give_up) {
    reply = mail_reply();
    const auto at = std::chrono::steady_clock::now() - burst;
    if (code(reply) == "250") {
      EXPECT_GE(at, 1500ms) << "the box let a message through early";
      break;
    }
    EXPECT_NE(reply.find("[TSS04]"), std::string::npos) << reply;
    ++boxed;
    last_boxed = at;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(code(reply), "250") << "still boxed after 20 s: " << reply;
  EXPECT_GE(last_boxed, 600ms) << "the box did not outlast the capacity refill";
  EXPECT_EQ(sink.counters().deferred.at("penalty_box"), boxed);
}

TEST(SinkTest, CountersPrintAsJson) {
  SinkCounters c;
  c.connections = 3;
  c.accepted = 2;
  c.deferred["capacity"] = 1;
  EXPECT_EQ(to_json(c),
            "{\"connections\":3,\"accepted\":2,\"deferred\":{\"capacity\":1},\"rejected\":{},"
            "\"dropped\":0,\"timed_out\":0,\"tls_sessions\":0,\"tls_failed\":0}");
}

}  // namespace
}  // namespace mailer::sender
