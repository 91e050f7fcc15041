#include "app/http/http_server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <array>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <cctype>
#include <charconv>
#include <map>
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

// A stalled database makes every request of a lane miss its deadline: one
// warning per lane this often, with the count, says so without flooding the
// log (and the io thread) with a line per request.
constexpr std::chrono::seconds kMissedDeadlineLogEvery{10};

// When accept fails (out of file descriptors, most likely), wait this long
// before accepting again rather than spinning on the error.
constexpr std::chrono::milliseconds kAcceptRetryDelay{100};

// A run of this many URL-safe base64 characters in a logged target may be a
// token (they are 55): shorter runs are ordinary words and stay readable.
constexpr std::size_t kTokenLikeRun = 24;

// The longest target a log line shows.
constexpr std::size_t kLoggedTargetBytes = 200;

bool is_token_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
}

bool ascii_iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

bool has_token(const HttpRequest& req, http::field field, std::string_view token) {
  const auto [first, last] = req.equal_range(field);
  for (auto f = first; f != last; ++f) {
    std::string_view value(f->value().data(), f->value().size());
    while (!value.empty()) {
      const auto comma = value.find(',');
      std::string_view item = value.substr(0, comma);
      while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
      while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
      if (ascii_iequal(item, token)) return true;
      value = comma == std::string_view::npos ? std::string_view{} : value.substr(comma + 1);
    }
  }
  return false;
}

class Session;

}  // namespace

struct HttpServer::State : std::enable_shared_from_this<HttpServer::State> {
  State(asio::io_context& io_context, HttpLimits l, HttpRouter r)
      : io(io_context),
        acceptor(io_context),
        retry_timer(io_context),
        limits(l),
        router(std::move(r)) {}

  void accept();
  void admit(tcp::socket socket);

  asio::io_context& io;
  tcp::acceptor acceptor;
  asio::steady_timer retry_timer;
  HttpLimits limits;
  HttpRouter router;
  bool stopped = false;
  // Every open connection, served or being refused, so stop() can close them.
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions;
  // Connections being served (not refused), in all and per peer address.
  std::size_t served = 0;
  std::map<asio::ip::address, std::size_t> per_source;
};

namespace {

// One request handed to a lane: whoever settles it first (the lane with its
// answer, or the io thread at the deadline) answers; the other does nothing.
struct LaneJob {
  std::atomic<bool> settled{false};
};

// One connection: reads requests one after another (keep-alive), each
// under the limits, answers through the router (at once, or through a lane
// under its deadline) and writes the response. Lives as long as an
// operation of its own is pending.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<HttpServer::State> server)
      : stream_(std::move(socket)),
        server_(std::move(server)),
        buffer_(server_->limits.max_header_bytes + server_->limits.max_body_bytes + 4096),
        deadline_(stream_.get_executor()),
        born_(std::chrono::steady_clock::now()) {}

  ~Session() {
    server_->sessions.erase(this);
    if (source_) {
      --server_->served;
      if (--server_->per_source[*source_] == 0) server_->per_source.erase(*source_);
    }
  }

  // Serves the connection, counted against `source`'s share.
  void start(const asio::ip::address& source) {
    server_->sessions.emplace(this, weak_from_this());
    source_ = source;
    ++server_->served;
    ++server_->per_source[source];
    read_request();
  }

  // Refuses the connection politely: the server or this peer is at its
  // connection limit.
  void refuse(std::string_view why) {
    server_->sessions.emplace(this, weak_from_this());
    write_and_close(text_response(http::status::service_unavailable, std::string(why)));
  }

  void close() {
    beast::error_code ec;
    deadline_.cancel();
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
    if (!framing_is_sound(*parser_)) {
      return write_and_close(text_response(http::status::bad_request, "bad request\n"));
    }
    if (parser_->is_done()) return dispatch();
    stream_.expires_after(server_->limits.body_timeout);
    const auto& head = parser_->get();
    if (head.version() >= 11 && has_token(head, http::field::expect, "100-continue")) {
      // The client waits for this before it sends the body (RFC 9110 10.1.1).
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      return asio::async_write(stream_, asio::buffer(kContinue.data(), kContinue.size()),
                               [self = shared_from_this()](beast::error_code wec, std::size_t) {
                                 if (wec) return self->close();
                                 self->read_body();
                               });
    }
    read_body();
  }

  void read_body() {
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
    ++requests_;
    if (!host_is_sound(*req)) {
      return write_and_close(text_response(http::status::bad_request, "bad request\n"));
    }
    HttpRoute route;
    try {
      route = server_->router(*req);
    } catch (const std::exception& e) {
      spdlog::error("http: {} {}: {}", std::string(req->method_string()),
                    loggable_target(req->target()), e.what());
      route.response = text_response(http::status::internal_server_error, "internal error\n");
    }
    if (route.response) return respond(*req, std::move(*route.response));
    hand_over(std::move(req), std::move(route.lane));
  }

  // Queues `req` on `lane` and arms its deadline; the lane's answer comes
  // back to the io thread. A full lane answers 503 at once.
  void hand_over(std::shared_ptr<HttpRequest> req, std::shared_ptr<HttpLane> lane) {
    if (lane->queued.fetch_add(1) >= lane->max_queued) {
      lane->queued.fetch_sub(1);
      spdlog::debug("http: {} lane full; answering 503", lane->name);
      return respond(*req, busy_response());
    }
    auto job = std::make_shared<LaneJob>();
    deadline_.expires_after(lane->deadline);
    deadline_.async_wait([self = shared_from_this(), req, job, lane](beast::error_code ec) {
      if (ec || job->settled.exchange(true)) return;
      log_missed_deadline(*lane);
      self->respond(*req, busy_response());
    });
    // The continuation takes over `self`, so the last reference to the
    // session is never dropped on the lane's thread.
    asio::post(lane->executor, [self = shared_from_this(), req, job, lane]() mutable {
      std::optional<HttpResponse> res;
      // Not started before the deadline: the client has its 503 already.
      if (!job->settled.load()) res = run_handler(*lane, *req);
      lane->queued.fetch_sub(1);
      auto executor = self->stream_.get_executor();
      asio::post(executor, [self = std::move(self), req, job, res = std::move(res)]() mutable {
        if (!res || job->settled.exchange(true)) return;
        self->deadline_.cancel();
        self->respond(*req, std::move(*res));
      });
    });
  }

