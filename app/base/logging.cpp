#include "app/base/logging.h"

#include <fmt/format.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <regex>

#include "app/base/errors.h"

namespace mailer::app {
namespace {

// %* in a pattern: the message as a JSON string body (quotes, backslashes and
// control characters escaped), so a log line is always one valid JSON object.
class JsonEscapedMessage : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    for (char c : msg.payload) {
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
    logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ %v");
  } else {
    throw UsageError(fmt::format("--log-format: expected text or json, got \"{}\"", format));
  }
  logger->set_level(lvl);
  spdlog::set_default_logger(logger);
}

std::string redact_secrets(const std::string& text) {
  // URL userinfo password, and libpq/connection-string style password=...
  static const std::regex url_password(R"(([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*):[^@/\s]*@)");
  static const std::regex kv_password(R"((password\s*=\s*)('[^']*'|\S+))", std::regex::icase);
  std::string out = std::regex_replace(text, url_password, "$1:***@");
  out = std::regex_replace(out, kv_password, "$1***");
  return out;
}

}  // namespace mailer::app
