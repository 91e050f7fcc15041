#include "app/base/logging.h"

#include <fmt/format.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <string_view>

#include "app/base/errors.h"
#include "app/db/database.h"

namespace mailer::app {
namespace {

// Whether `text` may hold a connection string with a password: redaction
// runs a regular expression, so plain messages skip it.
bool may_hold_secret(std::string_view text) {
  if (text.find("://") != std::string_view::npos) return true;
  for (std::size_t i = 0; i + 8 <= text.size(); ++i) {
    if ((text[i] | 0x20) == 'p' && (text[i + 1] | 0x20) == 'a' && (text[i + 2] | 0x20) == 's' &&
        (text[i + 3] | 0x20) == 's' && (text[i + 4] | 0x20) == 'w' && (text[i + 5] | 0x20) == 'o' &&
        (text[i + 6] | 0x20) == 'r' && (text[i + 7] | 0x20) == 'd') {
      return true;
    }
  }
  return false;
}

std::string redacted_payload(const spdlog::details::log_msg& msg) {
  const std::string_view payload(msg.payload.data(), msg.payload.size());
  return may_hold_secret(payload) ? db::redact_conninfo(payload) : std::string(payload);
}

// %& in a pattern: the message with secrets redacted.
class RedactedMessage : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const std::string text = redacted_payload(msg);
    dest.append(text.data(), text.data() + text.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<RedactedMessage>();
  }
};

// %* in a pattern: the redacted message as a JSON string body (quotes,
// backslashes and control characters escaped), so a log line is always one
// valid JSON object.
class JsonEscapedMessage : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    for (char c : redacted_payload(msg)) {
      switch (c) {
        case '"':
          dest.append(std::string_view("\\\""));
          break;
        case '\\':
          dest.append(std::string_view("\\\\"));
          break;
        case '\n':
          dest.append(std::string_view("\\n"));
          break;
        case '\r':
          dest.append(std::string_view("\\r"));
          break;
        case '\t':
          dest.append(std::string_view("\\t"));
          break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            fmt::format_to(std::back_inserter(dest), "\\u{:04x}", static_cast<unsigned>(c));
          } else {
            dest.push_back(c);
          }
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonEscapedMessage>();
  }
};

}  // namespace

void setup_logging(const std::string& level, const std::string& format) {
  const auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") {
    throw UsageError(
        fmt::format("--log-level: expected trace, debug, info, warn or error, got \"{}\"", level));
  }
  auto logger = spdlog::stderr_color_mt("mailer");
  if (format == "json") {
    auto f = std::make_unique<spdlog::pattern_formatter>();
    f->add_flag<JsonEscapedMessage>('*').set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","msg":"%*"})");
    logger->set_formatter(std::move(f));
  } else if (format == "text") {
    auto f = std::make_unique<spdlog::pattern_formatter>();
    f->add_flag<RedactedMessage>('&').set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ %&");
    logger->set_formatter(std::move(f));
  } else {
    throw UsageError(fmt::format("--log-format: expected text or json, got \"{}\"", format));
  }
  logger->set_level(lvl);
  spdlog::set_default_logger(logger);
}

std::string redact_secrets(const std::string& text) {
  return db::redact_conninfo(text);
}

}  // namespace mailer::app
