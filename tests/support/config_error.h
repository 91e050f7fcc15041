// The message a configuration text is refused with, for tests of the exact
// error wording ("(no error)" when it parses).
#pragma once

#include <string>

#include "app/base/errors.h"
#include "app/config/config.h"

namespace mailer::testing {

inline std::string config_error_of(const std::string& text) {
  try {
    app::parse_config(text, "mailer.toml");
  } catch (const app::UsageError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace mailer::testing
