#include "app/inbound/smtp_session.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <utility>

namespace mailer::app {
namespace {

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool has_control(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

// "FROM:<a@b> PARAMS" after the verb: the path between the brackets and the
// parameters; false when the syntax is broken.
bool parse_path(std::string_view arg, std::string_view keyword, std::string& path,
                std::string& params) {
  if (arg.size() < keyword.size() || upper(arg.substr(0, keyword.size())) != keyword) return false;
  arg.remove_prefix(keyword.size());
  while (!arg.empty() && arg.front() == ' ') arg.remove_prefix(1);
  if (arg.empty() || arg.front() != '<') return false;
  const std::size_t close = arg.find('>');
  if (close == std::string_view::npos) return false;
  path = std::string(arg.substr(1, close - 1));
  params = std::string(arg.substr(close + 1));
  if (!params.empty() && params.front() != ' ') return false;
  return !has_control(path);
}

// The ESMTP parameters of MAIL: SIZE, BODY and SMTPUTF8 are known.
// Returns "" when all are acceptable, else the reply.
std::string check_mail_params(std::string_view params, std::size_t max_size) {
  std::size_t pos = 0;
  while (pos < params.size()) {
    while (pos < params.size() && params[pos] == ' ') ++pos;
    if (pos >= params.size()) break;
    std::size_t end = params.find(' ', pos);
    if (end == std::string_view::npos) end = params.size();
    const std::string param = upper(params.substr(pos, end - pos));
    pos = end;
    if (param.rfind("SIZE=", 0) == 0) {
      const std::string_view digits = std::string_view(param).substr(5);
      unsigned long long size = 0;
      const auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), size);
      if (digits.empty() || p != digits.data() + digits.size()) {
        return "501 5.5.4 Syntax error in SIZE parameter\r\n";
      }
      if (ec == std::errc::result_out_of_range) {
        return "552 5.3.4 Message size exceeds fixed maximum message size\r\n";
      }
      if (size > max_size) return "552 5.3.4 Message size exceeds fixed maximum message size\r\n";
    } else if (param == "BODY=7BIT" || param == "BODY=8BITMIME" || param == "SMTPUTF8") {
      continue;
    } else {
      return "555 5.5.4 Unsupported MAIL parameter\r\n";
    }
  }
  return {};
}

}  // namespace

std::string recipient_domain(std::string_view address) {
  // A source route ("@a,@b:user@d", RFC 5321 4.1.2) is ignored.
  if (!address.empty() && address.front() == '@') {
    const std::size_t colon = address.find(':');
    if (colon == std::string_view::npos) return {};
    address.remove_prefix(colon + 1);
  }
  const std::size_t at = address.rfind('@');
  if (at == std::string_view::npos || at == 0) return {};
  std::string domain = lower(address.substr(at + 1));
  while (!domain.empty() && domain.back() == '.') domain.pop_back();
  return domain;
}

std::string log_escape(std::string_view text, std::size_t max_bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (i >= max_bytes) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  return out;
}

SmtpSession::SmtpSession(SmtpSessionOptions options) : options_(std::move(options)) {
  for (std::string& d : options_.domains) d = recipient_domain("x@" + d);
}

std::string SmtpSession::greeting() const {
  return "220 " + options_.hostname + " ESMTP mailer inbound\r\n";
}

std::string SmtpSession::busy() const {
  return "421 4.3.2 " + options_.hostname + " too many connections, try again later\r\n";
}

std::string SmtpSession::timed_out() const {
  return "421 4.4.2 " + options_.hostname + " timeout exceeded, closing connection\r\n";
}

std::string SmtpSession::shutting_down() const {
  return "421 4.3.2 " + options_.hostname + " shutting down, try again later\r\n";
}

void SmtpSession::feed(std::string_view bytes) {
  if (pos_ > 0 && pos_ == in_.size()) {
    in_.clear();
    pos_ = 0;
  } else if (pos_ > 65536) {
    in_.erase(0, pos_);
    pos_ = 0;
  }
  in_.append(bytes);
}

