#include "app/config/config.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string_view>
#include <vector>

#include "app/base/bounded_file.h"
#include "app/base/errors.h"
#include "app/config/config_reader.h"
#include "app/db/database.h"
#include "throttle/duration.h"

namespace mailer::app {
namespace {

constexpr const char* kRouteNames[] = {"gmail", "outlook", "yahoo", "other"};

// Bounds of keys whose values feed time arithmetic or loops. A wait shorter
// than kMinReconnectWait would turn reconnection into a busy loop; the upper
// bounds are far beyond sensible values but keep "now + value" and backoff
// doublings in range (the general cap is kMaxConfigDuration).
constexpr Duration kMinReconnectWait = std::chrono::milliseconds(10);
constexpr Duration kMaxReconnectWait = std::chrono::hours(1);
// A lease is renewed while its worker lives; it only says how soon a dead
// worker's deliveries return, and a day is already a long outage.
constexpr Duration kMaxLease = std::chrono::hours(24);
// Periodic work (scheduler tick, history samples) that runs less often than
// hourly would look stalled.
constexpr Duration kMaxTick = std::chrono::hours(1);
constexpr Duration kMaxSmtpTimeout = std::chrono::hours(1);
constexpr Duration kMaxDnsTimeout = std::chrono::minutes(1);
constexpr Duration kMaxLookahead = std::chrono::minutes(10);

void check_route(ConfigReader& r, const std::string& key, const std::string& value) {
  if (value == "mx" || value.rfind("smtp://", 0) == 0 || value.rfind("smtps://", 0) == 0) return;
  r.fail(key, fmt::format("expected \"mx\", \"smtp://host:port\" or \"smtps://host:port\", got {}",
                          quote_value(value)));
}

void read_database(ConfigReader r, DatabaseSettings& d) {
  d.url = r.get_string("url", d.url);
  if (auto error = db::conninfo_syntax_error(d.url); error && !d.url.empty()) {
    r.fail("url", "invalid database URL: " + elide_text(*error));
  }
  d.reconnect_min = r.get_duration("reconnect_min", d.reconnect_min, kMaxReconnectWait);
  d.reconnect_max = r.get_duration("reconnect_max", d.reconnect_max, kMaxReconnectWait);
  if (d.reconnect_min < kMinReconnectWait) {
    r.fail("reconnect_min",
           fmt::format("must be at least {}", throttle::format_duration(kMinReconnectWait)));
  }
  if (d.reconnect_max < d.reconnect_min) {
    r.fail("reconnect_max", fmt::format("must be at least reconnect_min ({})",
                                        throttle::format_duration(d.reconnect_min)));
  }
  d.reconnect_for = r.get_duration("reconnect_for", d.reconnect_for, kMaxReconnectWait);
  r.reject_unknown();
}

void read_sender(ConfigReader r, SenderSettings& s) {
  s.helo_name = r.get_string("helo_name", s.helo_name);
  s.egress = r.get_string("egress", s.egress);
  s.default_route = r.get_string("default_route", s.default_route);
  check_route(r, "default_route", s.default_route);
  if (s.egress.empty()) r.fail("egress", "must not be empty");
  s.source_address = r.get_string("source_address", s.source_address);
  if (!s.source_address.empty()) {
    unsigned char buf[sizeof(in6_addr)];
    if (::inet_pton(AF_INET, s.source_address.c_str(), buf) != 1 &&
        ::inet_pton(AF_INET6, s.source_address.c_str(), buf) != 1) {
      r.fail("source_address", fmt::format("expected an IPv4 or IPv6 address, got {}",
                                           quote_value(s.source_address)));
    }
  }
  s.starttls = r.get_choice("starttls", s.starttls, {"opportunistic", "required", "none"});
  s.verify_certificates = r.get_bool("verify_certificates", s.verify_certificates);
  s.ca_file = r.get_string("ca_file", s.ca_file);
  s.auth_user = r.get_string("auth_user", s.auth_user);
  s.auth_password_file = r.get_string("auth_password_file", s.auth_password_file);
  if (s.auth_user.find_first_of("\r\n") != std::string::npos) {
    r.fail("auth_user", "must not contain line breaks");
  }
  s.verp_domain = r.get_string("verp_domain", s.verp_domain);
  if (s.verp_domain.find_first_of(" @<>\r\n") != std::string::npos) {
    r.fail("verp_domain",
           fmt::format("expected a domain name, got {}", quote_value(s.verp_domain)));
  }
  s.feedback_id = r.get_string("feedback_id", s.feedback_id);
  if (s.feedback_id.empty()) r.fail("feedback_id", "must not be empty");
  s.message_id_domain = r.get_string("message_id_domain", s.message_id_domain);
  if (s.message_id_domain.find_first_of(" @<>\r\n") != std::string::npos) {
    r.fail("message_id_domain",
           fmt::format("expected a domain name, got {}", quote_value(s.message_id_domain)));
  }
  s.connect_timeout = r.get_duration("connect_timeout", s.connect_timeout, kMaxSmtpTimeout);
  s.reply_timeout = r.get_duration("reply_timeout", s.reply_timeout, kMaxSmtpTimeout);
  s.transaction_timeout =
      r.get_duration("transaction_timeout", s.transaction_timeout, kMaxSmtpTimeout);
  for (auto [key, value] : {std::pair{"connect_timeout", s.connect_timeout},
                            std::pair{"reply_timeout", s.reply_timeout},
                            std::pair{"transaction_timeout", s.transaction_timeout}}) {
    if (value < std::chrono::seconds(1)) r.fail(key, "must be at least 1s");
  }
  for (const std::string& key : r.keys()) {
    if (key == "lanes") {
      r.fail("lanes",
             "is gone: sending no longer uses threads; every connection is a state machine on "
             "one event loop, and the connections per provider come from the throttle's "
             "connection limit ([providers.*] max_connections); remove the key");
    }
  }
  s.messages_per_connection =
      r.get_int("messages_per_connection", s.messages_per_connection, 1, 100000);
  s.idle_timeout = r.get_duration("idle_timeout", s.idle_timeout, kMaxSmtpTimeout);
  if (s.idle_timeout < std::chrono::seconds(1)) r.fail("idle_timeout", "must be at least 1s");
  s.dns_server = r.get_string("dns_server", s.dns_server);
  if (!s.dns_server.empty() && s.dns_server.find_first_of(" ,") != std::string::npos) {
    r.fail("dns_server", fmt::format("expected one HOST:PORT, got {}", quote_value(s.dns_server)));
  }
  s.mx_port = r.get_int("mx_port", s.mx_port, 1, 65535);
  s.lookahead = r.get_duration("lookahead", s.lookahead, kMaxLookahead);
  if (s.lookahead < std::chrono::milliseconds(100)) r.fail("lookahead", "must be at least 100ms");
  s.history_interval = r.get_duration("history_interval", s.history_interval, kMaxTick);
  if (s.history_interval < std::chrono::seconds(1))
    r.fail("history_interval", "must be at least 1s");
  r.reject_unknown();
}

void read_routes(ConfigReader r, std::map<std::string, std::string>& routes) {
  for (const std::string& key : r.keys()) {
    bool known = false;
    for (const char* name : kRouteNames) known = known || key == name;
    if (!known) r.fail(key, "unknown provider (expected gmail, outlook, yahoo or other)");
    std::string value = r.get_string(key, "");
    check_route(r, key, value);
    routes[key] = value;
  }
}

DkimSettings read_dkim(ConfigReader r) {
  DkimSettings d;
  d.domain = r.get_string("domain", "");
  d.selector = r.get_string("selector", "");
  d.algorithm = r.get_choice("algorithm", d.algorithm, {"rsa-sha256", "ed25519-sha256"});
  d.key_file = r.get_string("key_file", "");
  if (d.domain.empty()) r.fail("domain", "is required");
  if (d.selector.empty()) r.fail("selector", "is required");
  if (d.key_file.empty()) r.fail("key_file", "is required");
  r.reject_unknown();
  return d;
}

void read_unsubscribe(ConfigReader r, UnsubscribeSettings& u) {
  u.base_url = r.get_string("base_url", u.base_url);
  u.mailto = r.get_string("mailto", u.mailto);
  u.secret_file = r.get_string("secret_file", u.secret_file);
  if (!u.base_url.empty() && u.base_url.rfind("https://", 0) != 0 &&
      u.base_url.rfind("http://", 0) != 0) {
    r.fail("base_url", fmt::format("expected an http(s):// URL, got {}", quote_value(u.base_url)));
  }
  r.reject_unknown();
}

void read_import(ConfigReader r, ImportSettings& s) {
  s.reject_role_accounts = r.get_bool("reject_role_accounts", s.reject_role_accounts);
  s.extra_role_accounts = r.get_string("extra_role_accounts", s.extra_role_accounts);
  s.reject_disposable = r.get_bool("reject_disposable", s.reject_disposable);
  s.reject_typos = r.get_bool("reject_typos", s.reject_typos);
  s.role_accounts_file = r.get_string("role_accounts_file", s.role_accounts_file);
  s.disposable_domains_file = r.get_string("disposable_domains_file", s.disposable_domains_file);
  s.typo_domains_file = r.get_string("typo_domains_file", s.typo_domains_file);
  s.dns_server = r.get_string("dns_server", s.dns_server);
  s.mx_concurrency = r.get_int("mx_concurrency", s.mx_concurrency, 1, 10000);
  s.mx_timeout = r.get_duration("mx_timeout", s.mx_timeout, kMaxDnsTimeout);
  if (s.mx_timeout <= Duration::zero()) r.fail("mx_timeout", "must be positive");
  s.mx_cache_ttl_min = r.get_duration("mx_cache_ttl_min", s.mx_cache_ttl_min);
  s.chunk_rows = r.get_int("chunk_rows", s.chunk_rows, 1, 1000000);
  s.max_field_bytes = r.get_int("max_field_bytes", s.max_field_bytes, 256, 1048576);
  if (!s.dns_server.empty() && s.dns_server.find_first_of(" ,") != std::string::npos) {
    r.fail("dns_server", fmt::format("expected one HOST:PORT, got {}", quote_value(s.dns_server)));
  }
  r.reject_unknown();
}

void read_http(ConfigReader r, HttpSettings& h) {
  h.listen = r.get_string("listen", h.listen);
  if (h.listen.find(':') == std::string::npos) {
    r.fail("listen", fmt::format("expected ADDRESS:PORT, got {}", quote_value(h.listen)));
  }
  h.admin_listen = r.get_string("admin_listen", h.admin_listen);
  if (h.admin_listen.find(':') == std::string::npos) {
    r.fail("admin_listen",
           fmt::format("expected ADDRESS:PORT, got {}", quote_value(h.admin_listen)));
  }
  r.reject_unknown();
}

void read_doctor(ConfigReader r, DoctorSettings& d) {
  d.ip_blocklists = r.get_string_list("ip_blocklists", d.ip_blocklists);
  d.domain_blocklists = r.get_string_list("domain_blocklists", d.domain_blocklists);
  d.dns_server = r.get_string("dns_server", d.dns_server);
  r.reject_unknown();
}

void read_worker(ConfigReader r, WorkerSettings& w) {
  w.lease = r.get_duration("lease", w.lease, kMaxLease);
  w.claim_batch = r.get_int("claim_batch", w.claim_batch, 1, 100000);
  w.max_leased = r.get_int("max_leased", w.max_leased, 1, 10000000);
  w.flush_interval = r.get_duration("flush_interval", w.flush_interval);
  w.flush_batch = r.get_int("flush_batch", w.flush_batch, 1, 100000);
  w.tick = r.get_duration("tick", w.tick, kMaxTick);
  w.past_due_warning = r.get_duration("past_due_warning", w.past_due_warning);
  if (w.lease < std::chrono::seconds(1)) r.fail("lease", "must be at least 1s");
  if (w.max_leased < w.claim_batch) r.fail("max_leased", "must be at least claim_batch");
  if (w.flush_interval <= Duration::zero()) r.fail("flush_interval", "must be positive");
  if (w.flush_interval * 2 > w.lease) r.fail("flush_interval", "must be at most half the lease");
  if (w.tick <= Duration::zero()) r.fail("tick", "must be positive");
  r.reject_unknown();
}

// TOML allows no NUL byte anywhere; refusing it here keeps such text away
// from the parser, which asserts on it in some positions.
void reject_nul_bytes(const std::string& text, const std::string& file) {
  const std::size_t at = text.find('\0');
  if (at == std::string::npos) return;
  const std::size_t line_start = text.rfind('\n', at);
  const std::size_t line = 1 + std::count(text.begin(), text.begin() + at, '\n');
  const std::size_t column = line_start == std::string::npos ? at + 1 : at - line_start;
  throw UsageError(fmt::format("{}:{}:{}: invalid TOML: NUL byte", file, line, column));
}

// Refuses invalid TOML that toml++ 3.3 does not report but asserts away
// (assumptions the optimiser may rely on in release builds): a table header
// ("[" or "[[" where a line starts outside any value) that does not open with
// a key, and non-ASCII characters where the parser tests them for Unicode
// whitespace, a test that reaches an unreachable branch for many (U+00E9
// among them): outside strings and comments (TOML 1.0 allows none there), in
// quoted keys, and after a backslash in multi-line basic strings. A small
// scanner follows strings, comments, arrays, inline tables and headers; string
// values and comments keep any UTF-8.
class TomlPrescan {
 public:
  TomlPrescan(const std::string& text, const std::string& file) : text_(text), file_(file) {}

