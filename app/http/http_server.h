// HttpServer: a small HTTP/1.1 server on Boost.Beast for `mailer serve`, on
// one io_context with no thread per connection. It owns the edge: every
// request is bounded (header size, body size, time to send the headers and
// the body, concurrent connections) and answered with a status of its own
// (431, 413, 400, 503) before a handler ever sees it. A router on the io
// thread answers what needs no database at once; the rest goes to a lane (an
// executor that owns a database connection) whose queue is bounded and whose
// answer has a deadline, past which the io thread answers 503 itself: no
// request waits behind a stalled database for longer than its lane allows.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace mailer::app {

using HttpRequest = boost::beast::http::request<boost::beast::http::string_body>;
using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;

// The bounds of every connection. The defaults suit an operator endpoint and
// the one-click unsubscribe POSTs of mailbox providers: both are tiny.
struct HttpLimits {
  // Time a client has to send a request's headers, counted from the moment
  // the server starts reading them (slowloris: a client that dribbles header
  // bytes is cut off after this, whatever it sends). On a kept-alive
  // connection the wait for the next request counts too, so this is also
  // how long an idle connection stays open.
  std::chrono::milliseconds header_timeout{std::chrono::seconds(5)};
  // Time to send the body once the headers are in.
  std::chrono::milliseconds body_timeout{std::chrono::seconds(10)};
  // Time to take the response.
  std::chrono::milliseconds write_timeout{std::chrono::seconds(10)};
  // Largest request body (413 above it). One-click bodies are ~26 bytes.
  std::size_t max_body_bytes = 16 * 1024;
  // Largest request line plus headers (431 above it).
  std::size_t max_header_bytes = 8 * 1024;
  // Connections served at once; more are answered 503 and closed.
  std::size_t max_connections = 256;
  // Connections one peer address may hold at once, so that one client cannot
  // take every slot; more are answered 503 and closed. Behind a reverse
  // proxy every connection comes from the proxy: raise it to the proxy's
  // connection pool there (see deploy/http-proxy.md).
  std::size_t max_connections_per_source = 32;
  // Requests served on one connection; the last is answered with
  // Connection: close, so a client that keeps a connection busy forever
  // still gives its slot back now and then.
  std::size_t max_requests_per_connection = 100;
  // Age after which a connection is closed once its current request is
  // answered, for the same reason.
  std::chrono::milliseconds max_connection_age{std::chrono::seconds(60)};
};

// Turns one complete request into a response. Runs on a lane's executor.
// Exceptions become a 500 with a body that says nothing more.
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

// Where requests that need a database are answered: an executor (one thread
// owning one Database), a handler, a bound on the requests queued for it and
// a deadline per request. Shared by the io thread, which counts and times the
// requests, and the lane's thread, which runs them.
struct HttpLane {
  // Names the lane in log lines.
  std::string name;
  boost::asio::any_io_executor executor;
  HttpHandler handler;
  // Requests waiting or running at once; more are answered 503 at once
  // ("busy"), so a stalled database costs a bounded amount of memory.
  std::size_t max_queued = 64;
  // Time from hand-over to the answer. Past it the io thread answers 503
  // and the request, if it has not started, is dropped without running.
  std::chrono::milliseconds deadline{std::chrono::seconds(3)};
  // Requests handed over and not finished yet (any thread).
  std::atomic<std::size_t> queued{0};
  // When a missed deadline of this lane was last logged (io thread only).
  std::chrono::steady_clock::time_point missed_logged_at{};
  // Missed deadlines since then, reported with the next log line.
  std::size_t missed_since_log = 0;
};

// What a router decides on the io thread: an answer now (`response`), or the
// lane that answers.
struct HttpRoute {
  std::optional<HttpResponse> response;
  std::shared_ptr<HttpLane> lane;
};

// Runs on the io thread for every well-formed request: must not block.
// Exceptions become a 500.
using HttpRouter = std::function<HttpRoute(const HttpRequest&)>;

// A response with `status`, a text/plain body and the headers every response
// of this server carries.
HttpResponse text_response(boost::beast::http::status status, std::string body,
                           unsigned version = 11);

// Every member runs on the one thread that runs the io_context.
class HttpServer {
 public:
  // Binds and listens on `at`. Throws std::system_error naming the address
  // when it cannot. Accepting starts with start().
  HttpServer(boost::asio::io_context& io, const boost::asio::ip::tcp::endpoint& at,
             HttpLimits limits, HttpRouter router);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The address actually bound (port 0 resolved).
  boost::asio::ip::tcp::endpoint local_endpoint() const;

  void start();
  // Stops accepting and closes every open connection. Call on the io thread.
  void stop();

  // Connections open now (io thread only).
  std::size_t open_connections() const;

  struct State;

 private:
  std::shared_ptr<State> state_;
};

// RFC 9112 6.3: whether the end of the body is known without doubt once
// the headers are in. A Transfer-Encoding whose last coding is not chunked,
// one beside a Content-Length, or one in HTTP/1.0 leaves it unknown; reading
// on would take the body for the next request (request smuggling), so such
// a request is answered 400 and its connection closed.
bool framing_is_sound(
    const boost::beast::http::request_parser<boost::beast::http::string_body>& parser);

// RFC 9112 3.2: exactly one Host in HTTP/1.1, at most one before.
bool host_is_sound(const HttpRequest& req);

// The path of a request target without its query: origin-form as it is, the
// path of an absolute-form target ("http://host/p" -> "/p", "http://host" ->
// "/"), anything else ("*", authority-form) as it is.
std::string_view target_path(std::string_view target);

// A request target fit for a log line: at most 200 bytes, bytes outside
// printable ASCII written as \xNN, and anything that may be an unsubscribe
// token (after "/u/" in any case, or a long run of token characters)
// replaced by "(token)".
std::string loggable_target(std::string_view target);

// Parses "ADDR:PORT" or "[V6]:PORT" into an endpoint. Throws
// std::invalid_argument saying what is wrong.
boost::asio::ip::tcp::endpoint parse_listen_address(const std::string& text);

}  // namespace mailer::app
