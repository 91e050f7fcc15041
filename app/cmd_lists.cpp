// `mailer lists`: manage recipient lists (create, list, show).
#include "app/commands.h"

namespace mailer::app {

void register_lists(CLI::App& root, Context&, Action& action) {
  register_unavailable(root, "lists", "manage recipient lists (create, list, show)", action);
}

}  // namespace mailer::app
