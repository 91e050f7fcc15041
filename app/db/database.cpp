#include "app/db/database.h"

#include <fmt/format.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <thread>

namespace mailer::db {
namespace {

// First line of a libpq message, without "FATAL:" noise or trailing space.
std::string first_line(std::string msg) {
  if (auto nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
  while (!msg.empty() && (msg.back() == ' ' || msg.back() == '\r')) msg.pop_back();
  for (const char* prefix : {"FATAL:  ", "ERROR:  "}) {
    if (msg.rfind(prefix, 0) == 0) msg.erase(0, std::string_view(prefix).size());
  }
  return msg;
}

// Keepalive probes sent before a silent peer is declared dead.
constexpr int kKeepaliveProbes = 3;

// Applies DatabaseOptions::dead_peer_timeout to the connection's socket:
// keepalives start after half of it and probe kKeepaliveProbes times over
// the other half; tcp_user_timeout is all of it. A Unix socket has no TCP
// to tune, and an option the system refuses leaves its default.
void bound_dead_peer(pqxx::connection& c, std::chrono::milliseconds timeout) {
  using std::chrono::duration_cast;
  using std::chrono::seconds;
  const int fd = c.sock();
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (timeout.count() <= 0 || fd < 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
      (addr.ss_family != AF_INET && addr.ss_family != AF_INET6)) {
    return;
  }
  const int idle = std::max<int>(1, static_cast<int>(duration_cast<seconds>(timeout / 2).count()));
  const int interval = std::max(1, idle / kKeepaliveProbes);
  const int on = 1;
  const auto user_timeout = static_cast<unsigned>(timeout.count());
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &kKeepaliveProbes, sizeof kKeepaliveProbes);
  setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout);
}

}  // namespace

std::string describe_conninfo(const std::string& url) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(url.c_str(), &err);
  if (opts == nullptr) {
    std::string reason = err ? first_line(err) : "unparseable connection string";
    PQfreemem(err);
    return "invalid connection string: " + reason;
  }
  std::string host, port, dbname, user;
  for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    std::string_view k = o->keyword;
    if (k == "host") host = o->val;
    if (k == "hostaddr" && host.empty()) host = o->val;
    if (k == "port") port = o->val;
    if (k == "dbname") dbname = o->val;
    if (k == "user") user = o->val;
  }
  PQconninfoFree(opts);
  if (host.empty()) host = "(default socket)";
  if (port.empty()) port = "5432";
  if (dbname.empty()) dbname = user.empty() ? "(default)" : user;
  return fmt::format("host={} port={} dbname={}", host, port, dbname);
}

Database::Database(DatabaseOptions options) : options_(std::move(options)) {}

Database::~Database() = default;

void Database::prepare(std::string name, std::string sql) {
  for (auto& [n, s] : statements_) {
    if (n == name) {
      s = std::move(sql);
      if (conn_) conn_->prepare(n, s);
      return;
    }
  }
  statements_.emplace_back(std::move(name), std::move(sql));
  if (conn_) conn_->prepare(statements_.back().first, statements_.back().second);
}

std::string Database::describe() const {
  return describe_conninfo(options_.url);
}

void Database::disconnect() {
  conn_.reset();
}

void Database::connect_once() {
  conn_.reset();
  try {
    std::string url = options_.url;
    auto c = std::make_unique<pqxx::connection>(url);
    c->set_variable("application_name", c->quote(options_.application_name));
    if (options_.statement_timeout.count() > 0) {
      c->set_variable("statement_timeout", std::to_string(options_.statement_timeout.count()));
    }
    bound_dead_peer(*c, options_.dead_peer_timeout);
    for (const auto& [name, sql] : statements_) c->prepare(name, sql);
    conn_ = std::move(c);
  } catch (const pqxx::broken_connection& e) {
    throw ConnectionError(
        fmt::format("cannot connect to PostgreSQL ({}): {}", describe(), first_line(e.what())));
  } catch (const std::invalid_argument& e) {
    throw ConnectionError(
        fmt::format("cannot connect to PostgreSQL ({}): {}", describe(), first_line(e.what())));
  }
}

pqxx::connection& Database::connection() {
  if (!conn_ || !conn_->is_open()) connect_once();
  return *conn_;
}

void Database::with_retry(const std::function<void(pqxx::connection&)>& attempt) {
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + options_.reconnect_for;
  auto delay = options_.reconnect_min;
  bool reported = false;
  for (;;) {
    std::string reason;
    try {
      attempt(connection());
      if (reported) spdlog::info("database connection restored ({})", describe());
      return;
    } catch (const ConnectionError& e) {
      reason = e.what();
    } catch (const pqxx::broken_connection& e) {
      conn_.reset();
      reason =
          fmt::format("lost connection to PostgreSQL ({}): {}", describe(), first_line(e.what()));
    } catch (const pqxx::in_doubt_error& e) {
      // The commit may or may not have happened; the caller's work must be
      // idempotent, so running it again is correct.
      conn_.reset();
      reason = fmt::format("lost connection to PostgreSQL during commit ({})", describe());
    }
    if (clock::now() + delay > deadline) throw ConnectionError(reason);
    if (!reported) {
      spdlog::warn(
          "{}; reconnecting with backoff for up to {}s", reason,
          std::chrono::duration_cast<std::chrono::seconds>(options_.reconnect_for).count());
      reported = true;
    }
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, options_.reconnect_max);
  }
}

}  // namespace mailer::db
