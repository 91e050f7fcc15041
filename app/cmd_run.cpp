// `mailer run`: the worker: scheduler and sender. Until the SMTP dispatcher
// is part of this build, the worker sends through a rehearsal transport
// (--transport null|record:FILE), for rehearsals, tests and benchmarks.
#include <fmt/format.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <iostream>

#include "app/campaign_store.h"
#include "app/commands.h"
#include "app/errors.h"
#include "app/rehearsal_transport.h"
#include "app/scheduler.h"
#include "app/worker_loop.h"
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

int run_worker(Context& ctx, const RunOptions& o) {
  if (o.transport.empty()) {
    throw UsageError(
        "mailer run: this build has no SMTP dispatcher yet; use --transport null or "
        "--transport record:FILE for a rehearsal");
  }
  RehearsalSpec spec;
  try {
    spec = parse_rehearsal_spec(o.transport);
  } catch (const std::invalid_argument& e) {
    throw UsageError(fmt::format("--transport: {}", e.what()));
  }
  const Config& config = ctx.config();
  db::Database& db = ctx.database();
  db::DeliveryQueue queue(db);
  CampaignStore store(db);
  auto classifier = std::make_shared<throttle::ProviderClassifier>();
  CampaignLifecycle lifecycle(
      store, queue, [classifier](std::string_view domain) { return classifier->classify(domain); });
  Scheduler scheduler(
      store, queue, lifecycle, [] { return std::chrono::system_clock::now(); },
      config.worker.past_due_warning);
  std::unique_ptr<RehearsalTransport> transport;
  try {
    transport = std::make_unique<RehearsalTransport>(spec);
  } catch (const std::runtime_error& e) {
    throw OperationalError(e.what());
  }
  WorkerOptions options;
  options.worker_id = o.worker_id.empty() ? default_worker_id() : o.worker_id;
  options.until_idle = o.until_idle;
  if (o.campaign > 0) options.campaign = o.campaign;
  options.settings = config.worker;
  install_stop_handlers();
  spdlog::info("worker {} started (transport {}, database {})", options.worker_id, o.transport,
               db.describe());
  WorkerLoop loop(queue, scheduler, *transport, options, g_stop);
  const WorkerReport report = loop.run();
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
                  "rehearsal transport for tests and benchmarks: null | record:FILE, optionally "
                  "followed by ,defer-first=DUR");
  sub->add_flag("--json", o->json, "print one JSON object on stdout when the worker ends");
  sub->callback([&ctx, &action, o] { action = [&ctx, o] { return run_worker(ctx, *o); }; });
}

}  // namespace mailer::app
