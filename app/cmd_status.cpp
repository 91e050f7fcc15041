// `mailer status`: campaigns and per-provider throttle state.
#include "app/commands.h"

namespace mailer::app {

void register_status(CLI::App& root, Context&, Action& action) {
  register_unavailable(root, "status", "campaigns and per-provider throttle state", action);
}

}  // namespace mailer::app
