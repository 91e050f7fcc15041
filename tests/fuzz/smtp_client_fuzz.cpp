// Fuzzes the SMTP client's handling of what a server says: a peer on
// loopback writes the input as its whole side of the conversation and
// half-closes, while the client connects, sends one message to two
// recipients and quits. Beyond not crashing: every handler runs exactly once,
// and a message counts as sent only with a whole 2xx reply to its final dot.
#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include "sender/smtp_client.h"

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace mailer::sender;

namespace {
#define require(x) require_at((x), #x, __LINE__)

// Aborts naming the broken promise, so a finding says which one.
void require_at(bool ok, const char* what, int line) {
  if (ok) return;
  std::fprintf(stderr, "smtp_client_fuzz.cpp:%d: broken: %s\n", line, what);
  std::abort();
}

// Writes `script`, half-closes, and reads until the client closes.
struct Peer : std::enable_shared_from_this<Peer> {
  Peer(asio::io_context& io, std::string script) : socket(io), script(std::move(script)) {}
  void start() {
    auto self = shared_from_this();
    asio::async_write(socket, asio::buffer(script), [self](boost::system::error_code, std::size_t) {
      boost::system::error_code ignored;
      self->socket.shutdown(tcp::socket::shutdown_send, ignored);
      self->drain();
    });
  }
  void drain() {
    auto self = shared_from_this();
    socket.async_read_some(asio::buffer(buf), [self](boost::system::error_code ec, std::size_t) {
      if (!ec) self->drain();
    });
  }
  tcp::socket socket;
  std::string script;
  std::array<char, 4096> buf{};
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 16 * 1024) return 0;
  asio::io_context io;
  // Each input gets a loopback address of its own to listen on. With one
  // address, hundreds of connections a second leave the peer's side of each
  // in TIME_WAIT (it closes first); within a minute the ephemeral ports come
  // round again, a new SYN meets an old TIME_WAIT, and the connection takes
  // seconds of SYN retransmissions: a stall that says nothing of the client.
  static std::uint32_t inputs = 0;
  const std::uint32_t n = inputs++ % (62u * 254u * 254u);
  const asio::ip::address_v4 listen_on((127u << 24) | ((1 + n / (254u * 254u)) << 16) |
                                       ((1 + n / 254u % 254u) << 8) | (1 + n % 254u));
  tcp::acceptor acceptor(io, {listen_on, 0});
  auto peer = std::make_shared<Peer>(io, std::string(reinterpret_cast<const char*>(data), size));
  acceptor.async_accept(peer->socket, [peer](boost::system::error_code ec) {
    if (!ec) peer->start();
  });

  SmtpClientOptions options;
  options.starttls = StartTls::kNone;
  // The peer writes all it will say at once and closes its side: no
  // stage needs the RFC's minutes, and a unit never waits long.
  SmtpTimeouts& t = options.timeouts;
  t.connect = t.greeting = t.ehlo = t.tls = t.auth = t.mail = t.rcpt = t.data_initiation =
      t.data_block = t.data_termination = t.rset = t.quit = std::chrono::seconds(5);
  auto client = SmtpClient::create(io, options);
  int connects = 0, sends = 0, quits = 0;
  client->connect({acceptor.local_endpoint()}, "localhost", [&](SmtpResult c) {
    ++connects;
    require(!(c.ok() && c.deferral()));
    SmtpMessage m;
    m.envelope_from = "bounce@example.com";
    m.recipients = {"a@example.net", "b@example.net"};
    m.content = std::make_shared<const std::string>("Subject: x\r\n\r\n.body\r\n");
    client->send(std::move(m), [&, connected = c.ok()](SmtpResult r) {
      ++sends;
      if (r.ok()) {
        require(connected);
        require(r.end_of_data && r.end_of_data->code >= 200 && r.end_of_data->code < 300);
        require(!r.reply_cut_short && !r.deferral());
        require(r.recipients.size() == 2);
      }
      client->quit([&](SmtpResult) { ++quits; });
    });
  });
  io.run_for(std::chrono::seconds(20));
  require(connects == 1 && sends == 1 && quits == 1);
  return 0;
}
