// The SMTP transport: delivers one message to one recipient per request over
// libcurl's multi interface, driven by a caller-owned Boost.Asio io_context
// (socket and timer callbacks, no polling loop, no thread per connection).
//
// Every transaction ends with a SendResult that carries the reply which ended
// it, captured in full from the wire (multi-line replies included) and parsed
// into a throttle::SmtpReply. Only a 2xx reply after the final "." of DATA is
// an acceptance; a lost connection or a timeout at any stage is a deferral.
//
// Connections are kept per route (scheme, host and port) and reused across
// messages. The number of transactions in flight on a route, and so the number
// of connections it opens, never exceeds the route's connection limit;
// requests beyond it wait in a per-route queue in submission order.
//
// Threading: not thread-safe. Construct, call every member and destroy the
// transport on the thread that runs the io_context. Callbacks run on that
// thread too, after the transport's own bookkeeping, and may submit again.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "throttle/smtp_reply.h"

namespace mailer::sender {

// How a route protects the session with TLS.
enum class TlsMode {
  // STARTTLS must succeed; a server that does not offer it fails the send.
  kRequired,
  // STARTTLS when offered, plain text otherwise.
  kOpportunistic,
  // Never STARTTLS (smtps:// routes are TLS from the first byte regardless).
  kNone,
};

// Time limits per step of a transaction. Defaults are shorter than RFC 5321's
// (5 min per command, 10 min for the final dot) because a bulk sender would
// rather defer one message than hold a connection slot for minutes.
struct StageTimeouts {
  // TCP connect, greeting, EHLO, STARTTLS and AUTH of a new connection.
  std::chrono::milliseconds connect{std::chrono::seconds(30)};
  // Wait for any one reply (MAIL, RCPT, DATA, end of data). libcurl counts
  // this in whole seconds, so it is rounded up; a silent server is noticed
  // within about a second after it. Note: libcurl waits for the reply to the
  // final "." synchronously (curl issue #8555), so while one end-of-data
  // reply is slow, the whole io_context waits with it, up to this limit.
  std::chrono::milliseconds reply{std::chrono::seconds(60)};
  // The whole transaction, connection set-up included.
  std::chrono::milliseconds total{std::chrono::minutes(5)};
};

// SMTP AUTH credentials for a relay. Never logged.
struct SmtpCredentials {
  std::string user;
  std::string password;
};

// One message to one recipient.
struct SendRequest {
  // "smtp://host:port" or "smtps://host:port"; the key of the route's
  // connection pool and limit.
  std::string route;
  // Optional address to connect to instead of resolving the route's host
  // (an MX host already resolved); TLS still verifies the route's host name.
  std::string connect_address;
  TlsMode tls = TlsMode::kOpportunistic;
  // Verify the server certificate and host name when TLS is used.
  bool verify_peer = true;
  std::optional<SmtpCredentials> auth;
  // Name sent with EHLO/HELO.
  std::string helo_name = "localhost";
  // Local IP address to connect from (an address of this host); empty: the
  // system's choice. Not being able to bind it is a connection failure.
  std::string source_address;
  // Envelope sender (reverse path), without angle brackets; may be empty.
  std::string envelope_from;
  // The one recipient, without angle brackets.
  std::string recipient;
  // The message with CRLF line ends; shared, never copied per send.
  std::shared_ptr<const std::string> message;
  StageTimeouts timeouts;
};

// How a transaction ended.
enum class SendOutcome {
  // 2xx after the final "." of DATA: the server took responsibility.
  kAccepted,
  // The server answered 4xx or 5xx; `reply` holds that answer.
  kRejected,
  // Connection refused, lost or broken mid-transaction, or TLS failed; a
  // deferral, never a send. `reply` is synthesised (421 4.4.2).
  kConnectionFailed,
  // A stage exceeded its time limit; a deferral. `reply` is synthesised
  // (421 4.4.2).
  kTimedOut,
};

std::string_view to_string(SendOutcome outcome);

struct SendResult {
  SendOutcome outcome = SendOutcome::kConnectionFailed;
  // The reply that ended the transaction. For kConnectionFailed and
  // kTimedOut it is synthesised locally and `reply_from_server` is false.
  throttle::SmtpReply reply;
  bool reply_from_server = false;
  // libcurl's description of a failure; empty on acceptance. Never contains
  // credentials.
  std::string error;
  // The transaction ran on a connection opened for an earlier one.
  bool reused_connection = false;
};

using SendCallback = std::function<void(SendResult)>;

// Counters of one route.
struct RouteCounters {
  std::size_t in_flight = 0;  // transactions on the wire now
  std::size_t queued = 0;     // waiting for a free connection slot
  std::size_t connection_limit = 0;
  std::uint64_t connections_opened = 0;
  std::uint64_t accepted = 0;
  std::uint64_t rejected = 0;
  std::uint64_t failed = 0;  // connection failures and timeouts
};

class SmtpTransport {
 public:
  // Connection limit of a route nobody set one for; small, because a new
  // sender earns more connections from a provider, it does not start with them.
  static constexpr std::size_t kDefaultConnectionLimit = 4;

  explicit SmtpTransport(boost::asio::io_context& io);
  ~SmtpTransport();
  SmtpTransport(const SmtpTransport&) = delete;
  SmtpTransport& operator=(const SmtpTransport&) = delete;

  // Starts (or queues) the transaction; `done` is called exactly once, later,
  // from the io_context, also when the request is malformed (kConnectionFailed
  // with the problem in `error`). Requests still queued or in flight when the
  // transport is destroyed are dropped without a call.
  void submit(SendRequest request, SendCallback done);

  // Sets how many connections (and so transactions in flight) `route` may
  // use; at least 1. Lowering it lets running transactions finish; curl closes
  // the idle connections above the limit as later transactions end.
  void set_connection_limit(const std::string& route, std::size_t limit);

  RouteCounters counters(const std::string& route) const;
  std::map<std::string, RouteCounters> all_counters() const;
  // Transactions in flight or queued over all routes.
  std::size_t pending() const;

 private:
  class Route;
  struct Transfer;
  Route& route_for(const std::string& key);

  boost::asio::io_context& io_;
  std::map<std::string, std::unique_ptr<Route>> routes_;
};

}  // namespace mailer::sender
