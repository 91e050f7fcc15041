// Exactly-once over real SMTP: the reliability scenarios of
// queue_reliability_test.cpp (two workers, kill -9, a PostgreSQL restart)
// with the worker sending through its SMTP client to `mailer sink --maildir`
// processes on loopback instead of the record: rehearsal transport. What
// arrived (counted by the Message-ID mailer sets) is compared with the
// database: every recipient arrived, every `sent` delivery arrived, and only
// deliveries a dead worker still leased arrived twice.
//
// Rates are capped per provider ([providers.*] max_rate) so that a run lasts
// a few seconds, long enough to kill or interrupt it mid-way.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <random>
#include <set>

#include "app/db/database.h"
#include "app/db/migrator.h"
#include "tests/app/kill_moment.h"
#include "tests/app/queue_seed.h"
#include "tests/app/queue_worker_process.h"
#include "tests/app/sink_process.h"
#include "tests/app/throwaway_cluster.h"
#include "tests/support/pg_fixture.h"
#include "tests/support/process.h"

namespace mailer::app {
namespace {

using mailer::testing::exec_sql;
using mailer::testing::maildir_arrivals;
using mailer::testing::maildir_sends;
using mailer::testing::query_int;
using mailer::testing::run_mailer;
using mailer::testing::seed_campaign;
using mailer::testing::seed_list;
using mailer::testing::SinkProcess;
using mailer::testing::WorkerProcess;

// The most one worker holds, so the most a kill -9 can make it send twice.
constexpr int kMaxLeased = 200;

// A worker configuration sending everything to `route` at most `rate`
// messages/s per provider, with leases of `lease`; returns its path.
std::string write_config(const std::string& dir, const std::string& name, const std::string& route,
                         int rate, const std::string& lease = "2s") {
  mailer::testing::write_file(dir + "/secret", "0123456789abcdef0123456789abcdef");
  std::string toml = fmt::format(
      "[worker]\ntick = \"100ms\"\nlease = \"{}\"\nflush_interval = \"50ms\"\n"
      "claim_batch = 50\nmax_leased = {}\n[database]\nreconnect_max = \"1s\"\n"
      "[sender]\nhelo_name = \"test.example.com\"\nhistory_interval = \"1s\"\n"
      "default_route = \"{}\"\n"
      "[unsubscribe]\nbase_url = \"https://mail.example.com\"\nsecret_file = \"{}/secret\"\n",
      lease, kMaxLeased, route, dir);
  for (const char* provider : {"gmail", "outlook", "yahoo", "other"}) {
    toml += fmt::format("[providers.{}]\ninitial_rate = {}\nmax_rate = {}\n", provider, rate, rate);
  }
  const std::string path = dir + "/" + name + ".toml";
  mailer::testing::write_file(path, toml);
  return path;
}

// A running campaign with `n` recipients; the audience is frozen by the worker.
std::int64_t scheduled_now(const std::string& url, const std::string& list_name, int n) {
  const auto list = seed_list(url, list_name, n);
  const auto id = seed_campaign(url, list, "scheduled");
  exec_sql(url, fmt::format("UPDATE campaigns SET scheduled_at = now() WHERE id = {}", id));
  return id;
}

// Ids of campaign `id`'s deliveries in state sent.
std::set<long long> sent_ids(const std::string& url, std::int64_t id) {
  pqxx::connection c(url);
  pqxx::work w(c);
  std::set<long long> ids;
  for (const auto& row :
       w.exec_params("SELECT id FROM deliveries WHERE campaign_id = $1 AND state = 'sent'", id)) {
    ids.insert(row[0].as<long long>());
  }
  return ids;
}

// Sent deliveries of the database that never arrived.
std::size_t sent_but_missing(const std::set<long long>& sent, const std::map<long long, int>& got) {
  std::size_t missing = 0;
  for (long long d : sent) missing += got.count(d) == 0;
  return missing;
}

TEST(QueueReliabilitySmtp, TwoWorkersDeliverEveryRecipientExactlyOnceToTheSinks) {
  mailer::testing::TestDatabase t("two_workers_smtp");
  const std::string dir = mailer::testing::make_temp_dir("two-workers-smtp");
  SinkProcess sink_a(dir + "/a.maildir", dir + "/sink-a");
  SinkProcess sink_b(dir + "/b.maildir", dir + "/sink-b");
  const int n = 600;
  const auto id = scheduled_now(t.url(), "news", n);
  const std::map<std::string, std::string> env = {{"MAILER_DATABASE_URL", t.url()}};
  // Each worker its own sink, so the arrivals tell who sent what.
  WorkerProcess a({"--config", write_config(dir, "a", sink_a.route(), 25), "run", "--worker-id",
                   "a", "--until-idle"},
                  env, dir + "/a.out", dir + "/a.err");
  WorkerProcess b({"--config", write_config(dir, "b", sink_b.route(), 25), "run", "--worker-id",
                   "b", "--until-idle"},
                  env, dir + "/b.out", dir + "/b.err");
  ASSERT_EQ(a.wait(std::chrono::seconds(60)), 0) << a.err();
  ASSERT_EQ(b.wait(std::chrono::seconds(60)), 0) << b.err();
  const auto only_a = maildir_sends({sink_a.maildir()});
  const auto only_b = maildir_sends({sink_b.maildir()});
  const auto both = maildir_sends({sink_a.maildir(), sink_b.maildir()});
  EXPECT_EQ(both.size(), static_cast<std::size_t>(n));
  int twice = 0;
  for (const auto& [delivery, count] : both) twice += count > 1;
  EXPECT_EQ(twice, 0);
  EXPECT_GT(only_a.size(), 0u);
  EXPECT_GT(only_b.size(), 0u);
  // Each message went to tmp/ and was renamed into new/: nothing left behind.
  EXPECT_TRUE(std::filesystem::is_empty(sink_a.maildir() + "/tmp"));
  EXPECT_TRUE(std::filesystem::is_empty(sink_b.maildir() + "/tmp"));
  std::cout << "[ two workers, smtp ] a delivered " << only_a.size() << ", b delivered "
            << only_b.size() << ", repeated " << twice << "\n";
  const auto sent = sent_ids(t.url(), id);
  EXPECT_EQ(sent.size(), static_cast<std::size_t>(n));
  EXPECT_EQ(sent_but_missing(sent, both), 0u);
  EXPECT_EQ(query_int(t.url(), fmt::format("SELECT count(*) FROM deliveries WHERE campaign_id = "
                                           "{} AND state = 'sent' AND attempts = 1",
                                           id)),
            n);
}

TEST(QueueReliabilitySmtp, KillNineWithWorkInFlightRepeatsOnlyTheDeadWorkersLeases) {
  mailer::testing::TestDatabase t("kill9_smtp");
  const std::string dir = mailer::testing::make_temp_dir("kill9-smtp");
  const std::map<std::string, std::string> env = {{"MAILER_DATABASE_URL", t.url()}};
  const unsigned seed = std::random_device{}();
  std::cout << "[ kill -9, smtp ] seed " << seed << "\n";
  std::mt19937 rng(seed);
  const int n = 300;
  std::uniform_int_distribution<int> sent_before_kill(1, n / 3);
  // Trial 0 restarts under the same name (it takes its leases back), trial 1
  // under another (the dead worker's leases must expire first).
  for (int trial = 0; trial < 2; ++trial) {
    const std::string maildir = fmt::format("{}/trial{}.maildir", dir, trial);
    SinkProcess sink(maildir, fmt::format("{}/sink{}", dir, trial));
    // 4 providers at 25/s: about 3 s of sending.
    const std::string config = write_config(dir, fmt::format("trial{}", trial), sink.route(), 25);
    const auto id = scheduled_now(t.url(), "list" + std::to_string(trial), n);
    const std::string worker = fmt::format("k{}", trial);
    const auto threshold = static_cast<std::size_t>(sent_before_kill(rng));
    mailer::testing::KillMoment moment;
    {
      WorkerProcess victim(
          {"--config", config, "run", "--worker-id", worker, "--campaign", std::to_string(id)}, env,
          dir + "/victim.out", dir + "/victim.err");
      moment = mailer::testing::kill_with_work_in_flight(
          t.url(), victim, worker, threshold, [&] { return maildir_arrivals({maildir}); },
          std::chrono::seconds(30));
      if (!moment.caught) victim.signal(SIGKILL);
      victim.wait(std::chrono::seconds(10));
      ASSERT_TRUE(moment.caught) << "trial " << trial << ": the victim never had " << threshold
                                 << " arrivals with leases held (it had " << moment.sent << ")\n"
                                 << victim.err();
    }
    const auto in_flight = mailer::testing::ids_leased_by(t.url(), worker);
    std::cout << "[ kill -9, smtp ] trial " << trial << ": killed " << moment.after_ms
              << " ms after the start, at " << moment.sent << " arrivals (threshold " << threshold
              << "), " << in_flight.size() << " rows still leased by the dead worker\n";
    ASSERT_GT(in_flight.size(), 0u) << "trial " << trial;

    const std::string restarted = trial == 0 ? worker : worker + "-new";
    auto r = run_mailer({"--config", config, "run", "--worker-id", restarted, "--until-idle",
                         "--campaign", std::to_string(id)},
                        env, "", std::chrono::seconds(60));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto got = maildir_sends({maildir});
    int repeated = 0;
    for (const auto& [delivery, count] : got) {
      repeated += count - 1;
      if (count > 1) {
        EXPECT_TRUE(in_flight.count(delivery)) << "trial " << trial << " " << delivery;
      }
    }
    EXPECT_EQ(got.size(), static_cast<std::size_t>(n)) << "trial " << trial << " missed some";
    EXPECT_LE(repeated, static_cast<int>(in_flight.size())) << "trial " << trial;
    EXPECT_LE(repeated, kMaxLeased);
    const auto sent = sent_ids(t.url(), id);
    EXPECT_EQ(sent.size(), static_cast<std::size_t>(n)) << "trial " << trial;
    EXPECT_EQ(sent_but_missing(sent, got), 0u) << "trial " << trial;
    std::cout << "[ kill -9, smtp ] trial " << trial << ": " << got.size() << " recipients, "
              << repeated << " repeated (in flight at the kill), restart as "
              << (trial == 0 ? "the same worker" : "a new worker") << "\n";
  }
}

TEST(QueueReliabilitySmtp, ServerRestartMidRunLosesNothingAndRepeatsNothing) {
  mailer::testing::ThrowawayCluster pg;
  {
    db::Database db(db::DatabaseOptions{pg.url()});
    db::Migrator(db).apply();
  }
  const std::string dir = mailer::testing::make_temp_dir("pg-restart-smtp");
  SinkProcess sink(dir + "/maildir", dir + "/sink");
  // 4 providers at 25/s: about 4 s of sending. The leases outlast the
  // outage (stopping and starting a cluster takes a few seconds here), so
  // the worker finds its deliveries still its own when the server is back.
  const std::string config = write_config(dir, "w", sink.route(), 25, "20s");
  const int n = 400;
  const auto id = scheduled_now(pg.url(), "news", n);
  WorkerProcess w({"--config", config, "run", "--worker-id", "survivor", "--until-idle"},
                  {{"MAILER_DATABASE_URL", pg.url()}}, dir + "/w.out", dir + "/w.err");
  // The outage begins once mail is flowing and lasts until the worker has
  // noticed it.
  const auto deadline = [](int s) {
    return std::chrono::steady_clock::now() + std::chrono::seconds(s);
  };
  for (auto until = deadline(30); maildir_arrivals({sink.maildir()}) < 40;) {
    ASSERT_LT(std::chrono::steady_clock::now(), until) << "no mail arrived\n" << w.err();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const std::size_t before_outage = maildir_arrivals({sink.maildir()});
  ASSERT_EQ(pg.control("stop").exit_code, 0);
  for (auto until = deadline(30); w.err().find("reconnecting with backoff") == std::string::npos;) {
    ASSERT_LT(std::chrono::steady_clock::now(), until) << "the worker never noticed\n" << w.err();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(pg.control("start").exit_code, 0);
  ASSERT_EQ(w.wait(std::chrono::seconds(90)), 0) << w.err();
  const std::string err = w.err();
  std::size_t lines = 0;
  for (std::size_t at = 0; (at = err.find("reconnecting with backoff", at)) != std::string::npos;
       ++at) {
    ++lines;
  }
  EXPECT_EQ(lines, 1u) << err;
  EXPECT_NE(err.find("database connection restored"), std::string::npos) << err;
  const auto got = maildir_sends({sink.maildir()});
  EXPECT_EQ(got.size(), static_cast<std::size_t>(n));
  int repeated = 0;
  for (const auto& [delivery, count] : got) repeated += count - 1;
  EXPECT_EQ(repeated, 0);
  const auto sent = sent_ids(pg.url(), id);
  EXPECT_EQ(sent.size(), static_cast<std::size_t>(n));
  EXPECT_EQ(sent_but_missing(sent, got), 0u);
  std::cout << "[ pg restart, smtp ] " << before_outage << " arrived before the outage, "
            << got.size() << " recipients in all, " << repeated << " repeated\n";
}

}  // namespace
}  // namespace mailer::app
