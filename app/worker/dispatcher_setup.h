// Builds the SMTP dispatcher's settings from the configuration: routes, TLS,
// relay credentials, timeouts, provider policies and retry schedule, DKIM
// keys, unsubscribe and VERP secrets. Every problem is reported before the
// first message goes, naming the configuration key.
#pragma once

#include "app/config/config.h"
#include "sender/dispatcher.h"

namespace mailer::app {

// Throws UsageError naming the file and key for a missing secret, an
// unreadable key or password file, or an unusable DKIM key.
sender::DispatcherSettings dispatcher_settings(const Config& config);

}  // namespace mailer::app
