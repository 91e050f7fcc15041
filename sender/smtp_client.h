// The asynchronous SMTP client: one SmtpClient object per connection, a state
// machine on Boost.Asio (and asio::ssl for TLS) that opens a session
// (greeting, EHLO with HELO fallback, STARTTLS, AUTH) and then carries many
// message transactions, one after the other, until its message limit, QUIT
// or a failure ends it. No thread per connection: one io_context carries
// thousands of clients.
//
// A transaction (RFC 5321 §3.3): MAIL FROM (with SIZE= and BODY=8BITMIME /
// SMTPUTF8 when the server advertises them and the message needs them), one
// RCPT TO per recipient, DATA, the dot-stuffed content and the final ".".
// When the server offers PIPELINING (RFC 2920), MAIL, the RCPTs and DATA go
// out in one write and each reply is matched to its command in order.
// Otherwise every command waits for its reply. RSET precedes a transaction
// when the one before it was left open.
//
// Guarantees:
// - Every handler passed to connect(), send() and quit() is called exactly
//   once, from the io_context, never from inside the call that passed it.
// - A message is kAccepted only after a 2xx reply to its final "."; a lost
//   connection, a timeout or a reply cut short is never an acceptance.
// - Every reply is read whole (multi-line, in any split) and parsed once; a
//   reply cut short by the server closing still yields its code and text.
// - Each step has its own deadline (SmtpTimeouts, RFC 5321 §4.5.3.2
//   defaults); a step that misses it ends with kTimedOut.
// - Credentials are never logged and never appear in results.
// - Content the server cannot take (8-bit without 8BITMIME, non-ASCII
//   addresses without SMTPUTF8, larger than its SIZE) is refused for that
//   message without sending it (kNotAttempted); the connection stays usable.
//
// Use:
//   auto client = SmtpClient::create(io, options);
//   client->connect(endpoints, "mx1.example.net", [client](SmtpResult r) {
//     if (!r.ok()) return;  // r.deferral(): try later or elsewhere
//     client->send(message, [client](SmtpResult m) { /* m.recipients, m.end_of_data */ });
//     client->quit([](SmtpResult) {});  // after the send above
//   });
//
// Threading: not thread-safe. Create, call and destroy every client of an
// io_context on the thread (or strand) that runs it; handlers run there too
// and may call send() or quit() again. Destroying the client closes the
// connection; handlers of operations in flight are still called, with
// kConnectionLost.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "throttle/smtp_reply.h"

