// The protocol side of `mailer inbound`: one SMTP server conversation as a
// state machine with no I/O. Bytes from the client go in with feed(); step()
// answers every complete line buffered so far and stops at the first thing
// the caller must do (send the replies and close, start TLS, deliver a
// message). Pipelined commands are answered in order, and nothing after a
// pending message is read until the caller reports its outcome.
//
// Untrusted input throughout: every line is bounded (a command line by
// max_command_line, a text line by max_data_line), a message by
// max_message_size, recipients by max_recipients, errors by max_errors; the
// end of data is only "." on a line of its own ended by CRLF, never a bare LF.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace mailer::app {

struct SmtpSessionOptions {
  // Name in the greeting and the EHLO reply.
  std::string hostname = "localhost";
  // Domains recipients must belong to (lower case, no trailing dot); any
  // other recipient gets 550 at RCPT.
  std::vector<std::string> domains;
  // Advertised with SIZE; larger messages are refused with 552.
  std::size_t max_message_size = 10 * 1024 * 1024;
  // RFC 5321 4.5.3.1.4: 512 octets for a command line; room is left for
  // extension parameters.
  std::size_t max_command_line = 2048;
  // RFC 5321 4.5.3.1.6 says 1000 octets; reports quote other MTAs' lines,
  // which may be longer, so the limit is generous but finite.
  std::size_t max_data_line = 16384;
  // RFC 5321 4.5.3.1.8: at least 100 recipients must be accepted.
  std::size_t max_recipients = 100;
  // Bad or out-of-order commands before the connection is closed with 421.
  int max_errors = 20;
  // STARTTLS is advertised and accepted (the caller has a certificate).
  bool tls_available = false;
};

// What step() needs the caller to do after sending `replies`.
enum class SmtpAction {
  kNeedInput,  // read more bytes, then feed() and step() again
  kClose,      // close the connection
  kStartTls,   // run the TLS handshake, then call tls_started()
  kMessage,    // deliver message(); then message_done() gives the reply
};

struct SmtpStep {
  std::string replies;  // wire form (CRLF-terminated lines), possibly empty
  SmtpAction action = SmtpAction::kNeedInput;
};

// How a delivered message came out.
enum class SmtpDelivery {
  kAccepted,   // 250: committed
  kTransient,  // 451 4.3.0: try again later
};

// Where the conversation is, for the caller's per-stage timeouts.
enum class SmtpStage { kCommand, kData };

// "domain" of "local@domain" lower-cased, without a trailing dot and without
// a source route ("@a,@b:"); "" when there is no '@' or nothing after it.
std::string recipient_domain(std::string_view address);

// `text` fit for a log line: printable ASCII kept, everything else as \xNN,
// cut after `max_bytes` with "...".
std::string log_escape(std::string_view text, std::size_t max_bytes = 200);

class SmtpSession {
 public:
  explicit SmtpSession(SmtpSessionOptions options);

  // The 220 greeting (wire form).
  std::string greeting() const;
  // The 421 reply given to a connection over the limit or during shutdown.
  std::string busy() const;
  // The 421 reply for a client that stalled past its stage's timeout.
  std::string timed_out() const;
  // The 421 reply given at the next command once shutdown began.
  std::string shutting_down() const;

  void feed(std::string_view bytes);
  SmtpStep step();

  // After kStartTls: the handshake succeeded; the conversation starts over
  // (RFC 3207: the client must EHLO again; anything sent before the
  // handshake was discarded).
  void tls_started();
  // After kMessage: the envelope and the message (dot-unstuffed, CRLF lines).
  const std::string& sender() const { return from_; }
  const std::vector<std::string>& recipients() const { return rcpts_; }
  const std::string& message() const { return body_; }
  // The reply to the final dot; the transaction is reset.
  std::string message_done(SmtpDelivery outcome);

  // From now on, any command but QUIT outside a transaction gets 421 and the
  // connection closes (a transaction under way still completes).
  void begin_shutdown() { shutting_down_ = true; }

  SmtpStage stage() const { return in_data_ ? SmtpStage::kData : SmtpStage::kCommand; }
  // True between MAIL and the end of the transaction.
  bool in_transaction() const { return in_transaction_; }
  bool tls_active() const { return tls_active_; }

 private:
  // One line out of in_, without its ending; false when none is complete.
  // `overlong` is set for a line longer than `limit` (its bytes are dropped).
  bool next_line(std::size_t limit, std::string& line, bool& crlf, bool& overlong);
  void command(const std::string& line, SmtpStep& out);
  void data_line(const std::string& line, bool crlf, bool overlong, SmtpStep& out);
  void error(std::string reply, SmtpStep& out);
  void reset();

  SmtpSessionOptions options_;
  std::string in_;
  std::size_t pos_ = 0;
  bool discarding_ = false;  // inside an overlong line, dropping bytes until LF
  bool greeted_ = false;
  bool extended_ = false;
  bool in_transaction_ = false;
  bool in_data_ = false;
  bool too_big_ = false;
  bool line_too_long_ = false;
  bool tls_active_ = false;
  bool shutting_down_ = false;
  bool closed_ = false;
  bool pending_message_ = false;
  int errors_ = 0;
  std::string from_;
  std::vector<std::string> rcpts_;
  std::string body_;
};

}  // namespace mailer::app
