// What every command gets: the global options, and the configuration and
// database, loaded on first use so that `--help` and usage errors never need
// either.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "app/config/config.h"
#include "app/db/database.h"

namespace mailer::app {

struct GlobalOptions {
  std::string config_path;
  std::string log_level = "info";
  std::string log_format = "text";
};

class Context {
 public:
  GlobalOptions global;

  // Loads the configuration once (UsageError on bad configuration).
  const Config& config();
  // Connects on first use. A missing database URL is a UsageError; an
  // unreachable server surfaces as db::ConnectionError from the first query.
  db::Database& database();
  // Database options derived from the configuration, for code that opens
  // its own connections (one per thread).
  db::DatabaseOptions database_options();

 private:
  std::unique_ptr<Config> config_;
  std::unique_ptr<db::Database> db_;
};

// Prints one JSON object on stdout, followed by a newline.
void print_json(const nlohmann::json& value);

// The private cluster's URL written by `deploy/pg-local.sh start` under
// ./.mailer/pg/url, or "" when there is none.
std::string local_cluster_url();

}  // namespace mailer::app
