// mailer: bulk email campaign sender. Parses the command line, sets up
// logging, runs one subcommand and maps its failure to the exit codes of the
// CLI contract: 0 success, 1 operational failure, 2 bad usage or input.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "app/base/errors.h"
#include "app/base/logging.h"
#include "app/cli/commands.h"
#include "app/db/database.h"

using namespace mailer::app;

int main(int argc, char** argv) {
  CLI::App root{"mailer: bulk email campaign sender with per-provider adaptive throttling",
                "mailer"};
  root.require_subcommand(1);
  root.set_version_flag("--version", "mailer 0.1.0");
  Context ctx;
  root.add_option("--config", ctx.global.config_path,
                  "TOML configuration file (default: $MAILER_CONFIG, else ./mailer.toml if "
                  "present, else built-in defaults)");
  root.add_option("--log-level", ctx.global.log_level, "trace|debug|info|warn|error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  root.add_option("--log-format", ctx.global.log_format, "text|json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();

  Action action;
  register_migrate(root, ctx, action);
  register_lists(root, ctx, action);
  register_import(root, ctx, action);
  register_suppress(root, ctx, action);
  register_campaign(root, ctx, action);
  register_run(root, ctx, action);
  register_serve(root, ctx, action);
  register_status(root, ctx, action);
  register_sink(root, ctx, action);
  register_simulate(root, ctx, action);
  register_doctor(root, ctx, action);
  register_bounces(root, ctx, action);
  register_inbound(root, ctx, action);

  try {
    root.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() != 0 && report_unknown_command(root)) return kExitUsage;
    const int rc = root.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }

  try {
    setup_logging(ctx.global.log_level, ctx.global.log_format);
    if (!action) {
      std::cerr << "mailer: no command given (see mailer --help)\n";
      return kExitUsage;
    }
    return action();
  } catch (const UsageError& e) {
    std::cerr << "mailer: " << redact_secrets(e.what()) << '\n';
    return kExitUsage;
  } catch (const mailer::db::ConnectionStringError& e) {
    std::cerr << "mailer: " << redact_secrets(e.what()) << '\n';
    return kExitUsage;
  } catch (const mailer::db::ConnectionError& e) {
    std::cerr << "mailer: " << redact_secrets(e.what()) << '\n';
    return kExitOperational;
  } catch (const OperationalError& e) {
    std::cerr << "mailer: " << redact_secrets(e.what()) << '\n';
    return kExitOperational;
  } catch (const std::exception& e) {
    std::cerr << "mailer: " << redact_secrets(e.what()) << '\n';
    return kExitOperational;
  }
}
