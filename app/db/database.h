// The database layer: one PostgreSQL connection, its prepared statements, and
// reconnection with backoff when the server goes away. One Database belongs to
// one thread at a time (libpqxx connections are not thread-safe).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace mailer::db {

// The server cannot be reached or went away. what() is one line:
// "cannot connect to PostgreSQL (host=H port=P dbname=D): REASON".
class ConnectionError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The connection string itself is malformed (libpq cannot parse it): bad
// configuration, never retried. what() is one line without the password:
// "invalid database URL: REASON".
class ConnectionStringError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct DatabaseOptions {
  // libpq URL or key=value string; may hold a password (never logged).
  std::string url;
  // Backoff between reconnection attempts: doubles from min to max.
  std::chrono::milliseconds reconnect_min{200};
  std::chrono::milliseconds reconnect_max{std::chrono::seconds(10)};
  // How long transact() keeps trying to reconnect before giving up with
  // ConnectionError. Zero: one attempt only.
  std::chrono::milliseconds reconnect_for{std::chrono::seconds(60)};
  // application_name shown in pg_stat_activity.
  std::string application_name = "mailer";
  // statement_timeout of the session: the server cancels a statement that
  // runs longer (pqxx::sql_error, SQLSTATE 57014). Zero: the server's own.
  std::chrono::milliseconds statement_timeout{0};
  // How long an established connection whose server went silent (host
  // down, link cut) may go unnoticed: TCP keepalives probe it when idle and
  // tcp_user_timeout bounds unacknowledged data, after which libpq reports a
  // broken connection. Zero: the operating system's defaults (hours).
  std::chrono::milliseconds dead_peer_timeout{0};
};

class Database {
 public:
  explicit Database(DatabaseOptions options);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // Registers a statement prepared on every (re)connection. Call before
  // first use; a name registered twice keeps the last SQL.
  void prepare(std::string name, std::string sql);

  // The live connection, connecting once if needed. Throws ConnectionError.
  pqxx::connection& connection();

  // Runs fn(pqxx::work&) in a transaction and commits. If the connection is
  // lost (before or during fn), reconnects with backoff (logging one line) and
  // runs fn again from the start, for up to reconnect_for: fn must be safe to
  // repeat (it is, when all its effects are in the transaction). Other
  // exceptions propagate unchanged after rollback.
  template <typename Fn>
  auto transact(Fn&& fn) {
    using Result = decltype(fn(std::declval<pqxx::work&>()));
    if constexpr (std::is_void_v<Result>) {
      with_retry([&](pqxx::connection& c) {
        pqxx::work w(c);
        fn(w);
        w.commit();
      });
    } else {
      std::optional<Result> out;
      with_retry([&](pqxx::connection& c) {
        pqxx::work w(c);
        out.emplace(fn(w));
        w.commit();
      });
      return std::move(*out);
    }
  }

  // "host=H port=P dbname=D" of the configured URL, without secrets.
  std::string describe() const;

  // Drops the connection (the next use reconnects).
  void disconnect();

 private:
  void with_retry(const std::function<void(pqxx::connection&)>& attempt);
  void connect_once();

  DatabaseOptions options_;
  std::unique_ptr<pqxx::connection> conn_;
  std::vector<std::pair<std::string, std::string>> statements_;
};

// "host=H port=P dbname=D" for a libpq URL or key=value string.
std::string describe_conninfo(const std::string& url);

// Why libpq cannot parse `url` as a URL or key=value string (one line, the
// password redacted), or nullopt when it can. Syntax only: nothing is
// resolved or connected.
std::optional<std::string> conninfo_syntax_error(const std::string& url);

// `text` with every password replaced by "***": URL userinfo passwords
// (postgresql://u:secret@h -> postgresql://u:***@h), password=... in
// key=value strings and URL queries, and, when the connection string `url`
// the text is about is given, each spelling of its password wherever it
// appears (libpq quotes fragments of a malformed string in its errors).
std::string redact_conninfo(std::string_view text, std::string_view url = {});

}  // namespace mailer::db