  static void log_missed_deadline(HttpLane& lane) {
    ++lane.missed_since_log;
    const auto now = std::chrono::steady_clock::now();
    if (now - lane.missed_logged_at < kMissedDeadlineLogEvery) return;
    spdlog::warn("http: {} request(s) got no answer from the {} lane within {} ms; answered 503",
                 lane.missed_since_log, lane.name, lane.deadline.count());
    lane.missed_logged_at = now;
    lane.missed_since_log = 0;
  }

  static HttpResponse run_handler(HttpLane& lane, const HttpRequest& req) {
    try {
      return lane.handler(req);
    } catch (const std::exception& e) {
      spdlog::error("http: {} {}: {}", std::string(req.method_string()),
                    loggable_target(req.target()), e.what());
      return text_response(http::status::internal_server_error, "internal error\n");
    }
  }

  static HttpResponse busy_response() {
    HttpResponse res = text_response(http::status::service_unavailable, "service unavailable\n");
    res.set(http::field::retry_after, "1");
    return res;
  }

  // Writes `res` as the answer to `req`: its version, whether the
  // connection stays open, and no body for HEAD.
  void respond(const HttpRequest& req, HttpResponse res) {
    spdlog::debug("http: {} {} -> {}", std::string(req.method_string()),
                  loggable_target(req.target()), res.result_int());
    const auto& limits = server_->limits;
    const bool spent = requests_ >= limits.max_requests_per_connection ||
                       std::chrono::steady_clock::now() - born_ >= limits.max_connection_age;
    res.version(req.version());
    res.keep_alive(req.keep_alive() && !spent);
    res.prepare_payload();
    if (req.method() == http::verb::head) {
      // RFC 9110 9.3.2: the headers of the GET answer, without its body.
      const auto length = res.body().size();
      res.body().clear();
      res.content_length(length);
    }
    write(std::make_shared<HttpResponse>(std::move(res)));
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
  // The deadline of the request a lane is answering.
  asio::steady_timer deadline_;
  std::chrono::steady_clock::time_point born_;
  std::size_t requests_ = 0;
  // The peer whose share this connection counts against; none when refused.
  std::optional<asio::ip::address> source_;
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
    self->admit(std::move(socket));
    self->accept();
  });
}

// Serves a new connection, or refuses it with 503 when the server or its
// peer is at the limit. Refusals in progress are bounded too: past the
// limit a connection is closed without an answer.
void HttpServer::State::admit(tcp::socket socket) {
  beast::error_code ec;
  const auto peer = socket.remote_endpoint(ec);
  if (ec) return;  // gone already
  const std::size_t refusing = sessions.size() - served;
  const auto it = per_source.find(peer.address());
  const std::size_t mine = it == per_source.end() ? 0 : it->second;
  const char* refusal = nullptr;
  if (served >= limits.max_connections) refusal = "too many connections\n";
  if (mine >= limits.max_connections_per_source) refusal = "too many connections from you\n";
  if (refusal == nullptr) {
    return std::make_shared<Session>(std::move(socket), shared_from_this())->start(peer.address());
  }
  if (refusing >= limits.max_connections) return;  // the socket closes here
  std::make_shared<Session>(std::move(socket), shared_from_this())->refuse(refusal);
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
                       HttpRouter router)
    : state_(std::make_shared<State>(io, limits, std::move(router))) {
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

bool framing_is_sound(const http::request_parser<http::string_body>& parser) {
  const auto& head = parser.get();
  if (head.count(http::field::transfer_encoding) == 0) return true;
  return head.version() >= 11 && parser.chunked() && head.count(http::field::content_length) == 0;
}

bool host_is_sound(const HttpRequest& req) {
  const auto hosts = req.count(http::field::host);
  return hosts == 1 || (hosts == 0 && req.version() < 11);
}

std::string_view target_path(std::string_view target) {
  target = target.substr(0, target.find('?'));
  const auto scheme = target.find("://");
  if (target.empty() || target.front() == '/' || scheme == std::string_view::npos) return target;
  for (char c : target.substr(0, scheme)) {
    if (!std::isalpha(static_cast<unsigned char>(c))) return target;
  }
  const auto slash = target.find('/', scheme + 3);
  return slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
}

std::string loggable_target(std::string_view target) {
  target = target.substr(0, kLoggedTargetBytes);
  std::string out;
  std::size_t i = 0;
  while (i < target.size()) {
    if (target.size() - i >= 3 && ascii_iequal(target.substr(i, 3), "/u/")) {
      return out + std::string(target.substr(i, 3)) + "(token)";
    }
    std::size_t run = 0;
    while (i + run < target.size() && is_token_char(target[i + run])) ++run;
    if (run > 0) {
      out += run >= kTokenLikeRun ? std::string("(token)") : std::string(target.substr(i, run));
      i += run;
      continue;
    }
    const auto c = static_cast<unsigned char>(target[i]);
    if (c < 0x20 || c >= 0x7f || c == '\\' || c == '"') {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
    ++i;
  }
  return out;
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
