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
namespace {

namespace asio = boost::asio;
using std::chrono::milliseconds;

// Deadlines per lane. /healthz must say 503 within a few seconds whatever
// the database does, so load balancers act on it; a one-click POST may wait
// a little longer for a busy database; the dashboard's history reads are
// the heaviest statements here.
constexpr milliseconds kHealthDeadline{2000};
constexpr milliseconds kUnsubscribeDeadline{4000};
constexpr milliseconds kAdminDeadline{15000};

// Each lane's statement_timeout: the server gives up on a slow statement
// before the lane's deadline passes, so that the lane is free for the next.
constexpr milliseconds kHealthStatementTimeout{1500};
constexpr milliseconds kUnsubscribeStatementTimeout{3000};
constexpr milliseconds kAdminStatementTimeout{12000};

// Requests waiting for one lane at most; more get 503 at once. Far more
// than a healthy database ever has queued (each request takes a few ms).
constexpr std::size_t kLaneQueue = 64;

// How soon a connection to a database host that went silent is found dead.
constexpr milliseconds kDeadPeerTimeout{10000};

// After a request finds the database unreachable, unsubscribe POSTs get 503
// at once for this long instead of each trying to connect again.
constexpr milliseconds kOutageHold{2000};

// A request rides out one reconnection (a restarted server) for this long;
// longer waits are the lane deadline's business.
constexpr milliseconds kReconnectFor{500};

db::DatabaseOptions lane_database(db::DatabaseOptions o, milliseconds statement_timeout) {
  o.statement_timeout = statement_timeout;
  o.dead_peer_timeout = kDeadPeerTimeout;
  o.reconnect_for = std::min(o.reconnect_for, kReconnectFor);
  return o;
}

// One thread owning one Database: a lane's executor and its connection.
struct LaneThread {
  LaneThread(const db::DatabaseOptions& base, milliseconds statement_timeout)
      : database(lane_database(base, statement_timeout)) {}
  asio::thread_pool thread{1};
  db::Database database;
};

std::shared_ptr<HttpLane> make_lane(std::string name, LaneThread& t, milliseconds deadline,
                                    HttpHandler handler) {
  auto lane = std::make_shared<HttpLane>();
  lane->name = std::move(name);
  lane->executor = t.thread.get_executor();
  lane->handler = std::move(handler);
  lane->max_queued = kLaneQueue;
  lane->deadline = deadline;
  return lane;
}

}  // namespace

struct HttpService::Parts {
  explicit Parts(HttpServiceOptions o)
      : options(std::move(o)),
        unsubscribe_thread(options.database, kUnsubscribeStatementTimeout),
        health_thread(options.database, kHealthStatementTimeout),
        admin_thread(options.database, kAdminStatementTimeout),
        outage(std::make_shared<DatabaseOutage>(kOutageHold)),
        unsubscribe(unsubscribe_thread.database, options.codec, outage),
        readiness(health_thread.database),
        admin_pages(admin_thread.database) {
    lanes.unsubscribe = make_lane("unsubscribe", unsubscribe_thread, kUnsubscribeDeadline,
                                  [this](const HttpRequest& r) { return unsubscribe.handle(r); });
    lanes.health = make_lane("health", health_thread, kHealthDeadline,
                             [this](const HttpRequest& r) { return readiness.handle(r); });
    lanes.admin = make_lane("admin", admin_thread, kAdminDeadline,
                            [this](const HttpRequest& r) { return admin_pages.handle(r); });
    server.emplace(io, options.listen, options.limits, [this](const HttpRequest& r) {
      return route_public(r, *options.codec, lanes, *outage);
    });
    if (options.admin_listen) {
      admin_server.emplace(io, *options.admin_listen, options.limits,
                           [this](const HttpRequest& r) { return route_admin(r, lanes); });
    }
  }

  void shut_down() {
    if (stopped) return;
    stopped = true;
    server->stop();
    if (admin_server) admin_server->stop();
    if (signals) {
      boost::system::error_code ec;
      signals->cancel(ec);
    }
  }

  void join_lanes() {
    unsubscribe_thread.thread.join();
    health_thread.thread.join();
    admin_thread.thread.join();
  }

  HttpServiceOptions options;
  asio::io_context io{1};
  LaneThread unsubscribe_thread;
  LaneThread health_thread;
  LaneThread admin_thread;
  std::shared_ptr<DatabaseOutage> outage;
  UnsubscribeHandler unsubscribe;
  ReadinessCheck readiness;
  AdminPages admin_pages;
  HttpLanes lanes;
  std::optional<HttpServer> server;
  std::optional<HttpServer> admin_server;
  std::optional<asio::signal_set> signals;
  bool stopped = false;
};

HttpService::HttpService(HttpServiceOptions options)
    : parts_(std::make_unique<Parts>(std::move(options))) {
  parts_->server->start();
  if (parts_->admin_server) parts_->admin_server->start();
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
  parts_->join_lanes();
}

asio::ip::tcp::endpoint HttpService::local_endpoint() const {
  return parts_->server->local_endpoint();
}

std::optional<asio::ip::tcp::endpoint> HttpService::admin_endpoint() const {
  if (!parts_->admin_server) return std::nullopt;
  return parts_->admin_server->local_endpoint();
}

void HttpService::run() {
  parts_->io.run();
  // The io thread has nothing left but answers the lanes may still post:
  // let them finish, then run those continuations (they close).
  parts_->join_lanes();
  parts_->io.restart();
  parts_->io.run();
}

void HttpService::stop() {
  asio::post(parts_->io, [p = parts_.get()] { p->shut_down(); });
}

}  // namespace mailer::app
