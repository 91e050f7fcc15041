// Shared pieces of the `mailer serve` suites: an HttpService run in-process
// on a loopback port, a small blocking HTTP client with a deadline, the
// `mailer serve` binary started in the background, and a seeded database.
#pragma once

#include <fmt/format.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <thread>

#include "app/http/http_service.h"
#include "sender/unsubscribe_token.h"
#include "tests/app/queue_seed.h"
#include "tests/app/queue_worker_process.h"
#include "tests/support/process.h"

namespace mailer::testing {

// The secret every serve test signs tokens with.
inline const std::string kServeSecret = "serve-test-secret-0123456789abcdef";

inline std::shared_ptr<const sender::UnsubscribeTokenCodec> serve_codec() {
  return std::make_shared<sender::UnsubscribeTokenCodec>(kServeSecret);
}

// An HttpService on 127.0.0.1 (free ports for the public and the admin
// listener), served by a thread of its own.
class InProcessServe {
 public:
  explicit InProcessServe(const std::string& database_url, app::HttpLimits limits = {}) {
    app::HttpServiceOptions o;
    o.listen = {boost::asio::ip::make_address("127.0.0.1"), 0};
    o.admin_listen = boost::asio::ip::tcp::endpoint{boost::asio::ip::make_address("127.0.0.1"), 0};
    o.limits = limits;
    o.database.url = database_url;
    o.database.reconnect_for = std::chrono::milliseconds(0);
    o.codec = serve_codec();
    service_ = std::make_unique<app::HttpService>(std::move(o));
    port_ = service_->local_endpoint().port();
    admin_port_ = service_->admin_endpoint()->port();
    thread_ = std::thread([this] { service_->run(); });
  }
  ~InProcessServe() {
    service_->stop();
    thread_.join();
  }
  // The public listener: /u/TOKEN and /healthz.
  unsigned short port() const { return port_; }
  // The admin listener: /, /metrics and /healthz.
  unsigned short admin_port() const { return admin_port_; }

 private:
  std::unique_ptr<app::HttpService> service_;
  unsigned short port_ = 0;
  unsigned short admin_port_ = 0;
  std::thread thread_;
};

struct HttpReply {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

// One request on a fresh connection to 127.0.0.1:port; throws on a network
// error or when no complete answer comes within `limit`.
inline HttpReply http_call(unsigned short port, const std::string& method,
                           const std::string& target, const std::string& body = "",
                           const std::map<std::string, std::string>& headers = {},
                           std::chrono::seconds limit = std::chrono::seconds(10)) {
  namespace beast = boost::beast;
  namespace http = beast::http;
  boost::asio::io_context io;
  beast::tcp_stream stream(io);
  stream.expires_after(limit);
  stream.connect({boost::asio::ip::make_address("127.0.0.1"), port});
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, fmt::format("127.0.0.1:{}", port));
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body() = body;
  if (!body.empty() || method == "POST") req.prepare_payload();
  http::write(stream, req);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  http::read(stream, buffer, parser);
  HttpReply r;
  r.status = static_cast<int>(parser.get().result_int());
  for (const auto& f : parser.get()) {
    std::string name(f.name_string());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    r.headers[name] = std::string(f.value());
  }
  r.body = parser.get().body();
  beast::error_code ec;
  stream.socket().shutdown(boost::asio::ip::tcp::socket::shutdown_both, ec);
  return r;
}

// The `mailer serve` binary on free loopback ports, with a configuration
// file of its own. The ports are read from its log lines.
class ServeProcess {
 public:
  ServeProcess(const std::string& database_url, const std::string& dir, bool with_secret = true) {
    const std::string secret_file = dir + "/unsubscribe.key";
    write_file(secret_file, kServeSecret + "\n");
    std::string config = fmt::format(
        "[database]\nurl = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n"
        "admin_listen = \"127.0.0.1:0\"\n",
        database_url);
    if (with_secret) config += fmt::format("[unsubscribe]\nsecret_file = \"{}\"\n", secret_file);
    write_file(dir + "/mailer.toml", config);
    process_ = std::make_unique<WorkerProcess>(
        std::vector<std::string>{"--config", dir + "/mailer.toml", "serve"},
        std::map<std::string, std::string>{}, dir + "/serve.out", dir + "/serve.err");
  }

  // Waits for the listening line; nullopt when the process ended or did not
  // get there within `limit`.
  std::optional<unsigned short> wait_listening(
      std::chrono::seconds limit = std::chrono::seconds(20)) {
    const std::regex line(R"(listening on http://127\.0\.0\.1:(\d+)/)");
    const std::regex admin(R"(admin pages on http://127\.0\.0\.1:(\d+)/)");
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      std::smatch m;
      std::smatch a;
      const std::string err = process_->err();
      if (std::regex_search(err, m, line) && std::regex_search(err, a, admin)) {
        port_ = static_cast<unsigned short>(std::stoi(m[1]));
        admin_port_ = static_cast<unsigned short>(std::stoi(a[1]));
        return port_;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return std::nullopt;
  }

  unsigned short port() const { return port_; }
  unsigned short admin_port() const { return admin_port_; }
  WorkerProcess& process() { return *process_; }

 private:
  std::unique_ptr<WorkerProcess> process_;
  unsigned short port_ = 0;
  unsigned short admin_port_ = 0;
};

// A free TCP port on 127.0.0.1 with nothing listening on it (bound, then
// released: nothing else in the test takes ports in between).
inline unsigned short closed_loopback_port() {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor a(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

}  // namespace mailer::testing
