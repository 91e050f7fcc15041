#include "app/http/http_server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <array>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <charconv>
#include <optional>
#include <stdexcept>
#include <unordered_map>

namespace mailer::app {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// After an error response (413, 431, 400) the rest of the request is still
// on its way: closing at once would reset the connection and the client
// could lose the response. The server half-closes, then reads and discards
// at most this much for at most this long before closing.
constexpr std::size_t kLingerBytes = 64 * 1024;
constexpr std::chrono::milliseconds kLingerTime{1000};

// When accept fails (out of file descriptors, most likely), wait this long
// before accepting again rather than spinning on the error.
constexpr std::chrono::milliseconds kAcceptRetryDelay{100};

// A request path fit for a log line: unsubscribe tokens are credentials of a
// sort (whoever holds one can unsubscribe its recipient), so they stay out.
std::string loggable_path(const HttpRequest& req) {
  std::string_view target(req.target().data(), req.target().size());
  target = target.substr(0, target.find('?'));
  if (target.rfind("/u/", 0) == 0) return "/u/(token)";
  return std::string(target.substr(0, 200));
}

class Session;

}  // namespace

struct HttpServer::State : std::enable_shared_from_this<HttpServer::State> {
  State(asio::io_context& io_context, HttpLimits l, asio::any_io_executor ex, HttpHandler h)
      : io(io_context),
        acceptor(io_context),
        retry_timer(io_context),
        limits(l),
        handler_executor(std::move(ex)),
        handler(std::move(h)) {}

  void accept();

  asio::io_context& io;
  tcp::acceptor acceptor;
  asio::steady_timer retry_timer;
  HttpLimits limits;
  asio::any_io_executor handler_executor;
  HttpHandler handler;
  bool stopped = false;
  // Open connections, so stop() can close them and accept() can count them.
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions;
};

namespace {

// One connection: reads requests one after another (keep-alive), each
// under the limits, hands each to the handler executor and writes its
// response. Lives as long as an operation of its own is pending.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<HttpServer::State> server)
      : stream_(std::move(socket)),
        server_(std::move(server)),
        buffer_(server_->limits.max_header_bytes + server_->limits.max_body_bytes + 4096) {}

  ~Session() { server_->sessions.erase(this); }

  void start() {
    server_->sessions.emplace(this, weak_from_this());
    read_request();
  }

  // Refuses the connection politely: the server is at its connection limit.
  void refuse() {
    server_->sessions.emplace(this, weak_from_this());
    write_and_close(text_response(http::status::service_unavailable, "too many connections\n"));
  }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
  }

 private:
  void read_request() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(server_->limits.max_header_bytes));
    parser_->body_limit(server_->limits.max_body_bytes);
    stream_.expires_after(server_->limits.header_timeout);
    http::async_read_header(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_header(ec); });
  }

  void on_header(beast::error_code ec) {
    if (ec) return on_read_error(ec, "read headers");
    if (parser_->is_done()) return dispatch();
    stream_.expires_after(server_->limits.body_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                       if (ec) return self->on_read_error(ec, "read body");
                       self->dispatch();
                     });
  }

  // What a broken request deserves: silence for a client that left or was
  // too slow, a status for one that sent too much or nonsense.
  void on_read_error(beast::error_code ec, const char* step) {
    if (ec == asio::error::operation_aborted) return;
    if (ec == http::error::end_of_stream || ec == asio::error::eof ||
        ec == asio::error::connection_reset) {
      return close();
    }
    if (ec == beast::error::timeout) {
      spdlog::debug("http: {} timed out; closing the connection", step);
      return close();
    }
    if (ec == http::error::body_limit) {
      return write_and_close(
          text_response(http::status::payload_too_large, "request body too large\n"));
    }
    if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
      return write_and_close(text_response(http::status::request_header_fields_too_large,
                                           "request headers too large\n"));
    }
    spdlog::debug("http: {}: {}", step, ec.message());
    write_and_close(text_response(http::status::bad_request, "bad request\n"));
  }

  void dispatch() {
    auto req = std::make_shared<HttpRequest>(parser_->release());
    parser_.reset();
    stream_.expires_never();
    // The continuation takes over `self`, so the last reference to the
    // session is never dropped on the handler thread.
    asio::post(server_->handler_executor, [self = shared_from_this(), req]() mutable {
      HttpResponse res;
      try {
        res = self->server_->handler(*req);
      } catch (const std::exception& e) {
        spdlog::error("http: {} {}: {}", std::string(req->method_string()), loggable_path(*req),
                      e.what());
        res = text_response(http::status::internal_server_error, "internal error\n");
      }
      spdlog::debug("http: {} {} -> {}", std::string(req->method_string()), loggable_path(*req),
                    res.result_int());
      res.version(req->version());
      res.keep_alive(req->keep_alive());
      res.prepare_payload();
      auto executor = self->stream_.get_executor();
      asio::post(executor, [self = std::move(self), res = std::make_shared<HttpResponse>(
                                                        std::move(res))] { self->write(res); });
    });
  }

  void write(std::shared_ptr<HttpResponse> res) {
    if (server_->stopped) return close();
    stream_.expires_after(server_->limits.write_timeout);
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res](beast::error_code ec, std::size_t) {
                        if (ec) return self->close();
                        if (!res->keep_alive() || self->server_->stopped) return self->linger();
                        self->read_request();
                      });
  }

  void write_and_close(HttpResponse res) {
    res.keep_alive(false);
    res.prepare_payload();
    auto owned = std::make_shared<HttpResponse>(std::move(res));
    stream_.expires_after(server_->limits.write_timeout);
    http::async_write(stream_, *owned,
                      [self = shared_from_this(), owned](beast::error_code ec, std::size_t) {
                        if (ec) return self->close();
                        self->linger();
                      });
  }

  // Half-closes, then discards what the client still sends (bounded in
  // bytes and time) so that it reads our response before the connection ends.
  void linger() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    if (ec) return close();
    stream_.expires_after(kLingerTime);
    drain();
  }

  void drain() {
    stream_.async_read_some(asio::buffer(scratch_),
                            [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                              self->drained_ += n;
                              if (ec || self->drained_ >= kLingerBytes) return self->close();
                              self->drain();
                            });
  }

  beast::tcp_stream stream_;
  std::shared_ptr<HttpServer::State> server_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::array<char, 4096> scratch_{};
  std::size_t drained_ = 0;
};

}  // namespace

