// What `mailer serve` does with requests that are too big, too slow, too
// many or wrong: each is answered or cut off within its bound, and the
// server goes on serving. Raw sockets on loopback, so that the client can
// misbehave.
#include <gtest/gtest.h>

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "tests/app/serve_support.h"
#include "tests/support/pg_fixture.h"

namespace mailer::app {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using mailer::testing::http_call;
using Clock = std::chrono::steady_clock;

// Small bounds, so that the tests that wait for them stay short.
HttpLimits test_limits() {
  HttpLimits l;
  l.header_timeout = std::chrono::milliseconds(600);
  l.body_timeout = std::chrono::milliseconds(600);
  l.max_body_bytes = 16 * 1024;
  l.max_header_bytes = 4 * 1024;
  l.max_connections = 4;
  l.max_requests_per_connection = 3;
  return l;
}

// A blocking loopback connection that can send anything.
class RawClient {
 public:
  explicit RawClient(unsigned short port) : socket_(io_) {
    socket_.connect({asio::ip::make_address("127.0.0.1"), port});
  }
  // Sends `data`; false when the server has closed the connection.
  bool send(const std::string& data) {
    boost::system::error_code ec;
    asio::write(socket_, asio::buffer(data), ec);
    return !ec;
  }
  // Everything the server sends until it closes or `limit` passes; sets
  // closed when it closed.
  std::string read_until_closed(std::chrono::milliseconds limit, bool& closed) {
    std::string out;
    closed = false;
    socket_.non_blocking(true);
    const auto deadline = Clock::now() + limit;
    char buf[4096];
    while (Clock::now() < deadline) {
      boost::system::error_code ec;
      const std::size_t n = socket_.read_some(asio::buffer(buf), ec);
      if (ec == asio::error::would_block) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        continue;
      }
      if (ec) {
        closed = true;
        break;
      }
      out.append(buf, n);
    }
    return out;
  }

 private:
  asio::io_context io_;
  tcp::socket socket_;
};

class ServeRobustnessTest : public ::testing::Test {
 protected:
  // Whether the server still answers an ordinary request.
  void expect_still_serving() {
    EXPECT_EQ(http_call(serve_.port(), "GET", "/healthz").status, 200);
  }

  mailer::testing::TestDatabase t_{"serve_robust"};
  mailer::testing::InProcessServe serve_{t_.url(), test_limits()};
};

TEST_F(ServeRobustnessTest, UnknownPathIs404AndWrongMethodIs405) {
  EXPECT_EQ(http_call(serve_.port(), "GET", "/nope").status, 404);
  EXPECT_EQ(http_call(serve_.admin_port(), "GET", "/metrics/../etc/passwd").status, 404);
  const auto reply = http_call(serve_.admin_port(), "DELETE", "/metrics");
  EXPECT_EQ(reply.status, 405);
  EXPECT_EQ(reply.headers.at("allow"), "GET, HEAD");
  EXPECT_EQ(http_call(serve_.port(), "POST", "/healthz", "x").status, 405);
  EXPECT_EQ(http_call(serve_.admin_port(), "GET", "/?range=1y").status, 400);
}

TEST_F(ServeRobustnessTest, OversizedBodyIs413WithoutReadingIt) {
  const auto reply = http_call(serve_.port(), "POST", "/u/whatever", std::string(17 * 1024, 'a'),
                               {{"Content-Type", "application/x-www-form-urlencoded"}});
  EXPECT_EQ(reply.status, 413);
  // A chunked body has no length to refuse up front: it is cut at the limit.
  RawClient c(serve_.port());
  std::string chunked =
      "POST /u/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
      "Content-Type: application/x-www-form-urlencoded\r\n\r\n";
  for (int i = 0; i < 20; ++i) chunked += "400\r\n" + std::string(1024, 'b') + "\r\n";
  c.send(chunked);
  bool closed = false;
  const auto answer = c.read_until_closed(std::chrono::seconds(5), closed);
  EXPECT_EQ(answer.rfind("HTTP/1.1 413", 0), 0u) << answer;
  EXPECT_TRUE(closed);
  expect_still_serving();
}

