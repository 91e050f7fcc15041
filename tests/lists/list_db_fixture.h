// Shared setup of the lists integration tests: a fresh migrated database, a
// temporary directory with a configuration file, and shorthands to run
// `mailer` against them and to query the tables directly.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/pg_fixture.h"
#include "tests/support/process.h"

namespace mailer::lists {

class ListDbTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = std::make_unique<testing::TestDatabase>("lists");
    dir_ = testing::make_temp_dir("lists");
    write_config("");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Replaces mailer.toml in the temp dir with `text`.
  void write_config(const std::string& text) { testing::write_file(dir_ + "/mailer.toml", text); }

  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  // The whole text of a file (empty when it cannot be read).
  static std::string file_text(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }

  std::string write(const std::string& name, const std::string& content) {
    testing::write_file(path(name), content);
    return path(name);
  }

  testing::ProcessResult mailer(std::vector<std::string> args) {
    args.insert(args.begin(), {"--config", dir_ + "/mailer.toml"});
    return testing::run_mailer(args, {{"MAILER_DATABASE_URL", db_->url()}, {"MAILER_CONFIG", ""}});
  }

  // Runs a mailer command with --json that must succeed; returns its JSON.
  nlohmann::json mailer_json(std::vector<std::string> args) {
    args.push_back("--json");
    auto r = mailer(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    try {
      return nlohmann::json::parse(r.out);
    } catch (const std::exception&) {
      ADD_FAILURE() << "not JSON: " << r.out << "\nstderr: " << r.err;
      return nullptr;
    }
  }

  pqxx::result query(const std::string& sql) {
    pqxx::connection c(db_->url());
    pqxx::work w(c);
    return w.exec(sql);
  }

  long long count(const std::string& sql) { return query(sql)[0][0].as<long long>(); }

  long long members(const std::string& list) {
    return count(
        "SELECT count(*) FROM list_members m JOIN lists l ON l.id = m.list_id "
        "WHERE l.name = '" +
        list + "'");
  }

  std::unique_ptr<testing::TestDatabase> db_;
  std::string dir_;
};

}  // namespace mailer::lists
