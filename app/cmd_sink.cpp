// `mailer sink`: rehearsal SMTP server with provider-like throttling.
#include "app/commands.h"

namespace mailer::app {

void register_sink(CLI::App& root, Context&, Action& action) {
  register_unavailable(root, "sink", "rehearsal SMTP server with provider-like throttling", action);
}

}  // namespace mailer::app
