// Reliability of the queue with real worker processes on the real server:
// two workers never send a recipient twice nor miss one; kill -9 at a random
// moment while the worker has work in flight repeats only deliveries it still
// leased; a PostgreSQL restart mid-run
// is one log line, a reconnection, and nothing lost.
// MAILER_TEST_LONG=1 runs 20 kill trials instead of 3.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <set>

#include "app/db/database.h"
#include "app/db/migrator.h"
#include "tests/app/kill_moment.h"
#include "tests/app/queue_seed.h"
#include "tests/app/queue_worker_process.h"
#include "tests/app/throwaway_cluster.h"
#include "tests/support/pg_fixture.h"
#include "tests/support/process.h"

namespace mailer::app {
namespace {

using mailer::testing::exec_sql;
using mailer::testing::query_int;
using mailer::testing::recorded_sends;
using mailer::testing::run_mailer;
using mailer::testing::seed_campaign;
using mailer::testing::seed_list;
using mailer::testing::WorkerProcess;

// max_leased of the test configuration: the most one worker can hold, so the
// most a kill -9 can make it send twice.
constexpr int kMaxLeased = 200;

std::string write_config(const std::string& dir, const std::string& lease = "2s") {
  const std::string path = dir + "/mailer.toml";
  mailer::testing::write_file(
      path, fmt::format("[worker]\ntick = \"100ms\"\nlease = \"{}\"\nflush_interval = \"50ms\"\n"
                        "claim_batch = 50\nmax_leased = {}\n[database]\nreconnect_max = \"1s\"\n",
                        lease, kMaxLeased));
  return path;
}

// A running campaign with `n` recipients; the audience is frozen by the worker.
std::int64_t scheduled_now(const std::string& url, const std::string& list_name, int n) {
  const auto list = seed_list(url, list_name, n);
  const auto id = seed_campaign(url, list, "scheduled");
  exec_sql(url, fmt::format("UPDATE campaigns SET scheduled_at = now() WHERE id = {}", id));
  return id;
}

TEST(QueueReliability, TwoWorkersSendEveryRecipientExactlyOnce) {
  mailer::testing::TestDatabase t("two_workers");
  const std::string dir = mailer::testing::make_temp_dir("two-workers");
  const std::string config = write_config(dir);
  const auto id = scheduled_now(t.url(), "news", 4000);
  const std::map<std::string, std::string> env = {{"MAILER_DATABASE_URL", t.url()}};
  WorkerProcess a({"--config", config, "run", "--worker-id", "a", "--until-idle", "--transport",
                   "record:" + dir + "/a.log,delay=2ms"},
                  env, dir + "/a.out", dir + "/a.err");
  WorkerProcess b({"--config", config, "run", "--worker-id", "b", "--until-idle", "--transport",
                   "record:" + dir + "/b.log,delay=2ms"},
                  env, dir + "/b.out", dir + "/b.err");
  ASSERT_EQ(a.wait(std::chrono::seconds(60)), 0) << a.err();
  ASSERT_EQ(b.wait(std::chrono::seconds(60)), 0) << b.err();
  const auto only_a = recorded_sends({dir + "/a.log"});
  const auto only_b = recorded_sends({dir + "/b.log"});
  const auto both = recorded_sends({dir + "/a.log", dir + "/b.log"});
  EXPECT_EQ(both.size(), 4000u);
  int twice = 0;
  for (const auto& [delivery, n] : both) twice += n > 1;
  EXPECT_EQ(twice, 0);
  EXPECT_GT(only_a.size(), 0u);
  EXPECT_GT(only_b.size(), 0u);
  std::cout << "[ two workers ] a sent " << only_a.size() << ", b sent " << only_b.size()
            << ", repeated " << twice << "\n";
  EXPECT_EQ(query_int(t.url(), fmt::format("SELECT count(*) FROM deliveries WHERE campaign_id = "
                                           "{} AND state = 'sent' AND attempts = 1",
                                           id)),
            4000);
  EXPECT_EQ(query_int(t.url(), fmt::format("SELECT count(*) FROM campaigns WHERE id = {} AND "
                                           "status = 'finished'",
                                           id)),
            1);
}

// Lines in a record file: the sends recorded so far.
std::size_t recorded_lines(const std::string& file) {
  std::ifstream in(file);
  return static_cast<std::size_t>(
      std::count(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>(), '\n'));
}

TEST(QueueReliability, KillNineWithWorkInFlightRepeatsAtMostTheDeadWorkersLeases) {
  const char* long_mode = std::getenv("MAILER_TEST_LONG");
  const int trials = long_mode && std::string(long_mode) == "1" ? 20 : 3;
  mailer::testing::TestDatabase t("kill9");
  const std::string dir = mailer::testing::make_temp_dir("kill9");
  const std::string config = write_config(dir);
  const std::map<std::string, std::string> env = {{"MAILER_DATABASE_URL", t.url()}};
  const unsigned seed = std::random_device{}();
  std::cout << "[ kill -9 ] seed " << seed << "\n";
  std::mt19937 rng(seed);
  const int n = 2000;
  // The kill comes once the victim has recorded this many sends and holds
  // leases: a random moment, but always one with work in flight.
  std::uniform_int_distribution<int> sent_before_kill(1, n / 4);
  int total_repeated = 0;
  for (int trial = 0; trial < trials; ++trial) {
    const auto id = scheduled_now(t.url(), "list" + std::to_string(trial), n);
    const std::string record = fmt::format("{}/trial{}.log", dir, trial);
    const std::string worker = fmt::format("k{}", trial);
    const auto threshold = static_cast<std::size_t>(sent_before_kill(rng));
    mailer::testing::KillMoment moment;
    std::set<long long> in_flight;
    {
      WorkerProcess victim({"--config", config, "run", "--worker-id", worker, "--campaign",
                            std::to_string(id), "--transport", "record:" + record + ",delay=5ms"},
                           env, dir + "/victim.out", dir + "/victim.err");
      moment = mailer::testing::kill_with_work_in_flight(
          t.url(), victim, worker, threshold, [&] { return recorded_lines(record); },
          std::chrono::seconds(30));
      if (!moment.caught) victim.signal(SIGKILL);
      victim.wait(std::chrono::seconds(10));
      ASSERT_TRUE(moment.caught) << "trial " << trial << ": the victim never had " << threshold
                                 << " sends recorded with leases held (it had " << moment.sent
                                 << ")\n"
                                 << victim.err();
    }
    in_flight = mailer::testing::ids_leased_by(t.url(), worker);
    std::cout << "[ kill -9 ] trial " << trial << ": killed " << moment.after_ms
              << " ms after the start, at " << moment.sent << " recorded sends (threshold "
              << threshold << "), " << in_flight.size()
              << " rows still leased by the dead worker\n";
    // The victim died holding leases: the restart has work to take over.
    ASSERT_GT(in_flight.size(), 0u) << "trial " << trial;
    // Odd trials restart under another name: the dead worker's leases must
    // expire; even trials restart under the same name: it takes them back.
    const std::string restarted = trial % 2 ? worker + "-new" : worker;
    auto r = run_mailer({"--config", config, "run", "--worker-id", restarted, "--until-idle",
                         "--campaign", std::to_string(id), "--transport", "record:" + record},
                        env, "", std::chrono::seconds(60));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto sends = recorded_sends({record});
    int repeated = 0;
    for (const auto& [delivery, count] : sends) {
      repeated += count - 1;
      // Only a delivery the dead worker still leased can have gone out twice.
      if (count > 1) {
        EXPECT_TRUE(in_flight.count(delivery)) << "trial " << trial << " " << delivery;
      }
    }
    ASSERT_EQ(sends.size(), static_cast<std::size_t>(n)) << "trial " << trial << " missed some";
    EXPECT_LE(repeated, static_cast<int>(in_flight.size())) << "trial " << trial;
    EXPECT_LE(repeated, kMaxLeased) << "trial " << trial;
    EXPECT_EQ(query_int(t.url(), fmt::format("SELECT count(*) FROM deliveries WHERE campaign_id = "
                                             "{} AND state = 'sent'",
                                             id)),
              n);
    total_repeated += repeated;
    std::cout << "[ kill -9 ] trial " << trial << ": " << sends.size() << " recipients, "
              << repeated << " repeated (in flight at the kill), restart as "
              << (trial % 2 ? "a new worker" : "the same worker") << "\n";
  }
  std::cout << "[ kill -9 ] seed " << seed << ", " << trials << " trials, " << total_repeated
            << " repeated sends in total\n";
}

TEST(QueueReliability, ServerRestartMidRunIsOneLogLineAndLosesNothing) {
  mailer::testing::ThrowawayCluster pg;
  {
    db::Database db(db::DatabaseOptions{pg.url()});
    db::Migrator(db).apply();
  }
  const std::string dir = mailer::testing::make_temp_dir("pg-restart-worker");
  const std::string config = write_config(dir);
  const int n = 5000;
  const auto id = scheduled_now(pg.url(), "news", n);
  const std::string record = dir + "/sent.log";
  // Sends slow enough (about 7 s in all) that the run spans the outage: the
  // server stops once sending is under way and starts again once the worker
  // has noticed (its reconnect line).
  WorkerProcess w({"--config", config, "run", "--worker-id", "survivor", "--until-idle",
                   "--transport", "record:" + record + ",delay=50ms"},
                  {{"MAILER_DATABASE_URL", pg.url()}}, dir + "/w.out", dir + "/w.err");
  auto wait_until = [](const std::function<bool()>& done, std::chrono::seconds limit) {
    const auto give_up = std::chrono::steady_clock::now() + limit;
    while (!done() && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return done();
  };
  ASSERT_TRUE(
      wait_until([&] { return recorded_sends({record}).size() >= 50; }, std::chrono::seconds(60)))
      << w.err();
  ASSERT_LT(recorded_sends({record}).size(), static_cast<std::size_t>(n));
  ASSERT_EQ(pg.control("stop").exit_code, 0);
  const bool noticed =
      wait_until([&] { return w.err().find("reconnecting with backoff") != std::string::npos; },
                 std::chrono::seconds(30));
  ASSERT_EQ(pg.control("start").exit_code, 0);
  ASSERT_TRUE(noticed) << "the worker never noticed the outage: " << w.err();
  EXPECT_LT(recorded_sends({record}).size(), static_cast<std::size_t>(n))
      << "the run ended before the server came back";
  ASSERT_EQ(w.wait(std::chrono::seconds(90)), 0) << w.err();
  const std::string err = w.err();
  std::size_t lines = 0;
  for (std::size_t at = 0; (at = err.find("reconnecting with backoff", at)) != std::string::npos;
       ++at) {
    ++lines;
  }
  EXPECT_EQ(lines, 1u) << err;
  EXPECT_NE(err.find("database connection restored"), std::string::npos) << err;
  const auto sends = recorded_sends({record});
  EXPECT_EQ(sends.size(), static_cast<std::size_t>(n));
  int repeated = 0;
  for (const auto& [delivery, count] : sends) repeated += count - 1;
  EXPECT_EQ(repeated, 0);
  std::cout << "[ pg restart ] " << sends.size() << " recipients sent, " << repeated
            << " repeated\n";
  EXPECT_EQ(query_int(pg.url(), fmt::format("SELECT count(*) FROM deliveries WHERE campaign_id = "
                                            "{} AND state = 'sent'",
                                            id)),
            n);
}

}  // namespace
}  // namespace mailer::app