namespace mailer::sender {

// Whether the session upgrades to TLS with STARTTLS (RFC 3207).
enum class StartTls {
  // The server must offer STARTTLS and the handshake must succeed; otherwise
  // the connection fails (kTlsFailed) before any message is sent.
  kRequired,
  // STARTTLS when offered; plain text when it is not, or when the server
  // refuses the command. A failed handshake still fails the connection.
  kOpportunistic,
  // Never STARTTLS.
  kNone,
};

// Deadlines per step. Defaults are RFC 5321 §4.5.3.2's client timeouts where
// it names one; a bulk sender that wants to give a slot back sooner sets
// shorter ones.
struct SmtpTimeouts {
  // TCP connect over all addresses; RFC 5321 names none. A host that does
  // not answer SYN in 30 s is down for our purposes.
  std::chrono::milliseconds connect{std::chrono::seconds(30)};
  // Initial 220 message: 5 minutes.
  std::chrono::milliseconds greeting{std::chrono::minutes(5)};
  // EHLO/HELO, STARTTLS (command and handshake) and AUTH; RFC 5321 names
  // none, the general 5 minutes per command applies.
  std::chrono::milliseconds ehlo{std::chrono::minutes(5)};
  std::chrono::milliseconds tls{std::chrono::minutes(5)};
  std::chrono::milliseconds auth{std::chrono::minutes(5)};
  // MAIL: 5 minutes.
  std::chrono::milliseconds mail{std::chrono::minutes(5)};
  // RCPT: 5 minutes (each).
  std::chrono::milliseconds rcpt{std::chrono::minutes(5)};
  // DATA initiation (the 354): 2 minutes.
  std::chrono::milliseconds data_initiation{std::chrono::minutes(2)};
  // Data block: 3 minutes for each write of content (written in blocks of
  // kDataBlockBytes).
  std::chrono::milliseconds data_block{std::chrono::minutes(3)};
  // DATA termination (the reply to the final "."): 10 minutes.
  std::chrono::milliseconds data_termination{std::chrono::minutes(10)};
  // RSET and QUIT: the general 5 minutes per command.
  std::chrono::milliseconds rset{std::chrono::minutes(5)};
  std::chrono::milliseconds quit{std::chrono::minutes(5)};
};

// Content is written in blocks of this size, each under the data_block
// deadline: small enough that a slow but moving link never misses it.
inline constexpr std::size_t kDataBlockBytes = 64 * 1024;

// AUTH credentials for a relay. Never logged.
struct SmtpLogin {
  std::string user;
  std::string password;
};

struct SmtpClientOptions {
  // Name sent with EHLO/HELO.
  std::string helo_name = "localhost";
  // Local IP address to connect from (an address of this host); empty: the
  // system's choice. Endpoints of the other address family are skipped, and
  // failing to bind is a connection failure.
  std::string source_address;
  // TLS from the first byte (smtps, port 465); STARTTLS is then not used.
  bool implicit_tls = false;
  StartTls starttls = StartTls::kOpportunistic;
  // Verify the server's certificate chain and that it names the server.
  bool verify_certificates = true;
  // The TLS context (trusted CAs, protocol versions), shared by many
  // clients. Empty: a TLS 1.2+ client context with the system's CAs, made
  // for this client.
  std::shared_ptr<boost::asio::ssl::context> tls_context;
  // AUTH PLAIN (preferred) or LOGIN, whichever the server offers, after TLS.
  std::optional<SmtpLogin> login;
  // Send credentials over a connection without TLS. Off by default: a relay
  // password in clear text is readable by every hop on the way.
  bool allow_login_without_tls = false;
  // Messages per connection before usable() turns false; providers limit
  // this too (Gmail about 100), and a fresh connection resets any state a
  // server accumulates per session.
  std::size_t max_messages = 100;
  SmtpTimeouts timeouts;
};

// What the server said it supports in its EHLO reply (RFC 5321 §4.1.1.1).
struct SmtpCapabilities {
  bool esmtp = false;  // EHLO succeeded (HELO fallback: false, nothing else)
  bool pipelining = false;
  bool starttls = false;
  bool eight_bit_mime = false;
  bool smtputf8 = false;
  // SIZE: the largest message accepted, 0 when the server names no limit;
  // nullopt when it does not advertise SIZE.
  std::optional<std::size_t> size;
  // AUTH mechanisms, upper case ("PLAIN", "LOGIN").
  std::vector<std::string> auth;
};

// Parses the lines of a 250 reply to EHLO (the first line is the server's
// name and greeting, the rest are keywords with parameters).
SmtpCapabilities parse_ehlo_reply(const throttle::SmtpReply& reply);

// One message, for one or more recipients of one envelope.
struct SmtpMessage {
  // Reverse path without angle brackets; empty for the null sender "<>".
  std::string envelope_from;
  // Forward paths without angle brackets; at least one.
  std::vector<std::string> recipients;
  // The message with CRLF line ends, not dot-stuffed; shared so that one
  // content can go to many transactions without copies by the caller.
  std::shared_ptr<const std::string> content;
};

// How a step (connecting, one message, QUIT) ended.
enum class SmtpOutcome {
  // connect: the session is ready. send: 2xx to the final "." (recipients
  // rejected at RCPT are listed with their replies). quit: 221 received.
  kOk,
  // A server reply (4xx or 5xx, possibly cut short by the connection
  // closing) ended the step; `reply` is that reply.
  kRejected,
  // The client refused the step before sending anything for it: content
  // the server cannot take, the connection already closed or used up, an
  // envelope with a line break. `reply` is synthesised.
  kNotAttempted,
  // The connection failed or closed without a reply; a deferral. `reply` is
  // synthesised (421 4.4.2).
  kConnectionLost,
  // A step missed its deadline; a deferral. `reply` is synthesised
  // (421 4.4.2).
  kTimedOut,
  // STARTTLS required but not offered or refused, the handshake or the
  // certificate verification failed. `reply` is synthesised (421 4.7.0)
  // unless the server refused STARTTLS itself.
  kTlsFailed,
  // The server's bytes are not SMTP replies; a deferral. `reply` is
  // synthesised (421 4.5.0).
  kProtocolError,
};

std::string_view to_string(SmtpOutcome outcome);

// One recipient's answer to RCPT TO.
struct RecipientReply {
  std::string address;
  throttle::SmtpReply reply;
  bool accepted() const { return reply.code >= 200 && reply.code < 300; }
};

struct SmtpResult {
  SmtpOutcome outcome = SmtpOutcome::kConnectionLost;
  // The reply that ended the step (for kOk: the last reply, e.g. the 250 to
  // the final "."); reply.stage says where it ended.
  throttle::SmtpReply reply;
  // reply came from the server (not synthesised locally).
  bool reply_from_server = false;
  // reply came from the server but the connection closed before its end.
  bool reply_cut_short = false;
  // What went wrong, for logs; empty for kOk. Never contains credentials.
  std::string error;
  // send only: each recipient's RCPT reply, in the message's order. Empty
  // when the transaction ended before RCPT replies were read.
  std::vector<RecipientReply> recipients;
  // send only: the reply to the final ".", when one arrived.
  std::optional<throttle::SmtpReply> end_of_data;
  // send only: an earlier message used this connection before.
  bool reused_connection = false;