  void run() {
    for (i_ = 0; i_ < text_.size(); ++i_) {
      const char c = text_[i_];
      if (c == '\n') {
        if (prev_ == '=') fail("expected a value after '='");
        ++line_;
        line_start_ = true;
        continue;
      }
      if (c == ' ' || c == '\t' || c == '\r') continue;
      if (non_ascii(c)) fail("a non-ASCII character outside a string or comment");
      // Where a value must start, the parser asserts it does.
      const bool in_array = !stack_.empty() && stack_.back() == '[';
      if ((prev_ == '=' && (c == ',' || c == ']' || c == '}' || c == '#')) ||
          (in_array && (prev_ == '[' || prev_ == ',') && (c == ',' || c == '}'))) {
        fail("expected a value");
      }
      const bool header = line_start_ && stack_.empty() && c == '[';
      // A quote opens a string only where a key or value starts; inside a
      // bare token the parser reads it as part of the token.
      const bool token_start = line_start_ || prev_ == '=' || prev_ == '[' || prev_ == ',' ||
                               prev_ == '{' || prev_ == '.';
      line_start_ = false;
      if (header) {
        std::size_t j = i_ + 1;
        if (j < text_.size() && text_[j] == '[') ++j;
        while (j < text_.size() && (text_[j] == ' ' || text_[j] == '\t')) ++j;
        if (j >= text_.size() || !is_key_start(text_[j])) {
          fail("a table header must start with a key");
        }
        for (std::size_t k = i_; k < j; ++k) {
          if (text_[k] == '[') stack_.push_back('h');
        }
        i_ = j - 1;
        prev_ = '[';
        continue;
      }
      if (c == '#') {
        while (i_ + 1 < text_.size() && text_[i_ + 1] != '\n') ++i_;
        continue;
      }
      // Brackets and quotes inside a bare token are the token's.
      const bool opens = token_start && (c == '"' || c == '\'' || c == '[' || c == '{');
      if (opens && (c == '"' || c == '\'')) {
        string(c);
      } else if (opens) {
        stack_.push_back(c);
      } else if ((c == ']' || c == '}') && !stack_.empty()) {
        stack_.pop_back();
      }
      prev_ = (c == '[' || c == '{') && !opens ? 'x' : c;
    }
    if (prev_ == '=') fail("expected a value after '='");
  }

