#include "app/http/http_service.h"

#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/thread_pool.hpp>
#include <csignal>
#include <optional>

#include "app/http/http_routes.h"

namespace mailer::app {

namespace asio = boost::asio;

struct HttpService::Parts {
  explicit Parts(HttpServiceOptions o)
      : options(std::move(o)),
        database(options.database),
        routes(database, options.codec),
        server(io, options.listen, options.limits, db_thread.get_executor(),
               [this](const HttpRequest& req) { return routes.handle(req); }) {}

  void shut_down() {
    if (stopped) return;
    stopped = true;
    server.stop();
    if (signals) {
      boost::system::error_code ec;
      signals->cancel(ec);
    }
  }

  HttpServiceOptions options;
  asio::io_context io{1};
  // The database thread: every handler runs here, one at a time.
  asio::thread_pool db_thread{1};
  db::Database database;
  HttpRoutes routes;
  HttpServer server;
  std::optional<asio::signal_set> signals;
  bool stopped = false;
};

HttpService::HttpService(HttpServiceOptions options)
    : parts_(std::make_unique<Parts>(std::move(options))) {
  parts_->server.start();
  if (parts_->options.stop_on_signals) {
    parts_->signals.emplace(parts_->io, SIGTERM, SIGINT);
    parts_->signals->async_wait([p = parts_.get()](boost::system::error_code ec, int signal) {
      if (ec) return;
      spdlog::info("mailer serve: signal {} received; stopping", signal);
      p->shut_down();
    });
  }
}

HttpService::~HttpService() {
  parts_->db_thread.join();
}

asio::ip::tcp::endpoint HttpService::local_endpoint() const {
  return parts_->server.local_endpoint();
}

void HttpService::run() {
  parts_->io.run();
  // The io thread has nothing left but answers the database thread may
  // still post: let it finish, then run those continuations (they close).
  parts_->db_thread.join();
  parts_->io.restart();
  parts_->io.run();
}

void HttpService::stop() {
  asio::post(parts_->io, [p = parts_.get()] { p->shut_down(); });
}

}  // namespace mailer::app
