// The `mailer` subcommands. Each registrar adds its subcommand (options and
// help) to the root and, when that subcommand is parsed, stores in `action`
// the work to run; main() runs it and maps errors to exit codes.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

#include "app/cli/context.h"

namespace mailer::app {

// Runs the parsed command; returns the exit status.
using Action = std::function<int()>;

void register_migrate(CLI::App& root, Context& ctx, Action& action);
void register_lists(CLI::App& root, Context& ctx, Action& action);
void register_import(CLI::App& root, Context& ctx, Action& action);
void register_suppress(CLI::App& root, Context& ctx, Action& action);
void register_campaign(CLI::App& root, Context& ctx, Action& action);
void register_run(CLI::App& root, Context& ctx, Action& action);
void register_serve(CLI::App& root, Context& ctx, Action& action);
void register_status(CLI::App& root, Context& ctx, Action& action);
void register_sink(CLI::App& root, Context& ctx, Action& action);
void register_simulate(CLI::App& root, Context& ctx, Action& action);
void register_doctor(CLI::App& root, Context& ctx, Action& action);
void register_bounces(CLI::App& root, Context& ctx, Action& action);
void register_inbound(CLI::App& root, Context& ctx, Action& action);

// After a failed parse of `root`: when the first word given is no command of
// `root`, prints `mailer: unknown command "NAME"` and the list of commands on
// stderr and returns true (the caller exits 2). Returns false for any other
// parse error, which CLI11 reports itself.
bool report_unknown_command(const CLI::App& root);

}  // namespace mailer::app
