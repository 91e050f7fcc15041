#include <algorithm>
#include <iostream>

#include "app/cli/commands.h"

namespace mailer::app {

bool report_unknown_command(const CLI::App& root) {
  if (!root.get_subcommands().empty()) return false;
  const std::vector<std::string> words = root.remaining();
  if (words.empty() || words.front().empty() || words.front().front() == '-') return false;
  const auto all = root.get_subcommands([](const CLI::App*) { return true; });
  std::size_t width = 0;
  for (const CLI::App* sub : all) width = std::max(width, sub->get_name().size());
  std::cerr << "mailer: unknown command \"" << words.front() << "\"\ncommands:\n";
  for (const CLI::App* sub : all) {
    const std::string& name = sub->get_name();
    std::cerr << "  " << name << std::string(width - name.size() + 2, ' ') << sub->get_description()
              << '\n';
  }
  return true;
}

}  // namespace mailer::app
