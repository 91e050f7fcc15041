#include "app/http/http_routes.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "app/db/embedded_migrations.h"
#include "app/http/dashboard_page.h"
#include "app/metrics/metrics_exposition.h"

namespace mailer::app {
namespace {

namespace http = boost::beast::http;

constexpr const char* kReadiness = "http_readiness";

// SQLSTATE of a statement cut off by statement_timeout.
constexpr std::string_view kQueryCanceled = "57014";

HttpResponse method_not_allowed(const HttpRequest& req, const char* allow) {
  HttpResponse res =
      text_response(http::status::method_not_allowed, "method not allowed\n", req.version());
  res.set(http::field::allow, allow);
  return res;
}

HttpResponse not_found(const HttpRequest& req) {
  return text_response(http::status::not_found, "not found\n", req.version());
}

HttpResponse unavailable(const HttpRequest& req, std::string_view body) {
  HttpResponse res =
      text_response(http::status::service_unavailable, std::string(body), req.version());
  res.set(http::field::retry_after, "1");
  return res;
}

bool reads(const HttpRequest& req) {
  return req.method() == http::verb::get || req.method() == http::verb::head;
}

// Runs `answer` on a lane; a database that cannot be reached, does not
// answer within statement_timeout or has no schema yet becomes a 503 (the
// log line says which), and `on_outage` is told of an unreachable one.
template <typename Answer, typename OnOutage>
HttpResponse guarded(const HttpRequest& req, std::string_view what, Answer&& answer,
                     OnOutage&& on_outage) {
  try {
    return answer();
  } catch (const db::ConnectionError& e) {
    spdlog::warn("http: {}: {}", what, e.what());
    on_outage();
  } catch (const pqxx::broken_connection& e) {
    spdlog::warn("http: {}: lost connection to PostgreSQL: {}", what, e.what());
    on_outage();
  } catch (const pqxx::undefined_table& e) {
    spdlog::warn("http: {}: database schema missing (run mailer migrate): {}", what, e.what());
  } catch (const pqxx::sql_error& e) {
    if (e.sqlstate() != kQueryCanceled) throw;
    spdlog::warn("http: {}: statement timed out", what);
  }
  return unavailable(req, "database unavailable\n");
}

}  // namespace

void DatabaseOutage::failed() {
  until_.store((std::chrono::steady_clock::now() + hold_).time_since_epoch().count());
}

void DatabaseOutage::answered() {
  until_.store(0);
}

bool DatabaseOutage::recent() const {
  return std::chrono::steady_clock::now().time_since_epoch().count() < until_.load();
}

std::optional<std::string> query_parameter(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    const auto eq = pair.find('=');
    if (pair.substr(0, eq) == name) {
      return std::string(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1));
    }
  }
  return std::nullopt;
}

HttpRoute route_public(const HttpRequest& req, const sender::UnsubscribeTokenCodec& codec,
                       const HttpLanes& lanes, const DatabaseOutage& outage) {
  const std::string_view target(req.target().data(), req.target().size());
  if (req.method() == http::verb::options && target == "*") {
    HttpResponse res = text_response(http::status::ok, "", req.version());
    res.set(http::field::allow, "GET, HEAD, POST, OPTIONS");
    return {std::move(res), nullptr};
  }
  const std::string_view path = target_path(target);
  if (path.rfind("/u/", 0) == 0) {
    if (auto answer = answer_unsubscribe_without_database(req, path.substr(3), codec)) {
      return {std::move(*answer), nullptr};
    }
    if (outage.recent()) return {unavailable(req, "database unavailable\n"), nullptr};
    return {std::nullopt, lanes.unsubscribe};
  }
  if (path == "/healthz") {
    if (!reads(req)) return {method_not_allowed(req, "GET, HEAD"), nullptr};
    return {std::nullopt, lanes.health};
  }
  return {not_found(req), nullptr};
}

HttpRoute route_admin(const HttpRequest& req, const HttpLanes& lanes) {
  const std::string_view path = target_path({req.target().data(), req.target().size()});
  if (path == "/" || path == "/metrics" || path == "/healthz") {
    if (!reads(req)) return {method_not_allowed(req, "GET, HEAD"), nullptr};
    return {std::nullopt, path == "/healthz" ? lanes.health : lanes.admin};
  }
  return {not_found(req), nullptr};
}

