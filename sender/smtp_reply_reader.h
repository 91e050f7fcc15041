// Assembles SMTP replies from the bytes a connection delivers, in whatever
// pieces the network cuts them into (one byte at a time included): lines end
// at LF (a CR before it is dropped), a reply ends at its first line whose code
// is followed by a space or by nothing ("250 ok", "250"), and every finished
// reply is parsed once, by throttle::parse_smtp_reply.
//
// A reply cut short by the end of the stream still counts: after finish(), the
// lines received so far ("421-4.7.28 ..." continuation lines, and a last line
// without its line end) are yielded as one reply marked cut_short, with its
// code and text, because a provider that throttles often says so and hangs up.
//
// Input is untrusted and bounded: a line longer than the line limit, a reply
// longer than the reply limit, a line that does not start with a three-digit
// code, or lines of one reply with different codes break the stream. The
// replies finished before that point can still be taken; nothing after it is
// read. The outcome never depends on how the bytes were split.
//
// Threading: a plain value; no internal synchronisation.
#pragma once

#include <cstddef>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "throttle/smtp_reply.h"

namespace mailer::sender {

// Longest reply line accepted, in bytes without the line end. RFC 5321
// §4.5.3.1.5 allows 512 octets; servers in the wild exceed that a little
// (long enhanced texts, URLs), never by this much.
inline constexpr std::size_t kMaxReplyLineBytes = 4096;

// One reply as it came off the wire.
struct ReceivedReply {
  // Parsed; `stage` is kGreeting until the reader of the reply sets it.
  throttle::SmtpReply reply;
  // The stream ended before the reply's last line (or its line end) arrived.
  bool cut_short = false;
};

class SmtpReplyReader {
 public:
  explicit SmtpReplyReader(std::size_t max_line_bytes = kMaxReplyLineBytes,
                           std::size_t max_reply_bytes = throttle::kMaxReplyBytes);

  // Consumes the next bytes of the stream. Ignored after finish() or once
  // the stream is broken.
  void feed(std::string_view bytes);
  // The stream has ended: a reply begun and not finished becomes available,
  // marked cut_short. Bytes that do not make a line with a code are dropped.
  void finish();

  // True when a finished reply waits to be taken.
  bool ready() const { return !replies_.empty(); }
  // The oldest reply not yet taken; nullopt when none is finished.
  std::optional<ReceivedReply> take();

  // True once the stream broke the protocol or a limit; error() says how.
  bool broken() const { return !error_.empty(); }
  const std::string& error() const { return error_; }
  // True after finish().
  bool finished() const { return finished_; }
  // True while bytes of an unfinished reply are held (a reply in progress).
  bool mid_reply() const { return !lines_.empty() || !partial_.empty(); }

 private:
  void add_line(std::string_view line);
  void complete_reply(bool cut_short);
  void fail(std::string why);

  std::size_t max_line_bytes_;
  std::size_t max_reply_bytes_;
  // The current line so far (no LF seen yet).
  std::string partial_;
  // Finished lines of the current reply, each without its line end.
  std::vector<std::string> lines_;
  std::size_t reply_bytes_ = 0;
  std::deque<ReceivedReply> replies_;
  std::string error_;
  bool finished_ = false;
};

}  // namespace mailer::sender
