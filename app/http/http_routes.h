// The routes of `mailer serve`: `/` (dashboard), `/metrics`, `/healthz` and
// `/u/TOKEN` (one-click unsubscribe). Unknown paths get 404, known paths
// with another method 405 with Allow; a database that cannot be reached
// gets 503. Runs on the one thread that owns `db`.
#pragma once

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

class HttpRoutes {
 public:
  // Registers the statements of every route on `db`.
  HttpRoutes(db::Database& db, std::shared_ptr<const sender::UnsubscribeTokenCodec> codec);

  HttpResponse handle(const HttpRequest& req);

 private:
  HttpResponse dashboard(const HttpRequest& req, std::string_view query);
  HttpResponse metrics(const HttpRequest& req);
  HttpResponse health(const HttpRequest& req);

  MetricsSource source_;
  UnsubscribeEndpoint unsubscribe_;
};

// The value of `name` in a URL query ("a=1&b=2"), undecoded; nullopt when
// absent.
std::optional<std::string> query_parameter(std::string_view query, std::string_view name);

}  // namespace mailer::app