 private:
  static bool non_ascii(char c) { return static_cast<unsigned char>(c) >= 0x80; }
  static bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

  static bool is_key_start(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '"' || c == '\'';
  }

  [[noreturn]] void fail(std::string_view what) const {
    throw UsageError(fmt::format("{}:{}: invalid TOML: {}", file_, line_, what));
  }

  // A string starting at i_ with `quote`; leaves i_ on its last character.
  void string(char quote) {
    const bool value =
        prev_ == '=' || (!stack_.empty() && stack_.back() == '[' && (prev_ == '[' || prev_ == ','));
    const bool multi = text_.compare(i_, 3, std::string(3, quote)) == 0;
    const std::string close(multi ? 3 : 1, quote);
    std::size_t j = i_ + close.size();
    while (j < text_.size() && text_.compare(j, close.size(), close) != 0) {
      const char c = text_[j];
      if (!multi && c == '\n') break;
      if (c == '\n') ++line_;
      if (!value && non_ascii(c)) fail("a non-ASCII character in a quoted key");
      if (quote == '"' && c == '\\') {
        ++j;
        if (j >= text_.size()) break;
        if ((multi || !value) && non_ascii(text_[j])) fail("a non-ASCII character after '\\'");
        if (multi && is_blank(text_[j])) {
          // A line-ending backslash and the blank that follows it.
          while (j < text_.size() && is_blank(text_[j])) {
            if (text_[j] == '\n') ++line_;
            ++j;
          }
          if (j < text_.size() && non_ascii(text_[j])) fail("a non-ASCII character after '\\'");
          continue;
        }
      }
      ++j;
    }
    i_ =
        j < text_.size() && text_[j] == '\n' ? j - 1 : std::min(j + close.size(), text_.size()) - 1;
  }

