// The SMTP server of `mailer inbound` on Boost.Asio: one io_context, one
// object per connection, no thread per connection. Each connection runs an
// SmtpSession (the protocol) with a deadline per stage (command_timeout while
// waiting for a command, data_timeout between bytes of a message), optional
// STARTTLS, and a limit on connections served at once (421 beyond it).
//
// A complete message goes to the Deliver function; the reply to the final
// dot waits for its outcome (250 once committed, 451 otherwise), so the
// sender keeps the message until it is applied.
//
// shutdown() drains: the listener closes, idle connections get 421, and a
// connection inside a transaction finishes it first; `on_drained` runs once
// the last connection is gone.
//
// Threading: every member runs on the io_context's thread, except that a
// Deliver function may finish on another thread by posting `done` back.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "app/inbound/smtp_session.h"

namespace mailer::app {

struct InboundServerOptions {
  SmtpSessionOptions session;
  std::chrono::milliseconds command_timeout{std::chrono::minutes(5)};
  std::chrono::milliseconds data_timeout{std::chrono::minutes(3)};
  std::chrono::milliseconds tls_handshake_timeout{std::chrono::seconds(30)};
  std::size_t max_connections = 100;
  // STARTTLS with this context when set (session.tls_available follows it).
  std::shared_ptr<boost::asio::ssl::context> tls;
};

// One received message. `done` must be called exactly once, on the
// io_context's thread (post it there when the work runs elsewhere).
struct InboundMessage {
  std::string client;  // peer address
  std::string sender;
  std::vector<std::string> recipients;
  std::string data;
};
using DeliverDone = std::function<void(SmtpDelivery)>;
using Deliver = std::function<void(InboundMessage message, DeliverDone done)>;

struct InboundCounters {
  std::uint64_t connections = 0;
  std::uint64_t refused_connections = 0;  // over max_connections (421)
  std::uint64_t messages = 0;             // answered 250
  std::uint64_t deferred = 0;             // answered 451
  std::uint64_t timed_out = 0;
};

class InboundServer {
 public:
  // Binds and listens (port 0 picks a free port). Throws
  // boost::system::system_error when the address cannot be bound.
  InboundServer(boost::asio::io_context& io, const boost::asio::ip::tcp::endpoint& endpoint,
                InboundServerOptions options, Deliver deliver);
  ~InboundServer();
  InboundServer(const InboundServer&) = delete;
  InboundServer& operator=(const InboundServer&) = delete;

  boost::asio::ip::tcp::endpoint local_endpoint() const;
  // Stops accepting and drains (see above); on_drained may run before
  // shutdown() returns when nothing is connected.
  void shutdown(std::function<void()> on_drained);
  // Closes every connection now (the drain deadline passed).
  void close_all();
  std::size_t active_connections() const;
  const InboundCounters& counters() const;

  class State;
  class Connection;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace mailer::app
