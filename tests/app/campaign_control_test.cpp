// End to end through the binary on a real database: `campaign list` and
// `campaign cancel`, the [worker] past_due_warning of the scheduler, and the
// lost_leases count of `run --json` when another owner took its rows over.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "tests/app/queue_seed.h"
#include "tests/app/queue_worker_process.h"
#include "tests/support/pg_fixture.h"
#include "tests/support/process.h"

namespace mailer::app {
namespace {

using mailer::testing::query_int;
using mailer::testing::recorded_sends;
using mailer::testing::run_mailer;
using mailer::testing::seed_list;
using mailer::testing::WorkerProcess;
using mailer::testing::write_file;

bool wait_until(const std::function<bool()>& done, std::chrono::seconds limit) {
  const auto give_up = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return done();
}

// "YYYY-MM-DDTHH:MM:SSZ" for now + offset.
std::string utc_at(std::chrono::seconds offset) {
  const std::time_t t = std::time(nullptr) + offset.count();
  std::tm utc{};
  gmtime_r(&t, &utc);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return buf;
}

class CampaignControlTest : public ::testing::Test {
 protected:
  CampaignControlTest() : dir_(mailer::testing::make_temp_dir("campaign-control")) {
    write_config("");
    write_file(dir_ + "/body.txt", "Hello {{first_name}}.\n");
  }

  void write_config(const std::string& extra_worker, const std::string& lease = "5s") {
    write_file(dir_ + "/mailer.toml",
               fmt::format("[worker]\ntick = \"100ms\"\nlease = \"{}\"\nflush_interval = "
                           "\"50ms\"\nclaim_batch = 50\nmax_leased = 200\n{}",
                           lease, extra_worker));
  }

  std::vector<std::string> with_config(std::vector<std::string> args) {
    args.insert(args.begin(), {"--config", dir_ + "/mailer.toml"});
    return args;
  }

  mailer::testing::ProcessResult mailer(std::vector<std::string> args) {
    return run_mailer(with_config(std::move(args)), env());
  }

  std::map<std::string, std::string> env() { return {{"MAILER_DATABASE_URL", t_.url()}}; }

  std::int64_t create(const std::string& name, const std::string& list,
                      std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"campaign",  "create", "--name", name,
                                     "--list",    list,     "--from", "News <news@example.com>",
                                     "--subject", "Hi",     "--text", dir_ + "/body.txt",
                                     "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = mailer(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out).at("id").get<std::int64_t>();
  }

