// A parsed SMTP reply: the value the transport produces and the reply
// classifier reads. Parse, don't validate: an SmtpReply that exists has a
// three-digit code between 200 and 599, an enhanced status code that agrees
// with it (or none), and the text without the code prefixes.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailer::throttle {

// The point of the SMTP dialogue a reply answered.
enum class SmtpStage {
  kGreeting,   // the 220/421/554 banner after connecting
  kHelo,       // EHLO or HELO (and STARTTLS, AUTH: connection set-up)
  kMail,       // MAIL FROM
  kRcpt,       // RCPT TO
  kData,       // the DATA command itself (354 expected)
  kEndOfData,  // the final "." of DATA: 250 here means the message was accepted
  kQuit,       // QUIT
};

// The names used in replies.tsv and logs: greeting, ehlo, mail, rcpt, data,
// eod, quit.
std::string_view stage_name(SmtpStage stage);
// Inverse of stage_name; also accepts "end_of_data" for eod. nullopt if unknown.
std::optional<SmtpStage> parse_stage(std::string_view name);

struct SmtpReply {
  // 200..599.
  int code = 0;
  // "4.7.28", or empty when the server sent none. Its class digit equals the
  // first digit of `code`.
  std::string enhanced_status;
  // The full text: lines joined with '\n', each without its "421-" / "421 "
  // prefix and without a repeated enhanced status code.
  std::string text;
  SmtpStage stage = SmtpStage::kGreeting;

  bool positive() const { return code >= 200 && code < 400; }
  bool transient_failure() const { return code >= 400 && code < 500; }
  bool permanent_failure() const { return code >= 500; }
};

// The result of parsing untrusted wire text: either a reply or why not.
struct SmtpReplyParse {
  std::optional<SmtpReply> reply;
  // Set when `reply` is empty: what was wrong, e.g. "line 2: code 450 differs
  // from 421 on line 1".
  std::string error;

  explicit operator bool() const { return reply.has_value(); }
  // Only when the parse succeeded.
  const SmtpReply& operator*() const { return *reply; }
  const SmtpReply* operator->() const { return &*reply; }
};

// Longest input accepted, in bytes. RFC 5321 limits a reply line to 512
// octets; real multi-line replies stay far below this; more is garbage or abuse.
inline constexpr std::size_t kMaxReplyBytes = 64 * 1024;

// Parses the raw lines of one reply ("421-4.7.28 a\r\n421 4.7.28 b\r\n", CRLF
// or LF, trailing newline optional) or one joined line as logs and
// replies.tsv hold them ("421-4.7.28 Gmail has ..."): a last line continued
// with '-' is tolerated. Every line must carry the same code. Never throws.
SmtpReplyParse parse_smtp_reply(std::string_view raw, SmtpStage stage);
// The same for lines already split by the transport (with or without CRLF).
SmtpReplyParse parse_smtp_reply(const std::vector<std::string>& lines, SmtpStage stage);

// The wire form: one "CODE-ENH line" per text line, the last with a space,
// each ending in CRLF. parse_smtp_reply(format_smtp_reply(r), r.stage)
// yields r again.
std::string format_smtp_reply(const SmtpReply& reply);

// "421 4.7.28 first line second line": code, enhanced status and text on one
// line (newlines become spaces), for logs and pattern matching.
std::string one_line(const SmtpReply& reply);

}  // namespace mailer::throttle