void HttpServer::State::accept() {
  if (stopped) return;
  acceptor.async_accept(io, [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
    if (self->stopped) return;
    if (ec) {
      if (ec == asio::error::operation_aborted) return;
      spdlog::warn("http: accept: {}", ec.message());
      self->retry_timer.expires_after(kAcceptRetryDelay);
      self->retry_timer.async_wait([self](beast::error_code wait_ec) {
        if (!wait_ec) self->accept();
      });
      return;
    }
    auto session = std::make_shared<Session>(std::move(socket), self);
    if (self->sessions.size() >= self->limits.max_connections) {
      session->refuse();
    } else {
      session->start();
    }
    self->accept();
  });
}

HttpResponse text_response(http::status status, std::string body, unsigned version) {
  HttpResponse res{status, version};
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.set(http::field::cache_control, "no-store");
  res.set("X-Content-Type-Options", "nosniff");
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

HttpServer::HttpServer(asio::io_context& io, const tcp::endpoint& at, HttpLimits limits,
                       asio::any_io_executor handler_executor, HttpHandler handler)
    : state_(std::make_shared<State>(io, limits, std::move(handler_executor), std::move(handler))) {
  beast::error_code ec;
  auto fail = [&](const char* step) {
    throw std::system_error(
        ec, fmt::format("http: cannot {} {}:{}", step, at.address().to_string(), at.port()));
  };
  state_->acceptor.open(at.protocol(), ec);
  if (ec) fail("open a socket for");
  state_->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (ec) fail("set SO_REUSEADDR on");
  state_->acceptor.bind(at, ec);
  if (ec) fail("bind");
  state_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) fail("listen on");
}

HttpServer::~HttpServer() {
  state_->stopped = true;
  beast::error_code ec;
  state_->acceptor.close(ec);
}

tcp::endpoint HttpServer::local_endpoint() const {
  return state_->acceptor.local_endpoint();
}

void HttpServer::start() {
  state_->accept();
}

void HttpServer::stop() {
  state_->stopped = true;
  beast::error_code ec;
  state_->acceptor.close(ec);
  state_->retry_timer.cancel();
  // Copy first: closing may destroy sessions, which unregister themselves.
  std::vector<std::shared_ptr<Session>> open;
  for (auto& [ptr, weak] : state_->sessions) {
    if (auto s = weak.lock()) open.push_back(std::move(s));
  }
  for (auto& s : open) s->close();
}

std::size_t HttpServer::open_connections() const {
  return state_->sessions.size();
}

tcp::endpoint parse_listen_address(const std::string& text) {
  std::string host;
  std::string port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      throw std::invalid_argument(fmt::format("\"{}\": expected [IPV6]:PORT", text));
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos) {
      throw std::invalid_argument(fmt::format("\"{}\": expected ADDR:PORT", text));
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (host == "localhost") host = "127.0.0.1";
  beast::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (ec) {
    throw std::invalid_argument(
        fmt::format("\"{}\": \"{}\" is not an IP address (use e.g. 127.0.0.1:8080)", text, host));
  }
  unsigned value = 0;
  const auto [end, perr] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || perr != std::errc() || end != port.data() + port.size() || value > 65535) {
    throw std::invalid_argument(fmt::format("\"{}\": port must be a number 0-65535", text));
  }
  return {address, static_cast<unsigned short>(value)};
}

}  // namespace mailer::app
