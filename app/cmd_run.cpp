// `mailer run`: the worker: scheduler and sender.
#include "app/commands.h"

namespace mailer::app {

void register_run(CLI::App& root, Context&, Action& action) {
  register_unavailable(root, "run", "the worker: scheduler and sender", action);
}

}  // namespace mailer::app
