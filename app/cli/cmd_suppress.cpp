// `mailer suppress add EMAIL --reason R` · `suppress import FILE` ·
// `suppress list` · `suppress remove EMAIL`: the suppression list.
#include <fmt/format.h>

#include <iostream>

#include "app/base/errors.h"
#include "app/cli/commands.h"
#include "app/db/suppression_store.h"

namespace mailer::app {
namespace {

// Source recorded for suppressions made on the command line.
constexpr const char* kCliSource = "cli";

struct SuppressOptions {
  std::string email;
  std::string reason = "manual";
  std::string detail;
  std::string file;
  std::string delimiter = ",";
  bool json = false;
};

lists::EmailAddress parse_email(const std::string& text) {
  auto parsed = lists::EmailAddress::parse(lists::trim_blanks(text));
  if (auto* e = std::get_if<lists::AddressError>(&parsed)) {
    throw UsageError(fmt::format("suppress: \"{}\" is not a valid address: {}", text, e->reason));
  }
  return std::get<lists::EmailAddress>(parsed);
}

db::SuppressionReason parse_reason(const std::string& text) {
  auto r = db::suppression_reason_from_string(text);
  if (!r) {
    throw UsageError(fmt::format(
        "suppress: --reason \"{}\": expected unsubscribe, hard_bounce, complaint or manual", text));
  }
  return *r;
}

int run_add(Context& ctx, const SuppressOptions& o) {
  auto address = parse_email(o.email);
  auto reason = parse_reason(o.reason);
  db::SuppressionStore store(ctx.database());
  bool added = store.add(address, reason, kCliSource, o.detail);
  auto existing = store.find(address);
  if (o.json) {
    print_json({{"email", address.key()},
                {"added", added},
                {"reason", existing ? existing->reason : std::string(to_string(reason))}});
  } else if (added) {
    std::cerr << fmt::format("mailer suppress: {} suppressed ({})\n", address.key(), o.reason);
  } else {
    std::cerr << fmt::format("mailer suppress: {} was already suppressed ({} since {})\n",
                             address.key(), existing->reason, existing->created_at);
  }
  return kExitOk;
}

int run_import(Context& ctx, const SuppressOptions& o) {
  auto reason = parse_reason(o.reason);
  if (o.delimiter.size() != 1)
    throw UsageError("suppress import: --delimiter must be one character");
  lists::CsvOptions csv;
  csv.delimiter = o.delimiter[0];
  db::SuppressionStore store(ctx.database());
  db::SuppressionImportResult r;
  try {
    r = store.import_file(o.file, reason, "import", csv,
                          [&](std::uint64_t line, const std::string& why) {
                            std::cerr << fmt::format("{}:{}: rejected: {}\n", o.file, line, why);
                          });
  } catch (const db::SuppressionFileError& e) {
    throw UsageError(e.what());
  }
  if (o.json) {
    print_json(
        {{"rows", r.rows}, {"added", r.added}, {"already", r.already}, {"rejected", r.rejected}});
  } else {
    std::cout << fmt::format("{} rows: {} added, {} already suppressed, {} rejected\n", r.rows,
                             r.added, r.already, r.rejected);
  }
  return kExitOk;
}

int run_list(Context& ctx, const SuppressOptions& o) {
  db::SuppressionStore store(ctx.database());
  if (o.json) {
    // Streamed: one JSON object, written entry by entry.
    std::cout << "{\"suppressions\":[";
    bool first = true;
    store.for_each([&](const db::Suppression& s) {
      nlohmann::json j = {{"email", s.email_key},       {"reason", s.reason},
                          {"source", s.source},         {"detail", s.detail},
                          {"created_at", s.created_at}, {"campaign_id", nullptr}};
      if (s.campaign_id) j["campaign_id"] = *s.campaign_id;
      std::cout << (first ? "" : ",") << j.dump();
      first = false;
    });
    std::cout << "]}\n";
    return kExitOk;
  }
  store.for_each([&](const db::Suppression& s) {
    std::cout << fmt::format("{}\t{}\t{}\t{}\n", s.email_key, s.reason, s.source, s.created_at);
  });
  return kExitOk;
}

int run_remove(Context& ctx, const SuppressOptions& o) {
  auto address = parse_email(o.email);
  db::SuppressionStore store(ctx.database());
  bool removed = store.remove(address);
  if (o.json) {
    print_json({{"email", address.key()}, {"removed", removed}});
  } else {
    std::cerr << fmt::format("mailer suppress: {} {}\n", address.key(),
                             removed ? "is no longer suppressed" : "was not suppressed");
  }
  return kExitOk;
}

}  // namespace

void register_suppress(CLI::App& root, Context& ctx, Action& action) {
  auto o = std::make_shared<SuppressOptions>();
  CLI::App* sub =
      root.add_subcommand("suppress", "manage the suppression list (add, import, list, remove)");
  sub->require_subcommand(1);
  auto bind = [&ctx, &action, o](CLI::App* cmd, int (*fn)(Context&, const SuppressOptions&)) {
    cmd->add_flag("--json", o->json, "print one JSON object on stdout");
    cmd->callback([&ctx, &action, o, fn] { action = [&ctx, o, fn] { return fn(ctx, *o); }; });
  };

  CLI::App* add = sub->add_subcommand("add", "suppress one address (kept if already suppressed)");
  add->add_option("EMAIL", o->email, "the address")->required();
  add->add_option("--reason", o->reason, "unsubscribe|hard_bounce|complaint|manual")
      ->capture_default_str();
  add->add_option("--detail", o->detail, "free text kept with the suppression");
  bind(add, run_add);

  CLI::App* import = sub->add_subcommand(
      "import", "suppress every address of a CSV file (columns: email, optional reason, detail)");
  import->add_option("FILE", o->file, "CSV file with an email column")->required();
  import->add_option("--reason", o->reason, "reason for rows without a reason column value")
      ->capture_default_str();
  import->add_option("--delimiter", o->delimiter, "field delimiter")->capture_default_str();
  bind(import, run_import);

  CLI::App* list = sub->add_subcommand("list", "print every suppression");
  bind(list, run_list);

  CLI::App* remove = sub->add_subcommand("remove", "lift the suppression of one address");
  remove->add_option("EMAIL", o->email, "the address")->required();
  bind(remove, run_remove);
}

}  // namespace mailer::app
