// `mailer serve`: HTTP surface: one-click unsubscribe, /metrics, /healthz, dashboard.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cstdlib>

#include "app/base/errors.h"
#include "app/cli/commands.h"
#include "app/config/unsubscribe_secret.h"
#include "app/http/http_service.h"

namespace mailer::app {
namespace {

// How long one request keeps trying to reach a database that went away
// before answering 503: long enough to ride out a reconnect after a server
// restart, short enough that /healthz answers promptly while it is down.
constexpr std::chrono::milliseconds kRequestReconnectFor{1500};

// libpq waits for the operating system's TCP timeout (minutes) on a
// database host that does not answer; every request would queue behind that
// one connection attempt. Unless the environment says otherwise, give up
// after this many seconds so that /healthz reports 503 promptly.
constexpr const char* kConnectTimeoutSeconds = "5";

struct ServeOptions {
  std::string listen;
};

int serve(Context& ctx, const ServeOptions& o) {
  const Config& config = ctx.config();
  HttpServiceOptions options;
  const std::string listen = o.listen.empty() ? config.http.listen : o.listen;
  try {
    options.listen = parse_listen_address(listen);
  } catch (const std::invalid_argument& e) {
    throw UsageError(
        fmt::format("{}: {}", o.listen.empty() ? "[http] listen" : "--listen", e.what()));
  }
  options.codec = unsubscribe_codec(config);
  options.database = ctx.database_options();
  options.database.reconnect_for = kRequestReconnectFor;
  options.database.application_name = "mailer serve";
  options.stop_on_signals = true;
  // A connect_timeout in the URL still wins over this default.
  setenv("PGCONNECT_TIMEOUT", kConnectTimeoutSeconds, /*overwrite=*/0);
  std::unique_ptr<HttpService> service;
  try {
    service = std::make_unique<HttpService>(std::move(options));
  } catch (const std::system_error& e) {
    throw OperationalError(e.what());
  }
  const auto at = service->local_endpoint();
  const std::string host =
      at.address().is_v6() ? "[" + at.address().to_string() + "]" : at.address().to_string();
  spdlog::info("mailer serve: listening on http://{}:{}/ (database {})", host, at.port(),
               db::describe_conninfo(ctx.database_options().url));
  service->run();
  spdlog::info("mailer serve: stopped");
  return kExitOk;
}

}  // namespace

void register_serve(CLI::App& root, Context& ctx, Action& action) {
  auto o = std::make_shared<ServeOptions>();
  CLI::App* sub = root.add_subcommand(
      "serve",
      "HTTP surface: one-click unsubscribe (/u/TOKEN), /metrics, /healthz, dashboard (/); "
      "SIGTERM/SIGINT stop it and exit 0");
  sub->add_option("--listen", o->listen,
                  "ADDR:PORT to listen on (default [http] listen, 127.0.0.1:8080; port 0 picks "
                  "a free one)");
  sub->callback([&ctx, &action, o] { action = [&ctx, o] { return serve(ctx, *o); }; });
}

}  // namespace mailer::app
