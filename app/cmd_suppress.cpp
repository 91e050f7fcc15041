// `mailer suppress`: manage the suppression list (add, import, list, remove).
#include "app/commands.h"

namespace mailer::app {

void register_suppress(CLI::App& root, Context&, Action& action) {
  register_unavailable(root, "suppress", "manage the suppression list (add, import, list, remove)",
                       action);
}

}  // namespace mailer::app