  const std::string& text_;
  const std::string& file_;
  std::size_t i_ = 0;
  std::size_t line_ = 1;
  bool line_start_ = true;
  // Last character outside strings and comments that is not blank.
  char prev_ = '\n';
  // Open brackets: '[' array, '{' inline table, 'h' table header.
  std::vector<char> stack_;
};

}  // namespace

void read_bounces(ConfigReader r, BouncesSettings& b) {
  b.imap_url = r.get_string("imap_url", b.imap_url);
  if (!b.imap_url.empty() && b.imap_url.rfind("imaps://", 0) != 0 &&
      b.imap_url.rfind("imap://", 0) != 0) {
    // Only the scheme: the rest may hold a password.
    const std::size_t colon = b.imap_url.find(':');
    r.fail("imap_url", fmt::format("expected an imaps:// or imap:// URL, got one starting {}",
                                   quote_value(b.imap_url.substr(0, colon))));
  }
  b.imap_password_file = r.get_string("imap_password_file", b.imap_password_file);
  b.imap_ca_file = r.get_string("imap_ca_file", b.imap_ca_file);
  b.imap_not_report_folder = r.get_string("imap_not_report_folder", b.imap_not_report_folder);
  for (const char c : b.imap_not_report_folder) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '"' || c == '\\' ||
        static_cast<unsigned char>(c) >= 0x80) {
      r.fail("imap_not_report_folder",
             fmt::format("expected a folder name of printable ASCII without '\"' or '\\', got {}",
                         quote_value(b.imap_not_report_folder)));
    }
  }
  b.poll_every = r.get_duration("poll_every", b.poll_every);
  if (b.poll_every < std::chrono::seconds(1)) r.fail("poll_every", "must be at least 1s");
  b.soft_limit = r.get_int("soft_limit", b.soft_limit, 1, 1000);
  b.soft_window = r.get_duration("soft_window", b.soft_window);
  if (b.soft_window < std::chrono::minutes(1)) r.fail("soft_window", "must be at least 1m");
  b.max_message_bytes = r.get_int("max_message_bytes", b.max_message_bytes, 4096, 1 << 30);
  r.reject_unknown();
}

