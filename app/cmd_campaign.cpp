// `mailer campaign`: create and control campaigns.
#include "app/commands.h"

namespace mailer::app {

void register_campaign(CLI::App& root, Context&, Action& action) {
  register_unavailable(root, "campaign", "create and control campaigns", action);
}

}  // namespace mailer::app
