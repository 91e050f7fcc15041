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

// libpq waits for the operating system's TCP timeout (minutes) on a
// database host that does not answer. Unless the environment says
// otherwise, a connection attempt gives up after this many seconds, so that
// a lane is free again soon after its deadline has answered 503.
constexpr const char* kConnectTimeoutSeconds = "5";

struct ServeOptions {
  std::string listen;
  std::string admin_listen;
};

// The endpoint of `flag` when given, else of the configuration `key`.
boost::asio::ip::tcp::endpoint listen_address(const std::string& flag_value, const char* flag,
                                              const std::string& config_value, const char* key) {
  try {
    return parse_listen_address(flag_value.empty() ? config_value : flag_value);
  } catch (const std::invalid_argument& e) {
    throw UsageError(fmt::format("{}: {}", flag_value.empty() ? key : flag, e.what()));
  }
}

std::string url_of(const boost::asio::ip::tcp::endpoint& at) {
  const std::string host =
      at.address().is_v6() ? "[" + at.address().to_string() + "]" : at.address().to_string();
  return fmt::format("http://{}:{}/", host, at.port());
}

int serve(Context& ctx, const ServeOptions& o) {
  const Config& config = ctx.config();
  HttpServiceOptions options;
  options.listen = listen_address(o.listen, "--listen", config.http.listen, "[http] listen");
  options.admin_listen = listen_address(o.admin_listen, "--admin-listen", config.http.admin_listen,
                                        "[http] admin_listen");
  options.codec = unsubscribe_codec(config);
  options.database = ctx.database_options();
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
  spdlog::info("mailer serve: listening on {} (database {})", url_of(service->local_endpoint()),
               db::describe_conninfo(ctx.database_options().url));
  spdlog::info("mailer serve: admin pages on {}", url_of(*service->admin_endpoint()));
  service->run();
  spdlog::info("mailer serve: stopped");
  return kExitOk;
}

}  // namespace

void register_serve(CLI::App& root, Context& ctx, Action& action) {
  auto o = std::make_shared<ServeOptions>();
  CLI::App* sub = root.add_subcommand(
      "serve",
      "HTTP surface: one-click unsubscribe (/u/TOKEN) and /healthz on --listen; dashboard (/), "
      "/metrics and /healthz on --admin-listen; SIGTERM/SIGINT stop it and exit 0");
  sub->add_option("--listen", o->listen,
                  "ADDR:PORT to listen on (default [http] listen, 127.0.0.1:8080; port 0 picks "
                  "a free one)");
  sub->add_option("--admin-listen", o->admin_listen,
                  "ADDR:PORT of the dashboard and /metrics (default [http] admin_listen, "
                  "127.0.0.1:8081)");
  sub->callback([&ctx, &action, o] { action = [&ctx, o] { return serve(ctx, *o); }; });
}

}  // namespace mailer::app
