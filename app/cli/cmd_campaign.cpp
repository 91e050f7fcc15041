// `mailer campaign`: create and control campaigns (create, start, pause,
// resume, cancel, list, show).
#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "app/base/errors.h"
#include "app/campaigns/campaign_report.h"
#include "app/campaigns/campaign_store.h"
#include "app/campaigns/scheduler.h"
#include "app/cli/commands.h"
#include "app/db/feedback_store.h"
#include "sender/mime.h"
#include "sender/template.h"
#include "throttle/provider_classifier.h"

namespace mailer::app {
namespace {

struct CreateOptions {
  std::string name, list, from, subject, text_file, html_file, reply_to, at, window, tz;
  bool json = false;
};

struct IdOptions {
  std::int64_t id = 0;
  bool json = false;
};

std::string read_template_file(const std::string& option, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw UsageError(fmt::format("{} {}: cannot read: {}", option, path, std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Compiles one template and rejects merge fields the list's recipients lack.
void check_template(const std::string& field, const std::string& source,
                    sender::TemplateEscaping escaping,
                    const std::set<std::string, std::less<>>& known) {
  try {
    auto compiled = sender::CompiledTemplate::Compile(source, field, escaping);
    auto unknown = compiled.UnknownFields(known);
    if (!unknown.empty()) {
      std::string names;
      for (const auto& u : unknown) names += (names.empty() ? "\"" : ", \"") + u.name + "\"";
      throw UsageError(fmt::format("{}: unknown merge field(s) {} (the list's recipients have: {})",
                                   field, names,
                                   known.empty() ? std::string("no attributes")
                                                 : fmt::format("{}", fmt::join(known, ", "))));
    }
  } catch (const sender::TemplateSyntaxError& e) {
    throw UsageError(fmt::format("{}: {}", field, e.what()));
  }
}

std::string check_mailbox(const std::string& option, const std::string& value) {
  try {
    sender::Mailbox::Parse(value);
  } catch (const sender::MimeError& e) {
    throw UsageError(fmt::format("{}: {}", option, e.what()));
  }
  return value;
}

NewCampaign validate(CampaignStore& store, const CreateOptions& o) {
  NewCampaign c;
  c.name = o.name;
  if (c.name.empty()) throw UsageError("--name: must not be empty");
  auto list_id = store.find_list(o.list);
  if (!list_id) throw UsageError(fmt::format("--list: no list named \"{}\"", o.list));
  c.list_id = *list_id;
  c.from = check_mailbox("--from", o.from);
  if (!o.reply_to.empty()) c.reply_to = check_mailbox("--reply-to", o.reply_to);
  c.subject = o.subject;
  if (c.subject.empty()) throw UsageError("--subject: must not be empty");
  if (!o.text_file.empty()) c.text_body = read_template_file("--text", o.text_file);
  if (!o.html_file.empty()) c.html_body = read_template_file("--html", o.html_file);
  if (!c.text_body && !c.html_body) throw UsageError("--text or --html: give at least one body");
  c.timezone = o.tz.empty() ? "UTC" : o.tz;
  const date::time_zone* zone = nullptr;
  try {
    zone = find_zone(c.timezone);
  } catch (const std::invalid_argument& e) {
    throw UsageError(fmt::format("--tz: {}", e.what()));
  }
  if (!o.at.empty()) {
    try {
      c.scheduled_at = parse_start_time(o.at, zone);
    } catch (const std::invalid_argument& e) {
      throw UsageError(fmt::format("--at: {}", e.what()));
    }
  }
  if (!o.window.empty()) {
    try {
      SendWindow w = SendWindow::parse(o.window, c.timezone);
      c.window_start = w.start_minute();
      c.window_end = w.end_minute();
    } catch (const std::invalid_argument& e) {
      throw UsageError(fmt::format("--window: {}", e.what()));
    }
  }
  const auto known = store.attribute_names(c.list_id);
  check_template("--subject", c.subject, sender::TemplateEscaping::kNone, known);
  if (c.text_body) {
    check_template("--text " + o.text_file, *c.text_body, sender::TemplateEscaping::kNone, known);
  }
  if (c.html_body) {
    check_template("--html " + o.html_file, *c.html_body, sender::TemplateEscaping::kHtml, known);
  }
  return c;
}

int run_create(Context& ctx, const CreateOptions& o) {
  CampaignStore store(ctx.database());
  const NewCampaign c = validate(store, o);
  const std::int64_t id = store.create(c);
  if (o.json) {
    print_json({{"id", id}});
  } else {
    std::cout << id << '\n';
    std::cerr << fmt::format("mailer campaign: created campaign {} ({})\n", id,
                             c.scheduled_at ? "scheduled for " + format_utc(*c.scheduled_at)
                                            : std::string("draft; start it with `mailer "
                                                          "campaign start ") +
                                                  std::to_string(id) + "`");
  }
  return kExitOk;
}

int run_transition(Context& ctx, const std::string& verb, const IdOptions& o) {
  db::Database& db = ctx.database();
  CampaignStore store(db);
  db::DeliveryQueue queue(db);
  auto classifier = std::make_shared<throttle::ProviderClassifier>();
  CampaignLifecycle lifecycle(
      store, queue, [classifier](std::string_view domain) { return classifier->classify(domain); });
  const auto now = std::chrono::system_clock::now();
  std::string status;
  if (verb == "start") status = lifecycle.start(o.id, now);
  if (verb == "pause") status = lifecycle.pause(o.id, now);
  if (verb == "resume") status = lifecycle.resume(o.id, now);
  if (verb == "cancel") status = lifecycle.cancel(o.id, now);
  if (o.json) {
    print_json({{"id", o.id}, {"status", status}});
  } else {
    std::cerr << fmt::format("mailer campaign: campaign {} is now {}\n", o.id, status);
  }
  return kExitOk;
}

int run_list(Context& ctx, bool json) {
  CampaignStore store(ctx.database());
  const auto all = store.all();
  if (json) {
    nlohmann::json list = nlohmann::json::array();
    for (const Campaign& c : all) list.push_back(campaign_summary_json(c));
    print_json({{"campaigns", list}});
    return kExitOk;
  }
  std::cout << fmt::format("{:>6}  {:<14}  {:<20}  {:<16}  {}\n", "ID", "STATUS", "LIST",
                           "SCHEDULED (UTC)", "NAME");
  for (const Campaign& c : all) {
    std::cout << fmt::format("{:>6}  {:<14}  {:<20}  {:<16}  {}\n", c.id, c.status, c.list_name,
                             c.scheduled_at ? format_utc(*c.scheduled_at).substr(0, 16) : "-",
                             c.name);
  }
  return kExitOk;
}

int run_show(Context& ctx, const IdOptions& o) {
  db::Database& db = ctx.database();
  CampaignStore store(db);
  db::DeliveryQueue queue(db);
  auto c = store.find(o.id);
  if (!c) throw UsageError(fmt::format("no campaign with id {}", o.id));
  nlohmann::json report = campaign_report_json(*c, store, queue, ctx.config());
  db::FeedbackStore feedback(db);
  const db::FeedbackCounts f = feedback.counts(c->id);
  report["feedback"] = {{"hard", f.hard},
                        {"soft", f.soft},
                        {"complaints", f.complaints},
                        {"auto_replies", f.auto_replies},
                        {"unmatched", f.unmatched}};
  if (std::optional<std::string> reason = feedback.pause_reason(c->id)) {
    report["pause_reason"] = *reason;
  }
  if (o.json) {
    print_json(report);
  } else {
    std::cout << format_campaign_report(report);
  }
  return kExitOk;
}

void add_id_command(CLI::App* campaign, const std::string& verb, const std::string& help,
                    Context& ctx, Action& action) {
  auto o = std::make_shared<IdOptions>();
  CLI::App* sub = campaign->add_subcommand(verb, help);
  sub->add_option("ID", o->id, "campaign id")->required()->check(CLI::PositiveNumber);
  sub->add_flag("--json", o->json, "print one JSON object on stdout");
  sub->callback([&ctx, &action, o, verb] {
    action = [&ctx, o, verb] { return run_transition(ctx, verb, *o); };
  });
}

}  // namespace

void register_campaign(CLI::App& root, Context& ctx, Action& action) {
  CLI::App* campaign = root.add_subcommand("campaign", "create and control campaigns");
  campaign->require_subcommand(1);

  auto c = std::make_shared<CreateOptions>();
  CLI::App* create = campaign->add_subcommand(
      "create",
      "create a campaign (draft; scheduled with --at). Templates are checked now: unknown "
      "merge fields, unreadable files and bad addresses are errors. A scheduled campaign "
      "found due late still starts, with a warning when later than [worker] past_due_warning");
  create->add_option("--name", c->name, "campaign name")->required();
  create->add_option("--list", c->list, "recipient list name")->required();
  create->add_option("--from", c->from, "From: \"Name <a@d>\" or a@d")->required();
  create->add_option("--subject", c->subject, "subject template")->required();
  create->add_option("--text", c->text_file, "text/plain template file");
  create->add_option("--html", c->html_file, "text/html template file");
  create->add_option("--reply-to", c->reply_to, "Reply-To address");
  create->add_option("--at", c->at,
                     "start time: ISO 8601 with offset (2026-03-01T09:00:00+01:00) or local "
                     "time in --tz (2026-03-01T09:00)");
  create->add_option("--window", c->window,
                     "daily send window HH:MM-HH:MM in --tz local time; may cross midnight");
  create->add_option("--tz", c->tz, "IANA time zone for --at and --window (default UTC)");
  create->add_flag("--json", c->json, "print {\"id\":N} on stdout");
  create->callback([&ctx, &action, c] { action = [&ctx, c] { return run_create(ctx, *c); }; });

  add_id_command(campaign, "start", "start a draft or scheduled campaign now", ctx, action);
  add_id_command(campaign, "pause", "pause a scheduled, running or waiting campaign", ctx, action);
  add_id_command(campaign, "resume", "resume a paused campaign", ctx, action);
  add_id_command(campaign, "cancel", "cancel a campaign; its unsent deliveries become skipped", ctx,
                 action);

  auto list_json = std::make_shared<bool>(false);
  CLI::App* list = campaign->add_subcommand("list", "list campaigns, newest first");
  list->add_flag("--json", *list_json, "print one JSON object on stdout");
  list->callback([&ctx, &action, list_json] {
    action = [&ctx, list_json] { return run_list(ctx, *list_json); };
  });

  auto show = std::make_shared<IdOptions>();
  CLI::App* show_cmd = campaign->add_subcommand(
      "show", "a campaign's progress: deliveries by state and per-provider throttle state");
  show_cmd->add_option("ID", show->id, "campaign id")->required()->check(CLI::PositiveNumber);
  show_cmd->add_flag("--json", show->json, "print one JSON object on stdout");
  show_cmd->callback(
      [&ctx, &action, show] { action = [&ctx, show] { return run_show(ctx, *show); }; });
}

}  // namespace mailer::app
