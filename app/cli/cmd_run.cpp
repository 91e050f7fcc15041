// `mailer run`: the worker: scheduler and sender. It sends over SMTP through
// the dispatcher (throttle, composer, transport), or through a rehearsal
// transport (--transport null|record:FILE) for tests and benchmarks of the
// queue without any network.
#include <fmt/format.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <iostream>

#include "app/base/errors.h"
#include "app/base/fd_limit.h"
#include "app/campaigns/campaign_store.h"
#include "app/campaigns/scheduler.h"
#include "app/cli/commands.h"
#include "app/db/reply_counters.h"
#include "app/worker/dispatcher_setup.h"
#include "app/worker/rehearsal_transport.h"
#include "app/worker/worker_loop.h"
#include "sender/dispatcher.h"
#include "throttle/provider_classifier.h"

namespace mailer::app {
namespace {

struct RunOptions {
  std::string worker_id;
  bool until_idle = false;
  std::int64_t campaign = 0;
  std::string transport;
  bool json = false;
};

std::atomic<bool> g_stop{false};

extern "C" void request_stop(int) {
  g_stop.store(true);
}

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = request_stop;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
}

std::string default_worker_id() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "worker");
  return fmt::format("{}:{}", host, getpid());
}

// The content of a campaign for the composer.
std::optional<sender::CampaignContent> campaign_content(CampaignStore& store, std::int64_t id) {
  std::optional<Campaign> c = store.find(id);
  if (!c) return std::nullopt;
  sender::CampaignContent content;
  content.campaign_id = c->id;
  content.list_id = c->list_name;
  content.from = c->from;
  content.reply_to = c->reply_to;
  content.subject = c->subject;
  content.text = c->text_body;
  content.html = c->html_body;
  return content;
}

int run_worker(Context& ctx, const RunOptions& o) {
  std::optional<RehearsalSpec> spec;
  if (!o.transport.empty()) {
    try {
      spec = parse_rehearsal_spec(o.transport);
    } catch (const std::invalid_argument& e) {
      throw UsageError(fmt::format("--transport: {}", e.what()));
    }
  }
  const Config& config = ctx.config();
  // Settings first: a missing secret or unreadable DKIM key stops the worker
  // before it claims anything.
  std::optional<sender::DispatcherSettings> settings;
  if (!spec) {
    settings = dispatcher_settings(config);
    // Each provider's connection limit may be open at once, plus the
    // database, DNS and log files.
    std::uint64_t wanted = 64;
    for (const auto& [name, policy] : settings->policies) {
      wanted += static_cast<std::uint64_t>(std::max(policy.max_connections, 0));
    }
    raise_open_file_limit_for("mailer run", wanted);
  }
  db::Database& db = ctx.database();
  db::DeliveryQueue queue(db);
  db::ReplyCounters counters(db);
  CampaignStore store(db);
  auto classifier = std::make_shared<throttle::ProviderClassifier>(config.throttle.provider_rules);
  CampaignLifecycle lifecycle(
      store, queue, [classifier](std::string_view domain) { return classifier->classify(domain); });
  Scheduler scheduler(
      store, queue, lifecycle, [] { return std::chrono::system_clock::now(); },
      config.worker.past_due_warning);
  std::unique_ptr<db::DeliveryTransport> transport;
  sender::Dispatcher* dispatcher = nullptr;
  if (spec) {
    try {
      transport = std::make_unique<RehearsalTransport>(*spec);
    } catch (const std::runtime_error& e) {
      throw OperationalError(e.what());
    }
  } else {
    auto d = std::make_unique<sender::Dispatcher>(
        std::move(*settings), queue, &counters,
        [&store](std::int64_t id) { return campaign_content(store, id); });
    dispatcher = d.get();
    transport = std::move(d);
  }
  WorkerOptions options;
  options.worker_id = o.worker_id.empty() ? default_worker_id() : o.worker_id;
  options.until_idle = o.until_idle;
  if (o.campaign > 0) options.campaign = o.campaign;
  options.settings = config.worker;
  install_stop_handlers();
  spdlog::info("worker {} started (transport {}, egress {}, database {})", options.worker_id,
               spec ? o.transport : std::string("smtp"), config.sender.egress, db.describe());
  WorkerLoop loop(queue, scheduler, *transport, options, g_stop);
  const WorkerReport report = loop.run();
  if (dispatcher != nullptr) {
    dispatcher->save_state();
    for (const auto& [provider, v] : dispatcher->providers()) {
      spdlog::info("{}: rate {:.1f} msg/s, {} connection(s), {}; {} accepted, {} deferred",
                   provider, v.rate, v.connections, v.mode, v.accepted, v.deferred);
    }
  }
  std::cerr << "mailer run: " << report.reason << '\n';
  if (o.json) {
    print_json({{"reason", report.reason},
                {"outcomes", report.outcomes},
                {"lost_leases", report.lost_leases}});
  }
  return kExitOk;
}

}  // namespace

void register_run(CLI::App& root, Context& ctx, Action& action) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* sub = root.add_subcommand(
      "run",
      "the worker: scheduler plus sender; SIGTERM/SIGINT drain (finish in-flight sends, "
      "flush outcomes, release leases) and exit 0");
  sub->add_option("--worker-id", o->worker_id,
                  "lease owner name, unique among live workers (default HOST:PID)");
  sub->add_flag("--until-idle", o->until_idle,
                "exit 0 once nothing is sendable now and no retry is pending; waiting for a "
                "send window or a scheduled start does not count");
  sub->add_option("--campaign", o->campaign, "only this campaign")->check(CLI::PositiveNumber);
  sub->add_option("--transport", o->transport,
                  "send nothing: a rehearsal transport for tests and benchmarks of the queue: "
                  "null | record:FILE, optionally followed by ,defer-first=DUR and ,delay=DUR "
                  "(default: SMTP through the configured routes)");
  sub->add_flag("--json", o->json, "print one JSON object on stdout when the worker ends");
  sub->callback([&ctx, &action, o] { action = [&ctx, o] { return run_worker(ctx, *o); }; });
}

}  // namespace mailer::app
