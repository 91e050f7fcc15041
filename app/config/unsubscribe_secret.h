// The [unsubscribe] secret: one key shared by `mailer run` (issues unsubscribe
// tokens and VERP tags) and `mailer serve` (verifies the tokens), loaded from
// the file the configuration names.
#pragma once

#include <memory>
#include <string>

#include "app/config/config.h"
#include "sender/unsubscribe_token.h"

namespace mailer::app {

// The secret of [unsubscribe] secret_file. Throws UsageError naming the key
// and the file when it is not configured, unreadable or too short.
std::string load_unsubscribe_secret(const Config& config);

// A token codec keyed with that secret.
std::shared_ptr<const sender::UnsubscribeTokenCodec> unsubscribe_codec(const Config& config);

}  // namespace mailer::app
