#include "app/config/unsubscribe_secret.h"

#include <fmt/format.h>

#include "app/base/bounded_file.h"
#include "app/base/errors.h"

namespace mailer::app {

std::string load_unsubscribe_secret(const Config& config) {
  const std::string& path = config.unsubscribe.secret_file;
  if (path.empty()) {
    throw UsageError(fmt::format(
        "{}: key \"unsubscribe.secret_file\" is required: a file holding at least {} random "
        "bytes (e.g. `head -c 32 /dev/urandom | base64 > FILE`) that signs unsubscribe links",
        config.source, sender::kMinSecretBytes));
  }
  std::string secret =
      read_configured_file(config.source, "unsubscribe.secret_file", path, kMaxSecretFileBytes);
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  if (secret.size() < sender::kMinSecretBytes) {
    throw UsageError(
        fmt::format("{}: key \"unsubscribe.secret_file\": {}: holds {} bytes, at least {} needed",
                    config.source, path, secret.size(), sender::kMinSecretBytes));
  }
  return secret;
}

std::shared_ptr<const sender::UnsubscribeTokenCodec> unsubscribe_codec(const Config& config) {
  return std::make_shared<const sender::UnsubscribeTokenCodec>(load_unsubscribe_secret(config));
}

}  // namespace mailer::app