void read_inbound(ConfigReader r, InboundSettings& in) {
  in.listen = r.get_string("listen", in.listen);
  if (in.listen.find(':') == std::string::npos) {
    r.fail("listen", fmt::format("expected ADDRESS:PORT, got {}", quote_value(in.listen)));
  }
  in.domains = r.get_string_list("domains", in.domains);
  for (std::string& d : in.domains) {
    if (d.empty() || d.find_first_of(" @<>\r\n\t") != std::string::npos) {
      r.fail("domains", fmt::format("expected domain names, got {}", quote_value(d)));
    }
  }
  in.max_message_size = r.get_int("max_message_size", in.max_message_size, 4096, 1 << 30);
  in.tls_cert_file = r.get_string("tls_cert_file", in.tls_cert_file);
  in.tls_key_file = r.get_string("tls_key_file", in.tls_key_file);
  if (in.tls_cert_file.empty() != in.tls_key_file.empty()) {
    r.fail(in.tls_cert_file.empty() ? "tls_cert_file" : "tls_key_file",
           "tls_cert_file and tls_key_file go together: set both or neither");
  }
  in.hostname = r.get_string("hostname", in.hostname);
  if (in.hostname.find_first_of(" @<>\r\n\t") != std::string::npos) {
    r.fail("hostname", fmt::format("expected a host name, got {}", quote_value(in.hostname)));
  }
  in.max_connections = r.get_int("max_connections", in.max_connections, 1, 100000);
  in.command_timeout = r.get_duration("command_timeout", in.command_timeout, std::chrono::hours(1));
  if (in.command_timeout < std::chrono::seconds(1))
    r.fail("command_timeout", "must be at least 1s");
  in.data_timeout = r.get_duration("data_timeout", in.data_timeout, std::chrono::hours(1));
  if (in.data_timeout < std::chrono::seconds(1)) r.fail("data_timeout", "must be at least 1s");
  in.drain_timeout = r.get_duration("drain_timeout", in.drain_timeout, std::chrono::hours(1));
  r.reject_unknown();
}

