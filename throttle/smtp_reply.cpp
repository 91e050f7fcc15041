#include "throttle/smtp_reply.h"

#include <vector>

namespace mailer::throttle {
namespace {

struct StageName {
  SmtpStage stage;
  std::string_view name;
};

constexpr StageName kStageNames[] = {
    {SmtpStage::kGreeting, "greeting"}, {SmtpStage::kHelo, "ehlo"}, {SmtpStage::kMail, "mail"},
    {SmtpStage::kRcpt, "rcpt"},         {SmtpStage::kData, "data"}, {SmtpStage::kEndOfData, "eod"},
    {SmtpStage::kQuit, "quit"},
};

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// Splits on LF, dropping one CR before it; a trailing newline ends the input.
std::vector<std::string_view> split_lines(std::string_view raw) {
  std::vector<std::string_view> lines;
  while (!raw.empty()) {
    std::size_t nl = raw.find('\n');
    std::string_view line = raw.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    if (nl == std::string_view::npos) break;
    raw.remove_prefix(nl + 1);
  }
  return lines;
}

// Length of an enhanced status code "c.sss.ddd" at the start of `s` whose
// class digit is `cls`, or 0 if there is none. RFC 3463: class 1 digit,
// subject 1-3 digits, detail 1-3 digits.
std::size_t enhanced_length(std::string_view s, char cls) {
  if (s.size() < 5 || s[0] != cls || s[1] != '.') return 0;
  std::size_t i = 2;
  std::size_t n = 0;
  while (i < s.size() && is_digit(s[i]) && n < 3) ++i, ++n;
  if (n == 0 || i >= s.size() || s[i] != '.') return 0;
  ++i;
  n = 0;
  while (i < s.size() && is_digit(s[i]) && n < 3) ++i, ++n;
  if (n == 0) return 0;
  if (i < s.size() && s[i] != ' ' && s[i] != '\t') return 0;
  return i;
}

std::string_view trim_left(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  return s;
}

std::string_view trim_right(std::string_view s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

SmtpReplyParse failure(std::string message) {
  return SmtpReplyParse{std::nullopt, std::move(message)};
}

std::string line_label(std::size_t index) {
  return "line " + std::to_string(index + 1);
}

}  // namespace

std::string_view stage_name(SmtpStage stage) {
  for (const StageName& s : kStageNames) {
    if (s.stage == stage) return s.name;
  }
  return "unknown";
}

std::optional<SmtpStage> parse_stage(std::string_view name) {
  for (const StageName& s : kStageNames) {
    if (s.name == name) return s.stage;
  }
  if (name == "end_of_data") return SmtpStage::kEndOfData;
  return std::nullopt;
}

SmtpReplyParse parse_smtp_reply(std::string_view raw, SmtpStage stage) {
  if (raw.size() > kMaxReplyBytes) return failure("reply longer than 64 KiB");
  std::vector<std::string_view> lines = split_lines(raw);
  if (lines.empty()) return failure("empty reply");

  SmtpReply reply;
  reply.stage = stage;
  std::string code_text;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    if (line.size() < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2])) {
      return failure(line_label(i) + ": does not start with a three-digit code");
    }
    std::string_view code = line.substr(0, 3);
    if (i == 0) {
      if (code[0] < '2' || code[0] > '5') {
        return failure(line_label(i) + ": code " + std::string(code) + " is not 2xx..5xx");
      }
      code_text = std::string(code);
      reply.code = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
    } else if (code != code_text) {
      return failure(line_label(i) + ": code " + std::string(code) + " differs from " + code_text +
                     " on line 1");
    }
    std::string_view rest = line.substr(3);
    if (!rest.empty()) {
      char sep = rest.front();
      if (sep != ' ' && sep != '-') {
        return failure(line_label(i) + ": expected ' ' or '-' after the code");
      }
      bool last = i + 1 == lines.size();
      if (sep == ' ' && !last) return failure(line_label(i) + ": reply ends before the last line");
      rest.remove_prefix(1);
    }
    rest = trim_left(rest);
    std::size_t enh = enhanced_length(rest, code_text[0]);
    if (enh > 0) {
      std::string_view status = rest.substr(0, enh);
      if (i == 0) reply.enhanced_status = std::string(status);
      if (status == reply.enhanced_status) rest = trim_left(rest.substr(enh));
    }
    if (i > 0) reply.text += '\n';
    reply.text += trim_right(rest);
  }
  return SmtpReplyParse{std::move(reply), {}};
}

SmtpReplyParse parse_smtp_reply(const std::vector<std::string>& lines, SmtpStage stage) {
  std::string joined;
  for (const std::string& line : lines) {
    if (joined.size() + line.size() > kMaxReplyBytes) return failure("reply longer than 64 KiB");
    joined += line;
    if (joined.empty() || joined.back() != '\n') joined += '\n';
  }
  return parse_smtp_reply(joined, stage);
}

std::string format_smtp_reply(const SmtpReply& reply) {
  std::string out;
  std::string code = std::to_string(reply.code);
  // Split on every '\n', keeping empty lines (a last line that is empty too):
  // the parser keeps them, so the wire form must carry them back.
  std::vector<std::string_view> lines;
  std::string_view rest = reply.text;
  for (std::size_t nl; (nl = rest.find('\n')) != std::string_view::npos; rest.remove_prefix(nl + 1))
    lines.push_back(rest.substr(0, nl));
  lines.push_back(rest);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    out += code;
    out += i + 1 == lines.size() ? ' ' : '-';
    if (!reply.enhanced_status.empty()) {
      out += reply.enhanced_status;
      if (!lines[i].empty()) out += ' ';
    }
    out += lines[i];
    out += "\r\n";
  }
  return out;
}

std::string one_line(const SmtpReply& reply) {
  std::string out = std::to_string(reply.code);
  if (!reply.enhanced_status.empty()) out += ' ' + reply.enhanced_status;
  if (!reply.text.empty()) {
    out += ' ';
    for (char c : reply.text) out += c == '\n' ? ' ' : c;
  }
  return out;
}

}  // namespace mailer::throttle
