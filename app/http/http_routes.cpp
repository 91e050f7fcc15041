#include "app/http/http_routes.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "app/http/dashboard_page.h"
#include "app/metrics/metrics_exposition.h"

namespace mailer::app {
namespace {

namespace http = boost::beast::http;

HttpResponse method_not_allowed(const HttpRequest& req, const char* allow) {
  HttpResponse res =
      text_response(http::status::method_not_allowed, "method not allowed\n", req.version());
  res.set(http::field::allow, allow);
  return res;
}

HttpResponse unavailable(const HttpRequest& req, std::string_view what, const std::exception& e) {
  spdlog::warn("http: {}: {}", what, e.what());
  return text_response(http::status::service_unavailable, "database unavailable\n", req.version());
}

}  // namespace

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

HttpRoutes::HttpRoutes(db::Database& db, std::shared_ptr<const sender::UnsubscribeTokenCodec> codec)
    : source_(db), unsubscribe_(db, std::move(codec)) {}

HttpResponse HttpRoutes::handle(const HttpRequest& req) {
  const std::string_view target(req.target().data(), req.target().size());
  const auto question = target.find('?');
  const std::string_view path = target.substr(0, question);
  const std::string_view query =
      question == std::string_view::npos ? std::string_view{} : target.substr(question + 1);
  const bool get = req.method() == http::verb::get;
  try {
    if (path.rfind("/u/", 0) == 0) return unsubscribe_.handle(req, path.substr(3));
    if (path == "/") return get ? dashboard(req, query) : method_not_allowed(req, "GET");
    if (path == "/metrics") return get ? metrics(req) : method_not_allowed(req, "GET");
    if (path == "/healthz") return get ? health(req) : method_not_allowed(req, "GET");
  } catch (const db::ConnectionError& e) {
    return unavailable(req, path.rfind("/u/", 0) == 0 ? "/u/(token)" : path, e);
  } catch (const pqxx::broken_connection& e) {
    return unavailable(req, path.rfind("/u/", 0) == 0 ? "/u/(token)" : path, e);
  }
  return text_response(http::status::not_found, "not found\n", req.version());
}

HttpResponse HttpRoutes::dashboard(const HttpRequest& req, std::string_view query) {
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

HttpResponse HttpRoutes::metrics(const HttpRequest& req) {
  HttpResponse res =
      text_response(http::status::ok, render_prometheus(source_.snapshot()), req.version());
  res.set(http::field::content_type, kPrometheusContentType);
  res.prepare_payload();
  return res;
}

HttpResponse HttpRoutes::health(const HttpRequest& req) {
  try {
    source_.ping();
  } catch (const std::exception& e) {
    spdlog::warn("http: /healthz: {}", e.what());
    return text_response(http::status::service_unavailable, "database unreachable\n",
                         req.version());
  }
  return text_response(http::status::ok, "ok\n", req.version());
}

}  // namespace mailer::app