double read_rate(ConfigReader& r, std::string_view key, double fallback) {
  const double v = r.get_number(key, fallback);
  if (!(v >= 0.0 && v <= 1.0)) {
    r.fail(key, fmt::format("must be a fraction between 0 and 1, got {}", v));
  }
  return v;
}

void read_guard(ConfigReader r, GuardSettings& g) {
  g.min_sent = r.get_int("min_sent", g.min_sent, 1, 1000000000);
  g.max_complaint_rate = read_rate(r, "max_complaint_rate", g.max_complaint_rate);
  g.max_bounce_rate = read_rate(r, "max_bounce_rate", g.max_bounce_rate);
  r.reject_unknown();
}

Config parse_config(const std::string& text, const std::string& file) {
  reject_nul_bytes(text, file);
  TomlPrescan(text, file).run();
  toml::table root;
  try {
    root = toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    throw UsageError(fmt::format("{}:{}:{}: invalid TOML: {}", file, e.source().begin.line,
                                 e.source().begin.column, elide_text(e.description())));
  }
  Config c;
  c.source = file;
  ConfigReader r(&root, file, "");
  read_database(r.table("database"), c.database);
  read_sender(r.table("sender"), c.sender);
  read_routes(r.table("routes"), c.routes);
  c.throttle = read_throttle_settings(r);
  for (ConfigReader& d : r.tables("dkim")) c.dkim.push_back(read_dkim(d));
  read_unsubscribe(r.table("unsubscribe"), c.unsubscribe);
  read_import(r.table("import"), c.imports);
  read_http(r.table("http"), c.http);
  read_worker(r.table("worker"), c.worker);
  read_doctor(r.table("doctor"), c.doctor);
  read_bounces(r.table("bounces"), c.bounces);
  read_inbound(r.table("inbound"), c.inbound);
  read_guard(r.table("guard"), c.guard);
  r.reject_unknown();
  return c;
}

Config load_config(const std::string& explicit_path) {
  std::string path = explicit_path;
  if (path.empty()) {
    if (const char* env = std::getenv("MAILER_CONFIG"); env != nullptr && *env != '\0') {
      path = env;
    } else if (std::filesystem::exists("mailer.toml")) {
      path = "mailer.toml";
    }
  }
  Config c;
  if (path.empty()) {
    c = parse_config("", "(built-in defaults)");
  } else {
    std::string text;
    try {
      text = read_bounded_file(path, kMaxConfigFileBytes);
    } catch (const FileReadError& e) {
      throw UsageError(fmt::format("{}: cannot read configuration file: {}", path, e.reason()));
    }
    c = parse_config(text, path);
  }
  if (const char* url = std::getenv("MAILER_DATABASE_URL"); url != nullptr && *url != '\0') {
    if (auto error = db::conninfo_syntax_error(url)) {
      throw UsageError("$MAILER_DATABASE_URL: invalid database URL: " + elide_text(*error));
    }
    c.database.url = url;
  }
  return c;
}

}  // namespace mailer::app
