#include "app/db/database.h"

#include <fmt/format.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <string_view>
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

// A password inside a text: [begin, end) byte offsets.
struct Span {
  std::size_t begin;
  std::size_t end;
};

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// Where passwords are in `text`: the password of each URL userinfo
// (scheme://user:PASSWORD@, the userinfo ending at the first '@', allowing
// '/' so that a malformed one is covered too) and each value after
// "password=" (any case, blanks around '=', quoted or up to a blank or '&', as
// in key=value strings and URL queries). Hand-written rather than a regular
// expression: linear, and safe on texts of any length.
std::vector<Span> password_spans(std::string_view text) {
  std::vector<Span> spans;
  for (std::size_t at = text.find("://"); at != std::string_view::npos;
       at = text.find("://", at + 3)) {
    std::size_t i = at + 3;
    while (i < text.size() && text[i] != ':' && text[i] != '/' && text[i] != '@' &&
           !is_space(text[i])) {
      ++i;
    }
    if (i >= text.size() || text[i] != ':') continue;
    std::size_t j = i + 1;
    while (j < text.size() && text[j] != '@' && !is_space(text[j])) ++j;
    if (j < text.size() && text[j] == '@') spans.push_back({i + 1, j});
  }
  constexpr std::string_view kWord = "password";
  for (std::size_t i = 0; i + kWord.size() <= text.size(); ++i) {
    bool match = true;
    for (std::size_t k = 0; k < kWord.size() && match; ++k) {
      match = std::tolower(static_cast<unsigned char>(text[i + k])) == kWord[k];
    }
    if (!match) continue;
    std::size_t j = i + kWord.size();
    while (j < text.size() && is_space(text[j])) ++j;
    if (j >= text.size() || text[j] != '=') continue;
    ++j;
    while (j < text.size() && is_space(text[j])) ++j;
    std::size_t end = j;
    if (end < text.size() && text[end] == '\'') {
      // A quoted value ends at the next unescaped quote, or with the text.
      ++end;
      while (end < text.size() && text[end] != '\'') end += text[end] == '\\' ? 2 : 1;
      end = std::min(end + 1, text.size());
    } else {
      while (end < text.size() && !is_space(text[end]) && text[end] != '&') ++end;
    }
    if (end > j) spans.push_back({j, end});
    i = end > i ? end - 1 : i;
  }
  return spans;
}

// Each spelling of the passwords inside the connection string `url`: as
// written, unquoted, and percent-decoded as far as it decodes. Longest first,
// so that a spelling inside another is not replaced first.
std::vector<std::string> password_spellings(std::string_view url) {
  std::vector<std::string> out;
  for (const Span& span : password_spans(url)) {
    std::string raw(url.substr(span.begin, span.end - span.begin));
    if (raw.size() >= 2 && raw.front() == '\'') {
      out.push_back(raw.substr(1, raw.back() == '\'' ? raw.size() - 2 : raw.size() - 1));
    }
    std::string decoded;
    for (std::size_t j = 0; j < raw.size(); ++j) {
      if (raw[j] == '%' && j + 2 < raw.size() &&
          std::isxdigit(static_cast<unsigned char>(raw[j + 1])) &&
          std::isxdigit(static_cast<unsigned char>(raw[j + 2]))) {
        decoded += static_cast<char>(std::stoi(raw.substr(j + 1, 2), nullptr, 16));
        j += 2;
      } else {
        decoded += raw[j];
      }
    }
    if (decoded != raw) out.push_back(std::move(decoded));
    out.push_back(std::move(raw));
  }
  std::erase_if(out, [](const std::string& s) { return s.empty(); });
  std::sort(out.begin(), out.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  return out;
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

std::string redact_conninfo(std::string_view text, std::string_view url) {
  std::string out(text);
  for (const std::string& secret : password_spellings(url)) {
    for (std::size_t at = out.find(secret); at != std::string::npos;
         at = out.find(secret, at + 3)) {
      out.replace(at, secret.size(), "***");
    }
  }
  std::vector<Span> spans = password_spans(out);
  // Replace from the back so that earlier offsets stay valid; skip overlaps.
  std::sort(spans.begin(), spans.end(), [](Span a, Span b) { return a.begin > b.begin; });
  std::size_t limit = out.size();
  for (const Span& span : spans) {
    if (span.end > limit) continue;
    out.replace(span.begin, span.end - span.begin, "***");
    limit = span.begin;
  }
  return out;
}

std::optional<std::string> conninfo_syntax_error(const std::string& url) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(url.c_str(), &err);
  if (opts != nullptr) {
    PQconninfoFree(opts);
    return std::nullopt;
  }
  // NULL without a message: out of memory, not a syntax error.
  std::string reason = err != nullptr ? first_line(err) : "cannot be parsed";
  PQfreemem(err);
  return redact_conninfo(reason, url);
}

std::string describe_conninfo(const std::string& url) {
  if (auto error = conninfo_syntax_error(url)) return "invalid connection string: " + *error;
  PQconninfoOption* opts = PQconninfoParse(url.c_str(), nullptr);
  if (opts == nullptr) return "invalid connection string";
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

namespace {
// libpq refuses a connection option's value only once it connects ("invalid
// sslmode value: ...", "invalid integer value "abc" for connection option
// "port""): configuration, not the network, so it is never retried.
bool is_option_value_error(std::string_view message) {
  for (std::size_t at = message.find("invalid "); at != std::string_view::npos;
       at = message.find("invalid ", at + 1)) {
    const std::string_view rest = message.substr(at + 8, 40);
    const std::size_t value = rest.find("value");
    if (value != std::string_view::npos &&
        rest.substr(0, value).find_first_not_of("abcdefghijklmnopqrstuvwxyz_ ") ==
            std::string_view::npos) {
      return true;
    }
  }
  return false;
}
}  // namespace

void Database::connect_once() {
  conn_.reset();
  if (auto error = conninfo_syntax_error(options_.url)) {
    throw ConnectionStringError("invalid database URL: " + *error);
  }
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
    if (is_option_value_error(e.what())) {
      throw ConnectionStringError(
          redact_conninfo("invalid database URL: " + first_line(e.what()), options_.url));
    }
    throw ConnectionError(redact_conninfo(
        fmt::format("cannot connect to PostgreSQL ({}): {}", describe(), first_line(e.what())),
        options_.url));
  } catch (const std::invalid_argument& e) {
    // libpq refused the string after all: configuration, not the network.
    throw ConnectionStringError(
        redact_conninfo("invalid database URL: " + first_line(e.what()), options_.url));
  }
}

pqxx::connection& Database::connection() {
  if (!conn_ || !conn_->is_open()) connect_once();
  return *conn_;
}

void Database::with_retry(const std::function<void(pqxx::connection&)>& attempt) {
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + options_.reconnect_for;
  // Never a busy loop, whatever the options say.
  auto delay = std::max(options_.reconnect_min, std::chrono::milliseconds(10));
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
      reason = redact_conninfo(
          fmt::format("lost connection to PostgreSQL ({}): {}", describe(), first_line(e.what())),
          options_.url);
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
