// `mailer lists create NAME` · `lists list` · `lists show NAME`: recipient
// lists and their member counts.
#include <fmt/format.h>

#include <iostream>

#include "app/base/errors.h"
#include "app/cli/commands.h"
#include "app/db/list_store.h"

namespace mailer::app {
namespace {

struct ListsOptions {
  std::string name;
  bool json = false;
};

int run_create(Context& ctx, const ListsOptions& o) {
  db::ListStore store(ctx.database());
  std::int64_t id = 0;
  try {
    id = store.create(o.name);
  } catch (const db::ListNameError& e) {
    throw UsageError(fmt::format("lists create: {}", e.what()));
  }
  if (o.json) {
    print_json({{"id", id}, {"name", o.name}});
  } else {
    std::cerr << fmt::format("mailer lists: created list \"{}\" (id {})\n", o.name, id);
  }
  return kExitOk;
}

int run_list(Context& ctx, const ListsOptions& o) {
  db::ListStore store(ctx.database());
  auto all = store.all();
  if (o.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& l : all) {
      out.push_back(
          {{"id", l.id}, {"name", l.name}, {"members", l.members}, {"created_at", l.created_at}});
    }
    print_json({{"lists", out}});
    return kExitOk;
  }
  for (const auto& l : all) std::cout << fmt::format("{:<40} {:>10} members\n", l.name, l.members);
  return kExitOk;
}

int run_show(Context& ctx, const ListsOptions& o) {
  db::ListStore store(ctx.database());
  auto l = store.find(o.name);
  if (!l) throw UsageError(fmt::format("lists show: no list named \"{}\"", o.name));
  if (o.json) {
    print_json({{"name", l->name},
                {"members", l->members},
                {"suppressed", l->suppressed},
                {"sendable", l->members - l->suppressed},
                {"id", l->id},
                {"created_at", l->created_at}});
  } else {
    std::cout << fmt::format("list {} (id {}), created {}\n  members    {}\n  suppressed {}\n",
                             l->name, l->id, l->created_at, l->members, l->suppressed);
  }
  return kExitOk;
}

}  // namespace

void register_lists(CLI::App& root, Context& ctx, Action& action) {
  auto o = std::make_shared<ListsOptions>();
  CLI::App* sub = root.add_subcommand("lists", "manage recipient lists (create, list, show)");
  sub->require_subcommand(1);

  CLI::App* create = sub->add_subcommand("create", "create an empty list");
  create->add_option("NAME", o->name, "list name (1-200 characters, unique)")->required();
  create->add_flag("--json", o->json, "print one JSON object on stdout");
  create->callback([&ctx, &action, o] { action = [&ctx, o] { return run_create(ctx, *o); }; });

  CLI::App* list = sub->add_subcommand("list", "list every list with its member count");
  list->add_flag("--json", o->json, "print one JSON object on stdout");
  list->callback([&ctx, &action, o] { action = [&ctx, o] { return run_list(ctx, *o); }; });

  CLI::App* show = sub->add_subcommand("show", "a list's member and suppression counts");
  show->add_option("NAME", o->name, "list name")->required();
  show->add_flag("--json", o->json, "print one JSON object on stdout");
  show->callback([&ctx, &action, o] { action = [&ctx, o] { return run_show(ctx, *o); }; });
}

}  // namespace mailer::app
