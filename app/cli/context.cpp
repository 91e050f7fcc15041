#include "app/cli/context.h"

#include <cstdio>
#include <fstream>
#include <iostream>

#include "app/base/errors.h"

namespace mailer::app {

const Config& Context::config() {
  if (!config_) config_ = std::make_unique<Config>(load_config(global.config_path));
  return *config_;
}

std::string local_cluster_url() {
  std::ifstream in(".mailer/pg/url");
  std::string url;
  if (in) std::getline(in, url);
  return url;
}

db::DatabaseOptions Context::database_options() {
  const Config& c = config();
  db::DatabaseOptions o;
  o.url = c.database.url.empty() ? local_cluster_url() : c.database.url;
  if (o.url.empty()) {
    throw UsageError(
        "no database configured: set [database] url in the configuration or MAILER_DATABASE_URL "
        "(deploy/pg-local.sh start runs a private cluster and prints its URL)");
  }
  o.reconnect_min = c.database.reconnect_min;
  o.reconnect_max = c.database.reconnect_max;
  o.reconnect_for = c.database.reconnect_for;
  return o;
}

db::Database& Context::database() {
  if (!db_) db_ = std::make_unique<db::Database>(database_options());
  return *db_;
}

void print_json(const nlohmann::json& value) {
  std::cout << value.dump() << '\n' << std::flush;
}

}  // namespace mailer::app
