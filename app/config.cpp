#include "app/config.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "app/config_reader.h"
#include "app/errors.h"

namespace mailer::app {
namespace {

constexpr const char* kRouteNames[] = {"gmail", "outlook", "yahoo", "other"};

void check_route(ConfigReader& r, const std::string& key, const std::string& value) {
  if (value == "mx" || value.rfind("smtp://", 0) == 0 || value.rfind("smtps://", 0) == 0) return;
  r.fail(key,
         fmt::format("expected \"mx\", \"smtp://host:port\" or \"smtps://host:port\", got \"{}\"",
                     value));
}

void read_database(ConfigReader r, DatabaseSettings& d) {
  d.url = r.get_string("url", d.url);
  d.reconnect_min = r.get_duration("reconnect_min", d.reconnect_min);
  d.reconnect_max = r.get_duration("reconnect_max", d.reconnect_max);
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
      r.fail("source_address",
             fmt::format("expected an IPv4 or IPv6 address, got \"{}\"", s.source_address));
    }
  }
  s.starttls = r.get_choice("starttls", s.starttls, {"opportunistic", "required", "none"});
  s.verify_certificates = r.get_bool("verify_certificates", s.verify_certificates);
  s.auth_user = r.get_string("auth_user", s.auth_user);
  s.auth_password_file = r.get_string("auth_password_file", s.auth_password_file);
  if (s.auth_user.find_first_of("\r\n") != std::string::npos) {
    r.fail("auth_user", "must not contain line breaks");
  }
  s.verp_domain = r.get_string("verp_domain", s.verp_domain);
  if (s.verp_domain.find_first_of(" @<>\r\n") != std::string::npos) {
    r.fail("verp_domain", fmt::format("expected a domain name, got \"{}\"", s.verp_domain));
  }
  s.feedback_id = r.get_string("feedback_id", s.feedback_id);
  if (s.feedback_id.empty()) r.fail("feedback_id", "must not be empty");
  s.message_id_domain = r.get_string("message_id_domain", s.message_id_domain);
  if (s.message_id_domain.find_first_of(" @<>\r\n") != std::string::npos) {
    r.fail("message_id_domain",
           fmt::format("expected a domain name, got \"{}\"", s.message_id_domain));
  }
  s.connect_timeout = r.get_duration("connect_timeout", s.connect_timeout);
  s.reply_timeout = r.get_duration("reply_timeout", s.reply_timeout);
  s.transaction_timeout = r.get_duration("transaction_timeout", s.transaction_timeout);
  for (auto [key, value] : {std::pair{"connect_timeout", s.connect_timeout},
                            std::pair{"reply_timeout", s.reply_timeout},
                            std::pair{"transaction_timeout", s.transaction_timeout}}) {
    if (value < std::chrono::seconds(1)) r.fail(key, "must be at least 1s");
  }
  const long long lanes = r.get_integer("lanes", s.lanes);
  if (lanes < 1 || lanes > 256)
    r.fail("lanes", fmt::format("must be between 1 and 256, got {}", lanes));
  s.lanes = static_cast<int>(lanes);
  s.dns_server = r.get_string("dns_server", s.dns_server);
  if (!s.dns_server.empty() && s.dns_server.find_first_of(" ,") != std::string::npos) {
    r.fail("dns_server", fmt::format("expected one HOST:PORT, got \"{}\"", s.dns_server));
  }
  const long long mx_port = r.get_integer("mx_port", s.mx_port);
  if (mx_port < 1 || mx_port > 65535)
    r.fail("mx_port", fmt::format("must be a port number, got {}", mx_port));
  s.mx_port = static_cast<int>(mx_port);
  s.lookahead = r.get_duration("lookahead", s.lookahead);
  if (s.lookahead < std::chrono::milliseconds(100)) r.fail("lookahead", "must be at least 100ms");
  s.history_interval = r.get_duration("history_interval", s.history_interval);
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
    r.fail("base_url", fmt::format("expected an http(s):// URL, got \"{}\"", u.base_url));
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
  const long long concurrency = r.get_integer("mx_concurrency", s.mx_concurrency);
  if (concurrency < 1 || concurrency > 10000) {
    r.fail("mx_concurrency", fmt::format("must be between 1 and 10000, got {}", concurrency));
  }
  s.mx_concurrency = static_cast<int>(concurrency);
  s.mx_timeout = r.get_duration("mx_timeout", s.mx_timeout);
  if (s.mx_timeout <= Duration::zero()) r.fail("mx_timeout", "must be positive");
  s.mx_cache_ttl_min = r.get_duration("mx_cache_ttl_min", s.mx_cache_ttl_min);
  const long long chunk = r.get_integer("chunk_rows", s.chunk_rows);
  if (chunk < 1 || chunk > 1000000) {
    r.fail("chunk_rows", fmt::format("must be between 1 and 1000000, got {}", chunk));
  }
  s.chunk_rows = static_cast<int>(chunk);
  const long long field = r.get_integer("max_field_bytes", s.max_field_bytes);
  if (field < 256 || field > 1048576) {
    r.fail("max_field_bytes", fmt::format("must be between 256 and 1048576, got {}", field));
  }
  s.max_field_bytes = static_cast<int>(field);
  if (!s.dns_server.empty() && s.dns_server.find_first_of(" ,") != std::string::npos) {
    r.fail("dns_server", fmt::format("expected one HOST:PORT, got \"{}\"", s.dns_server));
  }
  r.reject_unknown();
}

