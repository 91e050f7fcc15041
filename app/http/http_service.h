// HttpService: `mailer serve` assembled and running: the HttpServer with the
// HttpRoutes, one io_context for every connection, and one database thread.
//
// Why one database thread rather than queries on the io thread: libpqxx is
// blocking, and a slow or unreachable database would otherwise stall every
// connection, including the timers that cut slow clients off. With the
// queries on their own thread the io thread keeps accepting, timing out and
// refusing; requests wait their turn for the database (they are small: a
// few statements each), and the Database belongs to that one thread as its
// contract requires.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <memory>

#include "app/db/database.h"
#include "app/http/http_server.h"
#include "sender/unsubscribe_token.h"

namespace mailer::app {

struct HttpServiceOptions {
  boost::asio::ip::tcp::endpoint listen;
  HttpLimits limits;
  db::DatabaseOptions database;
  std::shared_ptr<const sender::UnsubscribeTokenCodec> codec;
  // Stop cleanly on SIGTERM and SIGINT (the command); tests call stop().
  bool stop_on_signals = false;
};

class HttpService {
 public:
  // Binds the listening socket (std::system_error when it cannot). Connects
  // to the database only when a request needs it.
  explicit HttpService(HttpServiceOptions options);
  ~HttpService();
  HttpService(const HttpService&) = delete;
  HttpService& operator=(const HttpService&) = delete;

  // The bound address (port 0 resolved).
  boost::asio::ip::tcp::endpoint local_endpoint() const;

  // Serves until stop() or, with stop_on_signals, SIGTERM/SIGINT; then
  // closes every connection, lets the database thread finish its request
  // and returns.
  void run();

  // Asks run() to return. Safe from any thread, and before run().
  void stop();

 private:
  struct Parts;
  std::unique_ptr<Parts> parts_;
};

}  // namespace mailer::app
