// HttpServer: a small HTTP/1.1 server on Boost.Beast for `mailer serve`, on
// one io_context with no thread per connection. It owns the edge: every
// request is bounded (header size, body size, time to send the headers and
// the body, concurrent connections) and answered with a status of its own
// (431, 413, 400, 503) before a handler ever sees it. Complete requests go
// to the handler on a separate executor (the one that owns the database) and
// the response comes back to the io thread to be written.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

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
};

// Turns one complete request into a response. Runs on the handler executor,
// one request at a time when that executor is a single thread. Exceptions
// become a 500 with a body that says nothing more.
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

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
             HttpLimits limits, boost::asio::any_io_executor handler_executor, HttpHandler handler);
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

// Parses "ADDR:PORT" or "[V6]:PORT" into an endpoint. Throws
// std::invalid_argument saying what is wrong.
boost::asio::ip::tcp::endpoint parse_listen_address(const std::string& text);

}  // namespace mailer::app
