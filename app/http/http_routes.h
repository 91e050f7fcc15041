// The routes of `mailer serve`, split by listener. The public listener (the
// address in every List-Unsubscribe) has `/u/TOKEN` (one-click unsubscribe),
// `/healthz` (readiness, for load balancers) and `OPTIONS *`; everything
// else is 404. The admin listener has `/` (dashboard), `/metrics` and
// `/healthz`. Known paths with another method get 405 with Allow; HEAD is
// answered like GET.
//
// Each router runs on the io thread and answers what needs no database at
// once (pages, 404, 405, a forged token, a malformed body); the rest goes to
// a lane. Handlers on a lane own that lane's Database; a database that
// cannot be reached or does not answer in time gets 503.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "app/db/database.h"
#include "app/http/http_server.h"
#include "app/http/unsubscribe_endpoint.h"
#include "app/metrics/metrics_source.h"
#include "sender/unsubscribe_token.h"

namespace mailer::app {

// Remembers that the database could not be reached, so that requests in the
// next moments get 503 at once instead of each waiting for a connection
// attempt of its own. Written on a lane's thread, read on the io thread.
class DatabaseOutage {
 public:
  // A failure is remembered for `hold`.
  explicit DatabaseOutage(std::chrono::milliseconds hold) : hold_(hold) {}

  void failed();
  void answered();
  // Whether a failure was seen less than `hold` ago and nothing answered since.
  bool recent() const;

 private:
  std::chrono::milliseconds hold_;
  // steady_clock ticks until which the outage is assumed; 0 for none.
  std::atomic<std::chrono::steady_clock::rep> until_{0};
};

// The lanes the routers hand requests to.
struct HttpLanes {
  // One-click POSTs.
  std::shared_ptr<HttpLane> unsubscribe;
  // /healthz, on a connection of its own so that it never waits behind
  // unsubscribe POSTs.
  std::shared_ptr<HttpLane> health;
  // Dashboard and /metrics.
  std::shared_ptr<HttpLane> admin;
};

// io thread: the public listener's routing.
HttpRoute route_public(const HttpRequest& req, const sender::UnsubscribeTokenCodec& codec,
                       const HttpLanes& lanes, const DatabaseOutage& outage);

// io thread: the admin listener's routing.
HttpRoute route_admin(const HttpRequest& req, const HttpLanes& lanes);

// The unsubscribe lane's handler: suppresses the recipient of a valid
// one-click POST. Records an unreachable database in `outage`.
class UnsubscribeHandler {
 public:
  // Registers the statement on `db`.
  UnsubscribeHandler(db::Database& db, std::shared_ptr<const sender::UnsubscribeTokenCodec> codec,
                     std::shared_ptr<DatabaseOutage> outage);

  HttpResponse handle(const HttpRequest& req);

 private:
  UnsubscribeEndpoint endpoint_;
  std::shared_ptr<DatabaseOutage> outage_;
};

// The health lane's handler: /healthz is 200 "ok" when the database answers
// a statement over the tables the routes use and its schema is at this
// binary's last migration; 503 otherwise (unreachable, schema missing or
// behind).
class ReadinessCheck {
 public:
  // Registers the statement on `db`.
  explicit ReadinessCheck(db::Database& db);

  HttpResponse handle(const HttpRequest& req);

 private:
  db::Database& db_;
};

// The admin lane's handler: the dashboard and /metrics.
class AdminPages {
 public:
  // Registers the statements on `db`.
  explicit AdminPages(db::Database& db);

  HttpResponse handle(const HttpRequest& req);

 private:
  HttpResponse dashboard(const HttpRequest& req, std::string_view query);
  HttpResponse metrics(const HttpRequest& req);

  MetricsSource source_;
};

// The value of `name` in a URL query ("a=1&b=2"), undecoded; nullopt when
// absent.
std::optional<std::string> query_parameter(std::string_view query, std::string_view name);

}  // namespace mailer::app
