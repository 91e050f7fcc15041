// `mailer migrate [--status] [--json]`: applies the embedded SQL migrations.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <iostream>

#include "app/base/errors.h"
#include "app/cli/commands.h"
#include "app/db/migrator.h"

namespace mailer::app {
namespace {

struct MigrateOptions {
  bool status = false;
  bool json = false;
};

int run_migrate(Context& ctx, const MigrateOptions& o) {
  db::Migrator migrator(ctx.database());
  try {
    if (o.status) {
      auto all = migrator.status();
      if (o.json) {
        nlohmann::json list = nlohmann::json::array();
        for (const auto& m : all) {
          list.push_back({{"name", m.name},
                          {"applied", m.applied},
                          {"applied_at", m.applied ? nlohmann::json(m.applied_at) : nullptr},
                          {"checksum", m.checksum}});
        }
        print_json({{"migrations", list}});
      } else {
        for (const auto& m : all) {
          std::cout << fmt::format("{:<8} {:<40} {}\n", m.applied ? "applied" : "pending", m.name,
                                   m.applied_at);
        }
      }
      return kExitOk;
    }
    auto applied = migrator.apply();
    if (o.json) {
      print_json({{"applied", applied}});
    } else if (applied.empty()) {
      std::cerr << "mailer migrate: database is up to date\n";
    } else {
      std::cerr << fmt::format("mailer migrate: applied {} migration(s): {}\n", applied.size(),
                               fmt::join(applied, ", "));
    }
    return kExitOk;
  } catch (const db::MigrationError& e) {
    throw OperationalError(e.what());
  }
}

}  // namespace

void register_migrate(CLI::App& root, Context& ctx, Action& action) {
  auto o = std::make_shared<MigrateOptions>();
  CLI::App* sub = root.add_subcommand(
      "migrate", "apply the database migrations in order (idempotent; refuses changed files)");
  sub->add_flag("--status", o->status, "list applied and pending migrations, change nothing");
  sub->add_flag("--json", o->json, "print one JSON object on stdout");
  sub->callback([&ctx, &action, o] { action = [&ctx, o] { return run_migrate(ctx, *o); }; });
}

}  // namespace mailer::app
