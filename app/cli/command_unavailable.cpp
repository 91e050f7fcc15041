#include <iostream>

#include "app/base/errors.h"
#include "app/cli/commands.h"

namespace mailer::app {

CLI::App* register_unavailable(CLI::App& root, const std::string& name,
                               const std::string& description, Action& action) {
  CLI::App* sub = root.add_subcommand(name, description + " [not yet available in this build]");
  sub->allow_extras();
  sub->prefix_command();
  sub->callback([name, &action] {
    action = [name] {
      std::cerr << "mailer " << name << ": not yet available in this build\n";
      return kExitUsage;
    };
  });
  return sub;
}

}  // namespace mailer::app