  mailer::testing::TestDatabase t_{"campaign_control"};
  std::string dir_;
};

TEST_F(CampaignControlTest, ListJsonListsEveryCampaignWithItsStatus) {
  seed_list(t_.url(), "news", 8);
  const auto drafted = create("Drafted", "news");
  const auto started = create("Started", "news");
  const auto scheduled = create("Later", "news", {"--at", "2099-01-01T00:00:00Z"});
  ASSERT_EQ(mailer({"campaign", "start", std::to_string(started)}).exit_code, 0);

  auto r = mailer({"campaign", "list", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.at("campaigns").is_array()) << r.out;
  ASSERT_EQ(j.at("campaigns").size(), 3u) << r.out;
  std::map<std::int64_t, nlohmann::json> by_id;
  for (const auto& c : j.at("campaigns")) by_id[c.at("id").get<std::int64_t>()] = c;
  ASSERT_EQ(by_id.count(drafted), 1u) << r.out;
  ASSERT_EQ(by_id.count(started), 1u) << r.out;
  ASSERT_EQ(by_id.count(scheduled), 1u) << r.out;
  EXPECT_EQ(by_id[drafted].at("status"), "draft");
  EXPECT_EQ(by_id[drafted].at("name"), "Drafted");
  EXPECT_EQ(by_id[drafted].at("list"), "news");
  EXPECT_EQ(by_id[started].at("status"), "running");
  EXPECT_EQ(by_id[scheduled].at("status"), "scheduled");
  EXPECT_EQ(by_id[scheduled].at("scheduled_at"), "2099-01-01T00:00:00Z");

  // The table form names each campaign too.
  auto table = mailer({"campaign", "list"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  for (const char* name : {"Drafted", "Started", "Later"}) {
    EXPECT_NE(table.out.find(name), std::string::npos) << table.out;
  }
}

TEST_F(CampaignControlTest, CancelWhileAWorkerSendsStopsTheRestAndShowSaysCancelled) {
  const int n = 3000;
  seed_list(t_.url(), "news", n);
  const auto id = create("Spring", "news");
  ASSERT_EQ(mailer({"campaign", "start", std::to_string(id)}).exit_code, 0);
  const std::string record = dir_ + "/cancel.log";
  WorkerProcess w(with_config({"run", "--worker-id", "cancelled", "--until-idle", "--transport",
                               "record:" + record + ",delay=200ms"}),
                  env(), dir_ + "/cancel.out", dir_ + "/cancel.err");
  ASSERT_TRUE(
      wait_until([&] { return recorded_sends({record}).size() >= 20; }, std::chrono::seconds(30)))
      << w.err();
  auto cancel = mailer({"campaign", "cancel", std::to_string(id), "--json"});
  ASSERT_EQ(cancel.exit_code, 0) << cancel.err;
  EXPECT_EQ(nlohmann::json::parse(cancel.out).at("status"), "cancelled") << cancel.out;
  ASSERT_EQ(w.wait(std::chrono::seconds(30)), 0) << w.err();

  const auto first = recorded_sends({record});
  EXPECT_LT(first.size(), static_cast<std::size_t>(n)) << "the cancel came after everything";
  for (const auto& [delivery, times] : first) EXPECT_EQ(times, 1) << "delivery " << delivery;
  // Nothing is left to send: every delivery is final, the unsent ones skipped.
  EXPECT_EQ(query_int(t_.url(), "SELECT count(*) FROM deliveries WHERE lease_owner IS NOT NULL"),
            0);
  EXPECT_EQ(query_int(t_.url(),
                      "SELECT count(*) FROM deliveries WHERE state IN ('queued', "
                      "'sending', 'deferred')"),
            0);
  EXPECT_GE(query_int(t_.url(), "SELECT count(*) FROM deliveries WHERE state = 'skipped'"),
            static_cast<std::int64_t>(n - first.size()));

  // A later worker sends none of the remaining ones.
  auto again = mailer({"run", "--until-idle", "--transport", "record:" + record});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(recorded_sends({record}).size(), first.size());

  auto show = mailer({"campaign", "show", std::to_string(id), "--json"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  const auto j = nlohmann::json::parse(show.out);
  EXPECT_EQ(j.at("status"), "cancelled");
  EXPECT_EQ(j.at("counts").at("queued"), 0);
  EXPECT_GE(j.at("counts").at("skipped").get<std::int64_t>(),
            static_cast<std::int64_t>(n - first.size()));
}

TEST_F(CampaignControlTest, CancelOfAnUnknownIdExitsTwoNamingTheId) {
  auto r = mailer({"campaign", "cancel", "987654"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("no campaign with id 987654"), std::string::npos) << r.err;
  EXPECT_EQ(query_int(t_.url(), "SELECT count(*) FROM campaigns"), 0);
}

// The worker's log lines (--log-format json) about one campaign: level by
// message.
std::vector<std::pair<std::string, std::string>> log_lines_about(const std::string& err,
                                                                 std::int64_t campaign) {
  std::vector<std::pair<std::string, std::string>> found;
  std::istringstream lines(err);
  const std::string tag = fmt::format("campaign {} (", campaign);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] != '{') continue;
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) continue;
    const std::string msg = j.value("msg", "");
    if (msg.find(tag) != std::string::npos) found.emplace_back(j.value("level", ""), msg);
  }
  return found;
}

TEST_F(CampaignControlTest, PastDueWarningWarnsOnlyForACampaignFoundDueLaterThanIt) {
  write_config("past_due_warning = \"10m\"\n");
  seed_list(t_.url(), "news", 6);
  const auto late = create("Late", "news", {"--at", utc_at(-std::chrono::hours(2))});
  const auto on_time = create("OnTime", "news", {"--at", utc_at(-std::chrono::seconds(1))});
  auto run = mailer({"--log-format", "json", "run", "--until-idle", "--transport", "null"});
  ASSERT_EQ(run.exit_code, 0) << run.err;

  const auto late_lines = log_lines_about(run.err, late);
  bool warned = false;
  for (const auto& [level, msg] : late_lines) {
    if (msg.find("was due at") != std::string::npos) {
      EXPECT_EQ(level.rfind("warn", 0), 0u) << level << ": " << msg;
      EXPECT_NE(msg.find("late"), std::string::npos) << msg;
      warned = true;
    }
  }
  EXPECT_TRUE(warned) << run.err;

  const auto on_time_lines = log_lines_about(run.err, on_time);
  bool started = false;
  for (const auto& [level, msg] : on_time_lines) {
    EXPECT_EQ(msg.find("was due at"), std::string::npos) << msg;
    EXPECT_EQ(level.rfind("warn", 0), std::string::npos) << level << ": " << msg;
    if (msg.find("started") != std::string::npos) started = true;
  }
  EXPECT_TRUE(started) << run.err;
  // Both were sent all the same.
  EXPECT_EQ(query_int(t_.url(), "SELECT count(*) FROM campaigns WHERE status = 'finished'"), 2);
  EXPECT_EQ(query_int(t_.url(), "SELECT count(*) FROM deliveries WHERE state = 'sent'"), 12);
}

TEST_F(CampaignControlTest, RunJsonCountsLostLeasesWhenTheirRowsWereTakenOver) {
  const int n = 100;
  seed_list(t_.url(), "news", n);
  const auto id = create("Spring", "news");
  ASSERT_EQ(mailer({"campaign", "start", std::to_string(id)}).exit_code, 0);
  const std::string record = dir_ + "/slow.log";
  // Sends slow enough that rows stay leased (in flight) for a while.
  WorkerProcess slow(with_config({"run", "--worker-id", "slow", "--json", "--transport",
                                  "record:" + record + ",delay=300ms"}),
                     env(), dir_ + "/slow.out", dir_ + "/slow.err");
  auto count = [&](const std::string& where) {
    return query_int(t_.url(), "SELECT count(*) FROM deliveries WHERE " + where);
  };
  ASSERT_TRUE(
      wait_until([&] { return count("lease_owner = 'slow'") > 0; }, std::chrono::seconds(20)))
      << slow.err();
  // Another owner takes every row the worker holds, as a worker that found
  // them expired would, and keeps them for an hour.
  pqxx::connection c(t_.url());
  pqxx::work w(c);
  const auto taken = w.exec(
                          "UPDATE deliveries SET lease_owner = 'thief', lease_expires_at = now() "
                          "+ interval '1 hour' WHERE lease_owner = 'slow' AND state = 'queued'")
                         .affected_rows();
  w.commit();
  ASSERT_GT(taken, 0u);
  // The worker finds out when it writes their outcomes.
  ASSERT_TRUE(wait_until(
      [&] { return slow.err().find("dropped: their lease had expired") != std::string::npos; },
      std::chrono::seconds(20)))
      << slow.err();
  slow.signal(SIGTERM);
  ASSERT_EQ(slow.wait(std::chrono::seconds(20)), 0) << slow.err();

  const auto report = nlohmann::json::parse(slow.out());
  EXPECT_GT(report.at("lost_leases").get<std::int64_t>(), 0) << slow.out();
  EXPECT_LE(report.at("lost_leases").get<std::int64_t>(), static_cast<std::int64_t>(taken))
      << slow.out();
  // The late outcomes were not written over the new owner's rows: each of
  // them is still queued under the new owner, and no delivery is sent twice.
  EXPECT_EQ(count("lease_owner = 'thief' AND state = 'queued' AND attempts = 0"),
            static_cast<std::int64_t>(taken));
  const auto sends = recorded_sends({record});
  for (const auto& [delivery, times] : sends) EXPECT_EQ(times, 1) << delivery;
  EXPECT_EQ(count("state = 'sent'") + report.at("lost_leases").get<std::int64_t>(),
            static_cast<std::int64_t>(sends.size()))
      << slow.out();
}

// A TCP listener on 127.0.0.1 that accepts connections and closes them at
// once, counting them: each is one connection attempt of a client.
class ClosingListener {
 public:
  ClosingListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(fd_, 64) != 0) {
      throw std::runtime_error("cannot listen on 127.0.0.1");
    }
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] {
      while (!stop_) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 20) <= 0) continue;
        const int c = ::accept(fd_, nullptr, nullptr);
        if (c >= 0) {
          ++accepted_;
          ::close(c);
        }
      }
    });
  }
  ~ClosingListener() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  int port() const { return port_; }
  int accepted() const { return accepted_; }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