  bool ok() const { return outcome == SmtpOutcome::kOk; }
  // Worth retrying later: a 4xx reply, or no reply at all (lost, timed out,
  // TLS or protocol failure). Never true for kOk or a 5xx reply.
  bool deferral() const;
};

using SmtpHandler = std::function<void(SmtpResult)>;

// The DATA payload for `content` (CRLF lines): every line that starts with
// "." gets a second one (RFC 5321 §4.5.2), a missing final CRLF is added, and
// the terminating ".\r\n" follows.
std::string dot_stuffed(std::string_view content);

class SmtpClient {
 public:
  static std::shared_ptr<SmtpClient> create(boost::asio::io_context& io, SmtpClientOptions options);
  ~SmtpClient();
  SmtpClient(const SmtpClient&) = delete;
  SmtpClient& operator=(const SmtpClient&) = delete;

  // Connects to the first of `endpoints` that answers and opens the session
  // (greeting, EHLO/HELO, STARTTLS, EHLO again, AUTH). `server_name` is the
  // host name TLS sends as SNI and verifies the certificate against (an MX
  // host name, not the recipient domain). Call once; `done` gets kOk when
  // send() may be called.
  void connect(std::vector<boost::asio::ip::tcp::endpoint> endpoints, std::string server_name,
               SmtpHandler done);

  // Sends one message on the open session; sends queue up behind each other
  // and run in call order. `done` gets the message's result. Sends after the
  // session failed, closed or reached max_messages get kNotAttempted.
  void send(SmtpMessage message, SmtpHandler done);

  // Waits for queued sends, then says QUIT and closes the connection. `done`
  // gets kOk for a 221 reply (any reply or none still closes).
  void quit(SmtpHandler done);

  // Closes the connection now; operations in flight end with
  // kConnectionLost.
  void close();

  // The session is open and may take another message.
  bool usable() const;
  // Messages whose transaction was started on this connection.
  std::size_t messages_started() const;
  // The EHLO capabilities of the current session (after TLS, the second EHLO's).
  const SmtpCapabilities& capabilities() const;
  // The session runs over TLS.
  bool tls_active() const;

  class Session;

 private:
  explicit SmtpClient(std::shared_ptr<Session> session);
  std::shared_ptr<Session> session_;
};

}  // namespace mailer::sender
