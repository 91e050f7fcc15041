// mailer's configuration: the TOML file of the CLI contract, its lookup order
// (--config, $MAILER_CONFIG, ./mailer.toml, built-in defaults), environment
// overrides, and the documented default of every key.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "app/config_throttle.h"
#include "app/duration.h"

namespace mailer::app {

// [database]
struct DatabaseSettings {
  // libpq URL or key=value string. Empty: the private cluster of
  // deploy/pg-local.sh, when it runs. $MAILER_DATABASE_URL overrides.
  std::string url;
  // First and longest wait between reconnection attempts when the server is gone.
  Duration reconnect_min = std::chrono::milliseconds(200);
  Duration reconnect_max = std::chrono::seconds(10);
};

// [sender]
struct SenderSettings {
  // Name this worker announces in EHLO.
  std::string helo_name = "localhost";
  // Name of this worker's sending IP or pool; part of the throttle key.
  std::string egress = "default";
  // "mx" delivers to the recipient domain's MX; or "smtp://host:port".
  std::string default_route = "mx";
};

// [[dkim]] (one table or several)
struct DkimSettings {
  std::string domain;
  std::string selector;
  // "rsa-sha256" or "ed25519-sha256".
  std::string algorithm = "rsa-sha256";
  std::string key_file;
};

// [unsubscribe]
struct UnsubscribeSettings {
  // Prefix of the https one-click URL in List-Unsubscribe.
  std::string base_url;
  // Optional mailto: address offered beside the URL.
  std::string mailto;
  // File holding the HMAC secret for unsubscribe tokens and VERP tags.
  std::string secret_file;
};

// [http]
struct HttpSettings {
  // Address `mailer serve` listens on.
  std::string listen = "127.0.0.1:8080";
};

struct Config {
  // Where the configuration came from: a path, or "(built-in defaults)".
  std::string source = "(built-in defaults)";
  DatabaseSettings database;
  SenderSettings sender;
  // [routes]: provider name (gmail, outlook, yahoo, other) -> "mx" or URL.
  std::map<std::string, std::string> routes;
  ThrottleSettings throttle;
  std::vector<DkimSettings> dkim;
  UnsubscribeSettings unsubscribe;
  HttpSettings http;
};

// Parses TOML text; `file` names it in errors. Throws UsageError naming the
// file, line, key and what was expected; unknown keys are errors.
Config parse_config(const std::string& text, const std::string& file);

// Finds and loads the configuration: `explicit_path` (from --config) if not
// empty, else $MAILER_CONFIG, else ./mailer.toml if present, else defaults.
// Applies environment overrides ($MAILER_DATABASE_URL). A named file that
// cannot be read is a UsageError.
Config load_config(const std::string& explicit_path);

}  // namespace mailer::app