TEST(DatabaseReconnect, ReconnectMinSpacesTheAttemptsToAnUnreachableServer) {
  const std::string dir = mailer::testing::make_temp_dir("reconnect-min");
  // Connection attempts within reconnect_for = 1s, with a fixed wait between
  // them (reconnect_min = reconnect_max).
  auto attempts_with = [&](const std::string& wait) {
    ClosingListener server;
    const std::string config = dir + "/mailer-" + wait + ".toml";
    write_file(config, fmt::format("[database]\nreconnect_min = \"{0}\"\nreconnect_max = "
                                   "\"{0}\"\nreconnect_for = \"1s\"\n",
                                   wait));
    auto r = run_mailer(
        {"--config", config, "campaign", "list"},
        {{"MAILER_DATABASE_URL",
          fmt::format("postgresql://mailer@127.0.0.1:{}/mailer?sslmode=disable&gssencmode=disable",
                      server.port())}},
        "", std::chrono::seconds(20));
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_NE(r.err.find("reconnecting with backoff for up to 1s"), std::string::npos) << r.err;
    return server.accepted();
  };
  // 400ms apart: attempts at 0, 0.4 and 0.8 s at most.
  const int spaced = attempts_with("400ms");
  // 50ms apart: about twenty in the same second.
  const int close_together = attempts_with("50ms");
  std::cout << "[ reconnect_min ] 400ms: " << spaced << " attempts, 50ms: " << close_together
            << " attempts\n";
  EXPECT_GE(spaced, 2);
  EXPECT_LE(spaced, 3);
  EXPECT_GE(close_together, 6);
}

}  // namespace
}  // namespace mailer::app
