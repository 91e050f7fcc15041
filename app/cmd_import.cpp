// `mailer import`: list-hygiene import of a CSV file into a list.
#include "app/commands.h"

namespace mailer::app {

void register_import(CLI::App& root, Context&, Action& action) {
  register_unavailable(root, "import", "list-hygiene import of a CSV file into a list", action);
}

}  // namespace mailer::app
