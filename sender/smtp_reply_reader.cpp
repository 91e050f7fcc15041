#include "sender/smtp_reply_reader.h"

#include <utility>

namespace mailer::sender {
namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// "250", "250 text", "250-text": a code and, if anything follows, a separator.
bool has_code(std::string_view line) {
  if (line.size() < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2])) {
    return false;
  }
  return line.size() == 3 || line[3] == ' ' || line[3] == '-';
}

// The last line of a reply has a space (or nothing) after its code.
bool is_last_line(std::string_view line) {
  return line.size() == 3 || line[3] == ' ';
}

std::string_view without_cr(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

}  // namespace

SmtpReplyReader::SmtpReplyReader(std::size_t max_line_bytes, std::size_t max_reply_bytes)
    : max_line_bytes_(max_line_bytes), max_reply_bytes_(max_reply_bytes) {}

void SmtpReplyReader::feed(std::string_view bytes) {
  while (!bytes.empty() && !broken() && !finished_) {
    std::size_t nl = bytes.find('\n');
    std::string_view piece = bytes.substr(0, nl);
    // The limit counts the line without its CR LF; one byte of slack lets a
    // CR that belongs to the line end wait for its LF.
    if (partial_.size() + piece.size() > max_line_bytes_ + 1) {
      return fail("reply line longer than " + std::to_string(max_line_bytes_) + " bytes");
    }
    partial_.append(piece);
    if (nl == std::string_view::npos) return;
    bytes.remove_prefix(nl + 1);
    std::string line = std::exchange(partial_, {});
    add_line(without_cr(line));
  }
}

void SmtpReplyReader::add_line(std::string_view line) {
  if (line.size() > max_line_bytes_) {
    return fail("reply line longer than " + std::to_string(max_line_bytes_) + " bytes");
  }
  if (!has_code(line)) return fail("reply line does not start with a three-digit code");
  reply_bytes_ += line.size() + 1;
  if (reply_bytes_ > max_reply_bytes_) {
    return fail("reply longer than " + std::to_string(max_reply_bytes_) + " bytes");
  }
  lines_.emplace_back(line);
  if (is_last_line(line)) complete_reply(false);
}

void SmtpReplyReader::complete_reply(bool cut_short) {
  throttle::SmtpReplyParse parsed = parse_smtp_reply(lines_, throttle::SmtpStage::kGreeting);
  lines_.clear();
  reply_bytes_ = 0;
  if (!parsed) return fail(parsed.error);
  replies_.push_back(ReceivedReply{std::move(*parsed.reply), cut_short});
}

void SmtpReplyReader::finish() {
  if (finished_ || broken()) {
    finished_ = true;
    return;
  }
  finished_ = true;
  // A last line without its line end still counts when it has a code; a
  // fragment too short to show one is dropped.
  std::string_view rest = without_cr(partial_);
  if (has_code(rest) && rest.size() <= max_line_bytes_ &&
      reply_bytes_ + rest.size() + 1 <= max_reply_bytes_) {
    lines_.emplace_back(rest);
  }
  partial_.clear();
  if (!lines_.empty()) complete_reply(true);
}

std::optional<ReceivedReply> SmtpReplyReader::take() {
  if (replies_.empty()) return std::nullopt;
  ReceivedReply next = std::move(replies_.front());
  replies_.pop_front();
  return next;
}

void SmtpReplyReader::fail(std::string why) {
  error_ = std::move(why);
  partial_.clear();
  lines_.clear();
}

}  // namespace mailer::sender
