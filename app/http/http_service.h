// HttpService: `mailer serve` assembled and running: the public HttpServer
// (/u/TOKEN, /healthz) and the admin one (/, /metrics, /healthz) on one
// io_context, and three lanes, each one thread owning one Database: one for
// unsubscribe POSTs, one for /healthz, one for the admin pages.
//
// Why lanes rather than queries on the io thread: libpqxx is blocking, and a
// slow or unreachable database would otherwise stall every connection,
// including the timers that cut slow clients off. Why three: a stalled
// unsubscribe connection must not hold /healthz past its deadline, and a
// heavy dashboard must not delay unsubscribes. Requests that need no
// database never reach a lane.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <memory>
#include <optional>

#include "app/db/database.h"
#include "app/http/http_server.h"
#include "sender/unsubscribe_token.h"

namespace mailer::app {

struct HttpServiceOptions {
  // The public listener.
  boost::asio::ip::tcp::endpoint listen;
  // The admin listener; none: the admin pages are not served.
  std::optional<boost::asio::ip::tcp::endpoint> admin_listen;
  HttpLimits limits;
  // Every lane's Database starts from these; each sets its own
  // statement_timeout below its lane's deadline.
  db::DatabaseOptions database;
  std::shared_ptr<const sender::UnsubscribeTokenCodec> codec;
  // Stop cleanly on SIGTERM and SIGINT (the command); tests call stop().
  bool stop_on_signals = false;
};

class HttpService {
 public:
  // Binds the listening sockets (std::system_error when it cannot).
  // Connects to the database only when a request needs it.
  explicit HttpService(HttpServiceOptions options);
  ~HttpService();
  HttpService(const HttpService&) = delete;
  HttpService& operator=(const HttpService&) = delete;

  // The bound public address (port 0 resolved).
  boost::asio::ip::tcp::endpoint local_endpoint() const;
  // The bound admin address; none when not served.
  std::optional<boost::asio::ip::tcp::endpoint> admin_endpoint() const;

  // Serves until stop() or, with stop_on_signals, SIGTERM/SIGINT; then
  // closes every connection, lets each lane finish its request and returns.
  void run();

  // Asks run() to return. Safe from any thread, and before run().
  void stop();

 private:
  struct Parts;
  std::unique_ptr<Parts> parts_;
};

}  // namespace mailer::app