TEST_F(ServeRobustnessTest, SlowHeadersAreCutOffWithinTheBound) {
  RawClient c(serve_.port());
  const auto start = Clock::now();
  // A byte every 100 ms: the headers would take far longer than the bound.
  // The sleep paces the slow client; it synchronises nothing.
  const std::string request = "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ";
  bool cut = false;
  for (int i = 0; i < 100 && !cut; ++i) {
    cut = !c.send(std::string(1, request[i % request.size()]));
    if (!cut) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    bool closed = false;
    c.read_until_closed(std::chrono::milliseconds(1), closed);
    cut = cut || closed;
  }
  const auto elapsed = Clock::now() - start;
  EXPECT_TRUE(cut) << "the connection was still open after 10 s";
  EXPECT_LT(elapsed, std::chrono::milliseconds(2500)) << "bound is 600 ms";
  expect_still_serving();
}

TEST_F(ServeRobustnessTest, SilentConnectionIsClosedAfterTheHeaderTimeout) {
  RawClient c(serve_.port());
  bool closed = false;
  const auto start = Clock::now();
  c.read_until_closed(std::chrono::seconds(5), closed);
  EXPECT_TRUE(closed);
  EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(2500));
}

TEST_F(ServeRobustnessTest, HugeHeadersAre431AndGarbageIs400) {
  {
    RawClient c(serve_.port());
    c.send("GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + std::string(8 * 1024, 'h') + "\r\n\r\n");
    bool closed = false;
    const auto answer = c.read_until_closed(std::chrono::seconds(3), closed);
    EXPECT_EQ(answer.rfind("HTTP/1.1 431", 0), 0u) << answer;
  }
  {
    RawClient c(serve_.port());
    c.send("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n");
    bool closed = false;
    const auto answer = c.read_until_closed(std::chrono::seconds(3), closed);
    EXPECT_EQ(answer.rfind("HTTP/1.1 400", 0), 0u) << answer;
    EXPECT_TRUE(closed);
  }
  expect_still_serving();
}

TEST_F(ServeRobustnessTest, ConnectionsBeyondTheLimitAre503AndTheServerRecovers) {
  std::vector<std::unique_ptr<RawClient>> idle;
  for (int i = 0; i < 4; ++i) idle.push_back(std::make_unique<RawClient>(serve_.port()));
  // No wait needed: the kernel queues connections in order and the server
  // accepts them one by one, so the four are admitted before the fifth.
  RawClient extra(serve_.port());
  bool closed = false;
  const auto answer = extra.read_until_closed(std::chrono::seconds(3), closed);
  EXPECT_EQ(answer.rfind("HTTP/1.1 503", 0), 0u) << answer;
  idle.clear();
  // Once the server has seen the idle ones close (or cut them at the header
  // timeout), it serves again: polled, within a few seconds.
  int status = 0;
  const auto give_up = Clock::now() + std::chrono::seconds(5);
  while (Clock::now() < give_up) {
    try {
      status = http_call(serve_.port(), "GET", "/healthz").status;
    } catch (const std::exception&) {
      status = -1;  // closed without an answer while still full
    }
    if (status == 200) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(status, 200);
}

TEST_F(ServeRobustnessTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  RawClient c(serve_.port());
  c.send(
      "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\n"
      "Connection: close\r\n\r\n");
  bool closed = false;
  const auto answer = c.read_until_closed(std::chrono::seconds(3), closed);
  EXPECT_EQ(answer.rfind("HTTP/1.1 200", 0), 0u) << answer;
  EXPECT_NE(answer.find("HTTP/1.1 404"), std::string::npos) << answer;
  EXPECT_TRUE(closed);
}

TEST_F(ServeRobustnessTest, TransferEncodingNotEndingInChunkedIs400AndNothingIsSmuggled) {
  for (const char* framing : {"Transfer-Encoding: gzip\r\n", "Transfer-Encoding: chunked, gzip\r\n",
                              "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"}) {
    RawClient c(serve_.port());
    c.send(std::string("POST /u/x HTTP/1.1\r\nHost: t\r\n") + framing +
           "Content-Type: application/x-www-form-urlencoded\r\n\r\n"
           "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    bool closed = false;
    const auto answer = c.read_until_closed(std::chrono::seconds(3), closed);
    EXPECT_EQ(answer.rfind("HTTP/1.1 400", 0), 0u) << framing << answer;
    EXPECT_EQ(answer.find("HTTP/1.1", 1), std::string::npos) << "a second answer: " << answer;
    EXPECT_TRUE(closed) << framing;
  }
  expect_still_serving();
}

TEST_F(ServeRobustnessTest, AConnectionIsClosedAfterItsRequestAllowance) {
  RawClient c(serve_.port());
  std::string four;
  for (int i = 0; i < 4; ++i) four += "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
  c.send(four);
  bool closed = false;
  const auto answer = c.read_until_closed(std::chrono::seconds(3), closed);
  std::size_t answers = 0;
  for (auto at = answer.find("HTTP/1.1 200"); at != std::string::npos;
       at = answer.find("HTTP/1.1 200", at + 1)) {
    ++answers;
  }
  EXPECT_EQ(answers, 3u) << answer;
  EXPECT_NE(answer.find("Connection: close"), std::string::npos) << answer;
  EXPECT_TRUE(closed);
}

// Sends `request` on a fresh connection and returns all of the answer.
std::string raw_exchange(unsigned short port, const std::string& request) {
  RawClient c(port);
  c.send(request);
  bool closed = false;
  return c.read_until_closed(std::chrono::seconds(3), closed);
}

TEST_F(ServeRobustnessTest, HeadHostAbsoluteFormExpectAndOptionsFollowTheRfc) {
  const std::string token = mailer::testing::serve_codec()->Issue({1, 1, 1});
  // HEAD: the GET answer's headers, no body.
  const auto head = raw_exchange(
      serve_.port(), "HEAD /u/" + token + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(head.rfind("HTTP/1.1 200", 0), 0u) << head;
  EXPECT_NE(head.find("Content-Length: "), std::string::npos) << head;
  EXPECT_EQ(head.find("Content-Length: 0"), std::string::npos) << head;
  EXPECT_EQ(head.size(), head.find("\r\n\r\n") + 4) << "no body: " << head;
  // Host: exactly one in HTTP/1.1.
  EXPECT_EQ(raw_exchange(serve_.port(), "GET /healthz HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 400", 0),
            0u);
  EXPECT_EQ(raw_exchange(serve_.port(), "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
                .rfind("HTTP/1.1 400", 0),
            0u);
  EXPECT_EQ(raw_exchange(serve_.port(), "GET /healthz HTTP/1.0\r\n\r\n").rfind("HTTP/1.0 200", 0),
            0u);
  // Absolute form: the path counts.
  const auto absolute = raw_exchange(
      serve_.port(), "GET http://mail.example.com/u/" + token +
                         " HTTP/1.1\r\nHost: mail.example.com\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(absolute.rfind("HTTP/1.1 200", 0), 0u) << absolute;
  EXPECT_NE(absolute.find("<form"), std::string::npos);
  // OPTIONS *: what the server allows.
  const auto options =
      raw_exchange(serve_.port(), "OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(options.rfind("HTTP/1.1 200", 0), 0u) << options;
  EXPECT_NE(options.find("Allow: GET, HEAD, POST, OPTIONS"), std::string::npos) << options;
  // Expect: 100-continue is answered before the body is sent.
  RawClient c(serve_.port());
  const std::string body = "List-Unsubscribe=One-Click";
  c.send(
      fmt::format("POST /u/x HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nConnection: close\r\n"
                  "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
                  body.size()));
  bool closed = false;
  const auto interim = c.read_until_closed(std::chrono::milliseconds(500), closed);
  EXPECT_EQ(interim, "HTTP/1.1 100 Continue\r\n\r\n");
  c.send(body);
  const auto final_answer = c.read_until_closed(std::chrono::seconds(3), closed);
  EXPECT_EQ(final_answer.rfind("HTTP/1.1 400", 0), 0u) << final_answer;
}

TEST(ServeLogging, LoggedTargetsAreAsciiAndCarryNoToken) {
  const std::string token = mailer::testing::serve_codec()->Issue({7, 8, 9});
  for (const std::string& target :
       {"/u/" + token, "//u/" + token, "/U/" + token, "/x/" + token, "/%75/" + token,
        "http://h/u/" + token + "?a=b", "/u/" + token.substr(0, 10)}) {
    const auto logged = loggable_target(target);
    EXPECT_EQ(logged.find(token.substr(0, 10)), std::string::npos) << logged;
  }
  EXPECT_EQ(loggable_target("/a\xff\x01\"b/metrics"), "/a\\xff\\x01\\x22b/metrics");
  EXPECT_EQ(loggable_target("/nope?x=1"), "/nope?x=1");
  for (unsigned char c : loggable_target(std::string("/\xc3\x28\xa0\xa1\x00z", 7))) {
    EXPECT_TRUE(c >= 0x20 && c < 0x7f) << static_cast<int>(c);
  }
}

}  // namespace
}  // namespace mailer::app
