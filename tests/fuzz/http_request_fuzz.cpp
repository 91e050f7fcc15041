// Fuzzes what `mailer serve` does with a request's bytes before any
// database: Beast's request parser under the server's limits, the framing
// and Host checks, both routers with the answers they give at once, and the
// rendering of the target for log lines. An input holding "/u/TOKEN" gets a
// token that verifies in its place, so the one-click path is reached too.
// Beyond not crashing: a request whose framing is unsound is never routed;
// only a verified one-click POST reaches the unsubscribe lane, only
// /healthz, / and /metrics read-only requests the others; and a logged
// target is printable ASCII with no token in it.
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "app/http/http_routes.h"
#include "app/http/http_server.h"

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using namespace mailer::app;

void require(bool ok) {
  if (!ok) std::abort();
}

const mailer::sender::UnsubscribeTokenCodec& codec() {
  static const mailer::sender::UnsubscribeTokenCodec c("fuzz-secret-0123456789abcdef0123");
  return c;
}

const std::string& valid_token() {
  static const std::string t = codec().Issue({11, 22, 33});
  return t;
}

HttpLanes& lanes() {
  static HttpLanes l{std::make_shared<HttpLane>(), std::make_shared<HttpLane>(),
                     std::make_shared<HttpLane>()};
  return l;
}

std::string with_token(std::string_view raw) {
  std::string out(raw);
  for (auto at = out.find("/u/TOKEN"); at != std::string::npos; at = out.find("/u/TOKEN", at)) {
    out.replace(at + 3, 5, valid_token());
    at += 3 + valid_token().size();
  }
  return out;
}

void check_logged(std::string_view target) {
  const std::string logged = loggable_target(target);
  for (unsigned char c : logged) require(c >= 0x20 && c < 0x7f);
  require(logged.find(valid_token().substr(0, 24)) == std::string::npos);
}

void check_routes(const HttpRequest& req) {
  static const DatabaseOutage outage(std::chrono::seconds(1));
  const std::string_view target(req.target().data(), req.target().size());
  const std::string_view path = target_path(target);
  const bool reads = req.method() == http::verb::get || req.method() == http::verb::head;
  const HttpRoute pub = route_public(req, codec(), lanes(), outage);
  require(pub.response.has_value() != (pub.lane != nullptr));
  if (pub.lane == lanes().unsubscribe) {
    require(req.method() == http::verb::post && path.rfind("/u/", 0) == 0);
    require(codec().Verify(path.substr(3)).has_value());
  } else if (pub.lane) {
    require(pub.lane == lanes().health && path == "/healthz" && reads);
  }
  const HttpRoute admin = route_admin(req, lanes());
  require(admin.response.has_value() != (admin.lane != nullptr));
  if (admin.lane) {
    require(reads && (path == "/" || path == "/metrics" || path == "/healthz"));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;
  const std::string input = with_token(std::string_view(reinterpret_cast<const char*>(data), size));
  check_logged(input.substr(0, 300));
  // The server's limits (HttpLimits' defaults).
  const HttpLimits limits;
  http::request_parser<http::string_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
  parser.body_limit(limits.max_body_bytes);
  parser.eager(false);
  beast::error_code ec;
  std::size_t used = 0;
  // Headers first, as the server reads them.
  while (!parser.is_header_done() && used < input.size()) {
    const std::size_t n =
        parser.put(boost::asio::buffer(input.data() + used, input.size() - used), ec);
    used += n;
    if (ec || n == 0) break;
  }
  if (ec || !parser.is_header_done()) return 0;
  if (!framing_is_sound(parser)) return 0;
  parser.eager(true);
  while (!parser.is_done() && used < input.size()) {
    const std::size_t n =
        parser.put(boost::asio::buffer(input.data() + used, input.size() - used), ec);
    used += n;
    if (ec || n == 0) break;
  }
  if (!parser.is_done()) {
    // A request without a body is complete at the end of its headers only
    // when the stream ends there.
    parser.put_eof(ec);
    if (ec || !parser.is_done()) return 0;
  }
  const HttpRequest req = parser.release();
  check_logged({req.target().data(), req.target().size()});
  if (!host_is_sound(req)) return 0;
  check_routes(req);
  return 0;
}
