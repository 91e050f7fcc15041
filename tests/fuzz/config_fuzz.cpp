// Fuzzes the configuration reader with arbitrary TOML text: toml++ parsing,
// then every section's validation. Whatever the input, parse_config either
// returns a configuration or throws UsageError; any other exception, crash or
// hang is a finding. A refusal is one line of bounded length (long values are
// cut, control characters escaped), so an error never floods the terminal.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "app/base/errors.h"
#include "app/config/config.h"

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

// Longest acceptable error line: the file name, a few quoted fragments of at
// most kMaxQuotedBytes each, and the wording around them.
constexpr std::size_t kMaxErrorBytes = 2048;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Beyond the configuration file limit the reader never sees the text.
  if (size > (1 << 20)) return 0;
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const mailer::app::Config c = mailer::app::parse_config(text, "fuzz.toml");
    require(c.source == "fuzz.toml");
    require(c.sender.messages_per_connection >= 1 && c.worker.claim_batch >= 1);
    require(c.database.reconnect_min <= c.database.reconnect_max);
  } catch (const mailer::app::UsageError& e) {
    const std::string message = e.what();
    require(!message.empty() && message.size() <= kMaxErrorBytes);
    require(message.find('\n') == std::string::npos);
    require(message.rfind("fuzz.toml", 0) == 0);
  }
  return 0;
}