UnsubscribeHandler::UnsubscribeHandler(db::Database& db,
                                       std::shared_ptr<const sender::UnsubscribeTokenCodec> codec,
                                       std::shared_ptr<DatabaseOutage> outage)
    : endpoint_(db, std::move(codec)), outage_(std::move(outage)) {}

HttpResponse UnsubscribeHandler::handle(const HttpRequest& req) {
  const std::string_view path = target_path({req.target().data(), req.target().size()});
  return guarded(
      req, "/u/(token)",
      [&] {
        HttpResponse res = endpoint_.handle(req, path.substr(3));
        outage_->answered();
        return res;
      },
      [&] { outage_->failed(); });
}

ReadinessCheck::ReadinessCheck(db::Database& db) : db_(db) {
  // The tables the routes read and write, and the last migration applied.
  db_.prepare(kReadiness,
              "SELECT (SELECT max(name) FROM schema_migrations),"
              " (SELECT count(*) FROM suppressions WHERE false)"
              " + (SELECT count(*) FROM recipients WHERE false)"
              " + (SELECT count(*) FROM deliveries WHERE false)");
}

HttpResponse ReadinessCheck::handle(const HttpRequest& req) {
  const std::string_view expected = db::embedded_migrations().back().name;
  std::string applied;
  try {
    applied = db_.transact([](pqxx::work& w) {
      const pqxx::row r = w.exec_prepared1(kReadiness);
      return r[0].is_null() ? std::string() : r[0].as<std::string>();
    });
  } catch (const std::exception& e) {
    const bool schema = dynamic_cast<const pqxx::undefined_table*>(&e) != nullptr;
    spdlog::warn("http: /healthz: {}",
                 schema ? "database schema missing (run mailer migrate)" : std::string(e.what()));
    return text_response(http::status::service_unavailable,
                         schema ? "database not migrated\n" : "database unreachable\n",
                         req.version());
  }
  if (applied < expected) {
    spdlog::warn("http: /healthz: database schema at {}, this binary needs {} (run mailer migrate)",
                 applied.empty() ? "(none)" : applied, expected);
    return text_response(http::status::service_unavailable, "database not migrated\n",
                         req.version());
  }
  return text_response(http::status::ok, "ok\n", req.version());
}

AdminPages::AdminPages(db::Database& db) : source_(db) {}

HttpResponse AdminPages::handle(const HttpRequest& req) {
  const std::string_view target(req.target().data(), req.target().size());
  const std::string_view path = target_path(target);
  const auto question = target.find('?');
  const std::string_view query =
      question == std::string_view::npos ? std::string_view{} : target.substr(question + 1);
  return guarded(
      req, path, [&] { return path == "/metrics" ? metrics(req) : dashboard(req, query); }, [] {});
}

HttpResponse AdminPages::dashboard(const HttpRequest& req, std::string_view query) {
  DashboardView view;
  if (auto name = query_parameter(query, "range")) {
    auto range = find_dashboard_range(*name);
    if (!range) {
      std::string known;
      for (const auto& r : dashboard_ranges()) known += fmt::format(" {}", r.name);
      return text_response(http::status::bad_request,
                           fmt::format("unknown range; one of:{}\n", known), req.version());
    }
    view.range = *range;
  }
  view.snapshot = source_.snapshot();
  view.history = source_.history(view.range.length, kChartBuckets);
  HttpResponse res = text_response(http::status::ok, render_dashboard(view), req.version());
  res.set(http::field::content_type, "text/html; charset=utf-8");
  res.set("Content-Security-Policy", kDashboardContentSecurityPolicy);
  res.prepare_payload();
  return res;
}

HttpResponse AdminPages::metrics(const HttpRequest& req) {
  HttpResponse res =
      text_response(http::status::ok, render_prometheus(source_.snapshot()), req.version());
  res.set(http::field::content_type, kPrometheusContentType);
  res.prepare_payload();
  return res;
}

}  // namespace mailer::app