void read_http(ConfigReader r, HttpSettings& h) {
  h.listen = r.get_string("listen", h.listen);
  if (h.listen.find(':') == std::string::npos) {
    r.fail("listen", fmt::format("expected ADDRESS:PORT, got \"{}\"", h.listen));
  }
  h.admin_listen = r.get_string("admin_listen", h.admin_listen);
  if (h.admin_listen.find(':') == std::string::npos) {
    r.fail("admin_listen", fmt::format("expected ADDRESS:PORT, got \"{}\"", h.admin_listen));
  }
  r.reject_unknown();
}

void read_doctor(ConfigReader r, DoctorSettings& d) {
  d.ip_blocklists = r.get_string_list("ip_blocklists", d.ip_blocklists);
  d.domain_blocklists = r.get_string_list("domain_blocklists", d.domain_blocklists);
  d.dns_server = r.get_string("dns_server", d.dns_server);
  r.reject_unknown();
}

// An integer key of [worker] within [lo, hi].
int worker_integer(ConfigReader& r, std::string_view key, int fallback, long long lo,
                   long long hi) {
  const long long v = r.get_integer(key, fallback);
  if (v < lo || v > hi) r.fail(key, fmt::format("must be between {} and {}, got {}", lo, hi, v));
  return static_cast<int>(v);
}

void read_worker(ConfigReader r, WorkerSettings& w) {
  w.lease = r.get_duration("lease", w.lease);
  w.claim_batch = worker_integer(r, "claim_batch", w.claim_batch, 1, 100000);
  w.max_leased = worker_integer(r, "max_leased", w.max_leased, 1, 10000000);
  w.flush_interval = r.get_duration("flush_interval", w.flush_interval);
  w.flush_batch = worker_integer(r, "flush_batch", w.flush_batch, 1, 100000);
  w.tick = r.get_duration("tick", w.tick);
  w.past_due_warning = r.get_duration("past_due_warning", w.past_due_warning);
  if (w.lease < std::chrono::seconds(1)) r.fail("lease", "must be at least 1s");
  if (w.max_leased < w.claim_batch) r.fail("max_leased", "must be at least claim_batch");
  if (w.flush_interval <= Duration::zero()) r.fail("flush_interval", "must be positive");
  if (w.flush_interval * 2 > w.lease) r.fail("flush_interval", "must be at most half the lease");
  if (w.tick <= Duration::zero()) r.fail("tick", "must be positive");
  r.reject_unknown();
}

}  // namespace

Config parse_config(const std::string& text, const std::string& file) {
  toml::table root;
  try {
    root = toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    throw UsageError(fmt::format("{}:{}:{}: invalid TOML: {}", file, e.source().begin.line,
                                 e.source().begin.column, e.description()));
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
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      throw UsageError(
          fmt::format("{}: cannot read configuration file: {}", path, std::strerror(errno)));
    }
    std::ostringstream text;
    text << in.rdbuf();
    c = parse_config(text.str(), path);
  }
  if (const char* url = std::getenv("MAILER_DATABASE_URL"); url != nullptr && *url != '\0') {
    c.database.url = url;
  }
  return c;
}

}  // namespace mailer::app