bool SmtpSession::next_line(std::size_t limit, std::string& line, bool& crlf, bool& overlong) {
  const std::size_t lf = in_.find('\n', pos_);
  if (discarding_) {
    if (lf == std::string::npos) {
      in_.clear();
      pos_ = 0;
      return false;
    }
    pos_ = lf + 1;
    discarding_ = false;
    line.clear();
    crlf = lf > 0 && in_[lf - 1] == '\r';
    overlong = true;
    return true;
  }
  if (lf == std::string::npos) {
    if (in_.size() - pos_ > limit + 1) {
      // No end in sight: drop what is here and the rest of the line.
      discarding_ = true;
      in_.clear();
      pos_ = 0;
    }
    return false;
  }
  std::size_t end = lf;
  crlf = end > pos_ && in_[end - 1] == '\r';
  if (crlf) --end;
  overlong = end - pos_ > limit;
  line.assign(in_, pos_, overlong ? 0 : end - pos_);
  pos_ = lf + 1;
  return true;
}

SmtpStep SmtpSession::step() {
  SmtpStep out;
  if (closed_) {
    out.action = SmtpAction::kClose;
    return out;
  }
  if (pending_message_) {
    out.action = SmtpAction::kMessage;
    return out;
  }
  std::string line;
  bool crlf = false;
  bool overlong = false;
  while (out.action == SmtpAction::kNeedInput) {
    const std::size_t limit = in_data_ ? options_.max_data_line : options_.max_command_line;
    if (!next_line(limit, line, crlf, overlong)) break;
    if (in_data_) {
      data_line(line, crlf, overlong, out);
    } else if (overlong) {
      error("500 5.5.2 Line too long\r\n", out);
    } else {
      command(line, out);
    }
  }
  if (out.action == SmtpAction::kClose) closed_ = true;
  return out;
}

void SmtpSession::error(std::string reply, SmtpStep& out) {
  out.replies += reply;
  if (++errors_ >= options_.max_errors) {
    out.replies += "421 4.7.0 " + options_.hostname + " too many errors, closing connection\r\n";
    out.action = SmtpAction::kClose;
  }
}

void SmtpSession::reset() {
  in_transaction_ = false;
  in_data_ = false;
  too_big_ = false;
  line_too_long_ = false;
  from_.clear();
  rcpts_.clear();
  body_.clear();
  body_.shrink_to_fit();
}

