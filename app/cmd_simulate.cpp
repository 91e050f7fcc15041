// `mailer simulate`: run the throttle in virtual time against simulated providers.
#include "app/commands.h"

namespace mailer::app {

void register_simulate(CLI::App& root, Context&, Action& action) {
  register_unavailable(root, "simulate",
                       "run the throttle in virtual time against simulated providers", action);
}

}  // namespace mailer::app
