// Logging setup for the whole process: spdlog to stderr, text or JSON lines,
// and redaction of secrets before anything that may hold one is logged.
#pragma once

#include <string>

namespace mailer::app {

// level: trace|debug|info|warn|error; format: text|json. Throws UsageError
// for other values.
void setup_logging(const std::string& level, const std::string& format);

// A database URL or libpq key=value string with any password replaced by
// "***" (postgresql://u:secret@h/db -> postgresql://u:***@h/db). Every log
// line and every error main() prints goes through it.
std::string redact_secrets(const std::string& text);

}  // namespace mailer::app