void SmtpSession::command(const std::string& line, SmtpStep& out) {
  const std::size_t space = line.find(' ');
  const std::string verb = upper(line.substr(0, space));
  const std::string arg = space == std::string::npos ? "" : line.substr(space + 1);

  if (verb == "QUIT") {
    out.replies += "221 2.0.0 Bye\r\n";
    out.action = SmtpAction::kClose;
    return;
  }
  if (shutting_down_ && !in_transaction_) {
    out.replies += shutting_down();
    out.action = SmtpAction::kClose;
    return;
  }
  if (verb == "EHLO" || verb == "HELO") {
    if (arg.empty() || has_control(arg))
      return error("501 5.5.4 Syntax: " + verb + " hostname\r\n", out);
    reset();
    greeted_ = true;
    extended_ = verb == "EHLO";
    if (!extended_) {
      out.replies += "250 " + options_.hostname + "\r\n";
      return;
    }
    std::vector<std::string> lines = {options_.hostname, "PIPELINING",
                                      "SIZE " + std::to_string(options_.max_message_size),
                                      "8BITMIME", "ENHANCEDSTATUSCODES"};
    if (options_.tls_available && !tls_active_) lines.emplace_back("STARTTLS");
    lines.emplace_back("SMTPUTF8");
    for (std::size_t i = 0; i < lines.size(); ++i) {
      out.replies += (i + 1 < lines.size() ? "250-" : "250 ") + lines[i] + "\r\n";
    }
    return;
  }
  if (verb == "STARTTLS") {
    if (!options_.tls_available || tls_active_) {
      return error("502 5.5.1 STARTTLS not available\r\n", out);
    }
    if (!arg.empty()) return error("501 5.5.4 Syntax: STARTTLS\r\n", out);
    if (in_transaction_) return error("503 5.5.1 STARTTLS inside a transaction\r\n", out);
    out.replies += "220 2.0.0 Ready to start TLS\r\n";
    out.action = SmtpAction::kStartTls;
    // RFC 3207 5: nothing the client sent before the handshake counts.
    in_.clear();
    pos_ = 0;
    discarding_ = false;
    return;
  }
  if (verb == "MAIL") {
    if (!greeted_) return error("503 5.5.1 Send HELO/EHLO first\r\n", out);
    if (in_transaction_) return error("503 5.5.1 Nested MAIL command\r\n", out);
    std::string path;
    std::string params;
    if (!parse_path(arg, "FROM:", path, params)) {
      return error("501 5.5.4 Syntax: MAIL FROM:<address>\r\n", out);
    }
    if (!params.empty() && !extended_) {
      return error("555 5.5.4 MAIL parameters need EHLO\r\n", out);
    }
    if (std::string refusal = check_mail_params(params, options_.max_message_size);
        !refusal.empty()) {
      if (refusal.starts_with("552")) {
        out.replies += refusal;
        return;
      }
      return error(std::move(refusal), out);
    }
    in_transaction_ = true;
    from_ = path;
    out.replies += "250 2.1.0 Ok\r\n";
    return;
  }
  if (verb == "RCPT") {
    if (!in_transaction_) return error("503 5.5.1 Need MAIL command\r\n", out);
    std::string path;
    std::string params;
    if (!parse_path(arg, "TO:", path, params) || path.empty()) {
      return error("501 5.5.4 Syntax: RCPT TO:<address>\r\n", out);
    }
    if (!params.empty()) return error("555 5.5.4 Unsupported RCPT parameter\r\n", out);
    const std::string domain = recipient_domain(path);
    if (domain.empty() || std::find(options_.domains.begin(), options_.domains.end(), domain) ==
                              options_.domains.end()) {
      return error("550 5.7.1 Relay access denied: not a domain of this server\r\n", out);
    }
    if (rcpts_.size() >= options_.max_recipients) {
      out.replies += "452 4.5.3 Too many recipients\r\n";
      return;
    }
    rcpts_.push_back(path);
    out.replies += "250 2.1.5 Ok\r\n";
    return;
  }
  if (verb == "DATA") {
    if (!in_transaction_) return error("503 5.5.1 Need MAIL command\r\n", out);
    if (!arg.empty()) return error("501 5.5.4 Syntax: DATA\r\n", out);
    if (rcpts_.empty()) return error("554 5.5.1 No valid recipients\r\n", out);
    in_data_ = true;
    body_.clear();
    out.replies += "354 End data with <CR><LF>.<CR><LF>\r\n";
    return;
  }
  if (verb == "RSET") {
    if (!arg.empty()) return error("501 5.5.4 Syntax: RSET\r\n", out);
    reset();
    out.replies += "250 2.0.0 Ok\r\n";
    return;
  }
  if (verb == "NOOP") {
    out.replies += "250 2.0.0 Ok\r\n";
    return;
  }
  if (verb == "VRFY") {
    out.replies += "252 2.5.0 Cannot VRFY user\r\n";
    return;
  }
  if (verb == "HELP") {
    out.replies += "214 2.0.0 See RFC 5321\r\n";
    return;
  }
  error("500 5.5.2 Command not recognized\r\n", out);
}

void SmtpSession::data_line(const std::string& line, bool crlf, bool overlong, SmtpStep& out) {
  if (!overlong && crlf && line == ".") {
    in_data_ = false;
    if (too_big_) {
      reset();
      out.replies += "552 5.3.4 Message size exceeds fixed maximum message size\r\n";
      return;
    }
    if (line_too_long_) {
      reset();
      out.replies += "554 5.6.0 Message has a line longer than " +
                     std::to_string(options_.max_data_line) + " bytes\r\n";
      return;
    }
    pending_message_ = true;
    out.action = SmtpAction::kMessage;
    return;
  }
  if (overlong) line_too_long_ = true;
  if (too_big_ || line_too_long_) return;
  // Dot-unstuffing (RFC 5321 4.5.2).
  std::string_view text = line;
  if (text.starts_with('.')) text.remove_prefix(1);
  if (body_.size() + text.size() + 2 > options_.max_message_size) {
    too_big_ = true;
    body_.clear();
    body_.shrink_to_fit();
    return;
  }
  body_.append(text);
  body_.append("\r\n");
}

std::string SmtpSession::message_done(SmtpDelivery outcome) {
  pending_message_ = false;
  reset();
  if (outcome == SmtpDelivery::kAccepted) return "250 2.0.0 Ok: applied\r\n";
  return "451 4.3.0 Temporary failure, try again later\r\n";
}

void SmtpSession::tls_started() {
  tls_active_ = true;
  greeted_ = false;
  extended_ = false;
  reset();
  in_.clear();
  pos_ = 0;
  discarding_ = false;
}

}  // namespace mailer::app
