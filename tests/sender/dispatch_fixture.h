// The set-up shared by the end-to-end suites of `mailer run` against real
// peers on loopback (Postfix's smtp-sink, our rehearsal sink): a private
// database, a temporary folder with the unsubscribe secret, a configuration
// routing providers to the peers, the real worker binary (in the foreground
// with --until-idle or in the background), and queries on the outcome.
#pragma once

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "tests/app/queue_seed.h"
#include "tests/app/queue_worker_process.h"
#include "tests/support/pg_fixture.h"
#include "tests/support/process.h"

namespace mailer::testing {

// Unsubscribe tokens and VERP addresses are signed with this.
inline constexpr const char* kDispatchSecret = "0123456789abcdef0123456789abcdef";

// Every provider family a campaign from seed_list() reaches.
inline const std::vector<std::string> kDispatchProviders = {"gmail", "outlook", "yahoo", "other"};

class DispatchFixture : public ::testing::Test {
 protected:
  explicit DispatchFixture(const std::string& tag) : t_(tag), dir_(make_temp_dir(tag)) {
    write_file(dir_ + "/secret", kDispatchSecret);
  }
  ~DispatchFixture() override {
    worker_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Writes mailer.toml: quick worker ticks, one-second history
  // samples, the unsubscribe settings, `routes`, then `extra` verbatim.
  void configure(const std::map<std::string, std::string>& routes, const std::string& extra) {
    std::string toml =
        "[worker]\ntick = \"100ms\"\nlease = \"30s\"\nflush_interval = \"50ms\"\n"
        "claim_batch = 200\nmax_leased = 2000\n"
        "[sender]\nhelo_name = \"test.example.com\"\nhistory_interval = \"1s\"\n"
        "[unsubscribe]\nbase_url = \"https://mail.example.com\"\nsecret_file = \"" +
        dir_ + "/secret\"\n[routes]\n";
    for (const auto& [provider, route] : routes) toml += provider + " = \"" + route + "\"\n";
    write_file(dir_ + "/mailer.toml", toml + extra);
  }

  // Every provider to one route.
  void configure_all(const std::string& route, const std::string& extra) {
    std::map<std::string, std::string> routes;
    for (const auto& p : kDispatchProviders) routes[p] = route;
    configure(routes, extra);
  }

  ProcessResult mailer(std::vector<std::string> args,
                       std::chrono::seconds limit = std::chrono::seconds(60)) {
    args.insert(args.begin(), {"--config", dir_ + "/mailer.toml"});
    return run_mailer(args, {{"MAILER_DATABASE_URL", t_.url()}}, "", limit);
  }

  // Starts campaign `id` (freezes its audience).
  void start(std::int64_t id) {
    auto r = mailer({"campaign", "start", std::to_string(id)});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  }

  // A seed_list() campaign of `recipients`, started.
  std::int64_t start_campaign(int recipients, const std::string& list = "news") {
    const auto id = seed_campaign(t_.url(), seed_list(t_.url(), list, recipients));
    start(id);
    return id;
  }

  // `mailer run` in the background (no --until-idle): for peers that only
  // defer, where an idle run would wait for the retry.
  void start_worker() {
    worker_ = std::make_unique<WorkerProcess>(
        std::vector<std::string>{"--config", dir_ + "/mailer.toml", "run", "--worker-id", "w1"},
        std::map<std::string, std::string>{{"MAILER_DATABASE_URL", t_.url()}}, dir_ + "/out",
        dir_ + "/err");
  }

  // SIGTERM to the background worker; its exit code (-1 past `limit`).
  int stop_worker(std::chrono::seconds limit = std::chrono::seconds(20)) {
    worker_->signal(SIGTERM);
    return worker_->wait(limit);
  }

  std::string worker_log() const { return worker_ ? worker_->err() : std::string(); }

  // Polls `done` every 50 ms until it holds or `limit` passes.
  static bool wait_for(const std::function<bool()>& done, std::chrono::milliseconds limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() > until) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return true;
  }

  std::int64_t count(const std::string& where) {
    return query_int(t_.url(), "SELECT count(*) FROM deliveries WHERE " + where);
  }

  std::int64_t scalar(const std::string& sql) { return query_int(t_.url(), sql); }

  // Up to 10 deliveries not sent, with their last reply, for failure messages.
  std::string unsent() {
    pqxx::connection c(t_.url());
    pqxx::work w(c);
    std::string out;
    for (const auto& row :
         w.exec("SELECT id, provider, state, attempts, coalesce(last_reply, '') FROM deliveries"
                " WHERE state <> 'sent' ORDER BY id LIMIT 10")) {
      out += fmt::format("\n  {} {} {} attempts {} {}", row[0].as<std::int64_t>(),
                         row[1].as<std::string>(), row[2].as<std::string>(), row[3].as<int>(),
                         row[4].as<std::string>());
    }
    return out;
  }

  TestDatabase t_;
  std::string dir_;
  std::unique_ptr<WorkerProcess> worker_;
};

}  // namespace mailer::testing
