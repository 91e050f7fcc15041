// The rehearsal SMTP sink behind `mailer sink`: an SMTP server on Boost.Asio
// that accepts mail (EHLO/HELO, PIPELINING, 8BITMIME, SIZE, DATA with
// dot-unstuffing, STARTTLS when given a certificate), optionally stores it in
// a maildir, and above a configured
// capacity answers like a real mailbox provider does when it throttles: a
// deferral at MAIL or at the end of data with the provider's own wording,
// Yahoo's [TSS04] penalty box, Outlook's 4.7.650. Fault injection flags make
// it misbehave on purpose for tests (rejected recipients, dropped connections,
// stalls, 421 greetings).
//
// One object per connection with a deadline per step: a client that stalls
// longer than the step's timeout is disconnected.
//
// Threading: every member runs on the io_context's thread; counters() may be
// called from that thread only.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

namespace mailer::sender {

// A step of the SMTP conversation, as the sink's fault injection names it.
enum class SinkStage { kGreeting, kHelo, kMail, kRcpt, kData, kEndOfData };

// Parses "greeting", "helo" (or "ehlo"), "mail", "rcpt", "data", "dot" (or
// "eod"); nullopt otherwise.
std::optional<SinkStage> parse_sink_stage(std::string_view name);

// How a simulated provider answers a sender that goes faster than it allows.
struct SinkProfile {
  std::string name;  // gmail | yahoo | outlook | generic
  // Where the over-capacity deferral is given: kMail or kEndOfData.
  SinkStage defer_at = SinkStage::kMail;
  // The deferral in wire form (CRLF-terminated lines, several for a
  // multi-line reply).
  std::string deferral;
  // When set, a deferral puts the client address in a penalty box: every MAIL
  // from it gets `penalty_reply` until `penalty_for` has passed (Yahoo).
  std::optional<std::chrono::milliseconds> penalty_for;
  std::string penalty_reply;
  // What a refused greeting says (--greeting-421), in wire form.
  std::string greeting_refusal;
};

// How long Yahoo's penalty box lasts in a rehearsal. Yahoo keeps a sender
// there for hours; a rehearsal wants to see the suspension and the restart
// within minutes.
inline constexpr std::chrono::milliseconds kDefaultPenaltyBox{std::chrono::seconds(60)};

// The profile for a provider name; nullopt for an unknown name.
std::optional<SinkProfile> sink_profile(std::string_view name);

struct SinkOptions {
  SinkProfile profile = *sink_profile("generic");
  // Messages per second accepted before deferring (a token bucket holding
  // one second's worth, so short bursts up to the capacity pass); 0 = no limit.
  double capacity = 0;
  // Delay before the reply to the final "." (content scanning time at a real
  // provider).
  std::chrono::milliseconds latency{0};
  // Store accepted messages here (tmp/, new/, cur/ are created).
  std::optional<std::filesystem::path> maildir;
  // Advertised with SIZE; larger messages are refused with 552 after DATA.
  std::size_t max_message_size = 35 * 1024 * 1024;
  // Longest wait for a command or a data line before dropping the client
  // (RFC 5321 asks servers for 5 minutes; a rehearsal needs less).
  std::chrono::milliseconds idle_timeout{std::chrono::seconds(60)};
  // Name in the greeting and EHLO reply.
  std::string hostname = "mailer-sink";
  // A TLS server context (certificate and key loaded): STARTTLS is
  // advertised and the session upgrades on it (RFC 3207). Empty: plain text
  // only, and STARTTLS is answered 502.
  std::shared_ptr<boost::asio::ssl::context> tls;

  // Fault injection.
  // RCPT addresses matching this get "550 5.1.1 ... User unknown".
  std::optional<std::regex> fail_rcpt_matching;
  // Every Nth message, close the connection after the first line of data.
  std::uint64_t drop_mid_data_every = 0;
  // Stop answering (keep the connection open) once this step is reached.
  std::optional<SinkStage> stall_after;
  // Answer every connection with the profile's greeting refusal and close.
  bool greeting_421 = false;
};

struct SinkCounters {
  std::uint64_t connections = 0;
  std::uint64_t accepted = 0;
  // Deferrals by reason: "capacity", "penalty_box".
  std::map<std::string, std::uint64_t> deferred;
  // Refusals by reason: "unknown_recipient", "size", "greeting".
  std::map<std::string, std::uint64_t> rejected;
  std::uint64_t dropped = 0;       // connections closed by fault injection
  std::uint64_t timed_out = 0;     // clients dropped for stalling
  std::uint64_t tls_sessions = 0;  // STARTTLS handshakes that succeeded
  std::uint64_t tls_failed = 0;    // STARTTLS handshakes that failed
};

class SmtpSink {
 public:
  // Binds and listens on `endpoint` (port 0 picks a free port). Throws
  // boost::system::system_error when the address cannot be bound.
  SmtpSink(boost::asio::io_context& io, const boost::asio::ip::tcp::endpoint& endpoint,
           SinkOptions options);
  ~SmtpSink();
  SmtpSink(const SmtpSink&) = delete;
  SmtpSink& operator=(const SmtpSink&) = delete;

  boost::asio::ip::tcp::endpoint local_endpoint() const;
  // Stops accepting and closes every connection.
  void stop();
  const SinkCounters& counters() const;

  class State;
  class Session;

 private:
  std::shared_ptr<State> state_;
};

// A TLS server context for the sink from a PEM certificate chain and its
// private key. Throws std::runtime_error naming the file that cannot be used.
std::shared_ptr<boost::asio::ssl::context> sink_tls_context(const std::string& cert_file,
                                                            const std::string& key_file);

// The counters as one JSON object (the `mailer sink --json` shape):
// {"connections":N,"accepted":N,"deferred":{...},"rejected":{...},"dropped":N,"timed_out":N,
//  "tls_sessions":N,"tls_failed":N}
std::string to_json(const SinkCounters& counters);
// One human line for the periodic report on stderr.
std::string to_text(const SinkCounters& counters);

}  // namespace mailer::sender
