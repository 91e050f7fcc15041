// The campaign, run and status commands end to end through the binary:
// validation at creation (exit 2 naming the field), the JSON shapes of
// CLI.md, --until-idle, retries, and the SIGTERM drain.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <ctime>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "tests/app/queue_seed.h"
#include "tests/app/queue_worker_process.h"
#include "tests/support/pg_fixture.h"
#include "tests/support/process.h"

namespace mailer::app {
namespace {

using mailer::testing::query_int;
using mailer::testing::run_mailer;
using mailer::testing::seed_list;
using mailer::testing::write_file;

class CampaignCliTest : public ::testing::Test {
 protected:
  CampaignCliTest() : dir_(mailer::testing::make_temp_dir("campaign-cli")) {
    write_file(dir_ + "/mailer.toml",
               "[worker]\ntick = \"100ms\"\nlease = \"5s\"\nflush_interval = \"50ms\"\n"
               "claim_batch = 50\nmax_leased = 200\n");
    write_file(dir_ + "/body.txt", "Hello {{first_name}}, news for {{email}}.\n");
    write_file(dir_ + "/typo.txt", "Hello {{frist_name}}\n");
  }

  mailer::testing::ProcessResult mailer(std::vector<std::string> args) {
    args.insert(args.begin(), {"--config", dir_ + "/mailer.toml"});
    return run_mailer(args, {{"MAILER_DATABASE_URL", t_.url()}});
  }

  std::int64_t create(const std::string& list, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"campaign",  "create",
                                     "--name",    "Spring",
                                     "--list",    list,
                                     "--from",    "News <news@example.com>",
                                     "--subject", "Hi {{first_name}}",
                                     "--text",    dir_ + "/body.txt",
                                     "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = mailer(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out).at("id").get<std::int64_t>();
  }

  mailer::testing::TestDatabase t_{"campaign_cli"};
  std::string dir_;
};

TEST_F(CampaignCliTest, CreationRejectsBadInputNamingTheField) {
  seed_list(t_.url(), "news", 4);
  const std::vector<std::string> base = {"campaign", "create", "--name",    "x",
                                         "--list",   "news",   "--subject", "Hi"};
  auto with = [&](std::vector<std::string> extra) {
    auto args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return mailer(args);
  };
  auto r = with({"--from", "news@example.com", "--text", dir_ + "/typo.txt"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--text " + dir_ + "/typo.txt: unknown merge field(s) \"frist_name\""),
            std::string::npos)
      << r.err;
  r = with({"--from", "news@example.com", "--html", dir_ + "/missing.html"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--html " + dir_ + "/missing.html: cannot read"), std::string::npos)
      << r.err;
  r = with({"--from", "News <not an address>", "--text", dir_ + "/body.txt"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--from:"), std::string::npos) << r.err;
  r = with({"--from", "news@example.com", "--text", dir_ + "/body.txt", "--list", "nope"});
  EXPECT_EQ(r.exit_code, 2);
  r = with({"--from", "news@example.com", "--text", dir_ + "/body.txt", "--at", "2026-03-08T02:30",
            "--tz", "America/New_York"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--at:"), std::string::npos) << r.err;
  r = with({"--from", "news@example.com", "--text", dir_ + "/body.txt", "--window", "9-5"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--window:"), std::string::npos) << r.err;
  EXPECT_EQ(query_int(t_.url(), "SELECT count(*) FROM campaigns"), 0);
}

TEST_F(CampaignCliTest, RunUntilIdleSendsEveryoneOnceAndShowReportsIt) {
  seed_list(t_.url(), "news", 120);
  const auto id = create("news");
  auto show = mailer({"campaign", "show", std::to_string(id), "--json"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_EQ(nlohmann::json::parse(show.out).at("status"), "draft");
  ASSERT_EQ(mailer({"campaign", "start", std::to_string(id)}).exit_code, 0);
  auto impossible = mailer({"campaign", "resume", std::to_string(id)});
  EXPECT_EQ(impossible.exit_code, 2);
  EXPECT_NE(impossible.err.find("is running: cannot resume it"), std::string::npos);

  const std::string record = dir_ + "/sent.log";
  auto run =
      mailer({"run", "--worker-id", "w1", "--until-idle", "--transport", "record:" + record});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.err.find("mailer run: idle: nothing left to send: 1 finished"), std::string::npos)
      << run.err;
  const auto sends = mailer::testing::recorded_sends({record});
  EXPECT_EQ(sends.size(), 120u);
  for (const auto& [delivery, n] : sends) EXPECT_EQ(n, 1) << delivery;

  show = mailer({"campaign", "show", std::to_string(id), "--json"});
  const auto j = nlohmann::json::parse(show.out);
  EXPECT_EQ(j.at("id"), id);
  EXPECT_EQ(j.at("name"), "Spring");
  EXPECT_EQ(j.at("status"), "finished");
  for (const char* s : {"queued", "sending", "sent", "deferred", "bounced", "failed", "skipped"}) {
    EXPECT_TRUE(j.at("counts").contains(s)) << s;
  }
  EXPECT_EQ(j.at("counts").at("sent"), 120);
  for (const char* p : {"gmail", "outlook", "yahoo", "other:example.org"}) {
    ASSERT_TRUE(j.at("providers").contains(p)) << p;
    EXPECT_TRUE(j.at("providers").at(p).at("rate").is_number());
    EXPECT_EQ(j.at("providers").at(p).at("state"), "normal");
  }
  auto status = mailer({"status", "--json"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  const auto st = nlohmann::json::parse(status.out);
  EXPECT_EQ(st.at("campaigns").at(0).at("counts").at("sent"), 120);
  EXPECT_TRUE(st.at("providers").is_object());
}

TEST_F(CampaignCliTest, UntilIdleWaitsForPendingRetries) {
  seed_list(t_.url(), "news", 20);
  const auto id = create("news");
  ASSERT_EQ(mailer({"campaign", "start", std::to_string(id)}).exit_code, 0);
  auto run = mailer({"run", "--until-idle", "--transport", "null,defer-first=1s"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.err.find("waiting for deferred deliveries"), std::string::npos) << run.err;
  EXPECT_EQ(query_int(t_.url(),
                      "SELECT count(*) FROM deliveries WHERE state = 'sent' AND "
                      "attempts = 2 AND first_attempt_at < sent_at"),
            20);
}

TEST_F(CampaignCliTest, UntilIdleDoesNotWaitForAScheduledStartOrAWindow) {
  seed_list(t_.url(), "news", 4);
  const auto scheduled = create("news", {"--at", "2099-01-01T00:00:00Z"});
  // A window of one hour that starts two hours from now (UTC): closed now
  // and for at least the next hour, whenever the test runs.
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  const int opens = (utc.tm_hour + 2) % 24;
  const std::string window = fmt::format("{:02}:00-{:02}:00", opens, (opens + 1) % 24);
  const auto windowed = create("news", {"--window", window, "--tz", "UTC"});
  ASSERT_EQ(mailer({"campaign", "start", std::to_string(windowed)}).exit_code, 0);
  const auto started = std::chrono::steady_clock::now();
  auto run = mailer({"run", "--until-idle", "--transport", "null"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  // It neither sent anything nor waited for the window to open.
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(60));
  EXPECT_EQ(query_int(t_.url(), "SELECT count(*) FROM deliveries WHERE state = 'sent'"), 0);
  EXPECT_NE(
      run.err.find(fmt::format("campaign {} is scheduled for 2099-01-01T00:00:00Z", scheduled)),
      std::string::npos)
      << run.err;
  EXPECT_NE(
      run.err.find(fmt::format("campaign {} waits for its send window {} UTC", windowed, window)),
      std::string::npos)
      << run.err;
}

TEST_F(CampaignCliTest, SigtermDrainsFlushesAndReleasesLeases) {
  seed_list(t_.url(), "news", 4000);
  const auto id = create("news");
  ASSERT_EQ(mailer({"campaign", "start", std::to_string(id)}).exit_code, 0);
  const std::string record = dir_ + "/drain.log";
  mailer::testing::WorkerProcess w({"--config", dir_ + "/mailer.toml", "run", "--worker-id",
                                    "drainer", "--transport", "record:" + record + ",delay=20ms"},
                                   {{"MAILER_DATABASE_URL", t_.url()}}, dir_ + "/drain.out",
                                   dir_ + "/drain.err");
  // SIGTERM once sending is under way (a slow start, as under the
  // sanitizers, must not turn this into a signal before the handler exists).
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (mailer::testing::recorded_sends({record}).empty() &&
         std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_FALSE(mailer::testing::recorded_sends({record}).empty()) << w.err();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  w.signal(SIGTERM);
  EXPECT_EQ(w.wait(std::chrono::seconds(20)), 0) << w.err();
  EXPECT_NE(w.err().find("stopped: drained"), std::string::npos) << w.err();
  // Nothing left leased; everything recorded as sent is sent in the database.
  EXPECT_EQ(query_int(t_.url(), "SELECT count(*) FROM deliveries WHERE lease_owner IS NOT NULL"),
            0);
  const auto sends = mailer::testing::recorded_sends({record});
  EXPECT_GT(sends.size(), 0u);
  EXPECT_LT(sends.size(), 4000u);
  EXPECT_EQ(query_int(t_.url(), "SELECT count(*) FROM deliveries WHERE state = 'sent'"),
            static_cast<std::int64_t>(sends.size()));
}

TEST_F(CampaignCliTest, PauseWhileAWorkerSendsStopsItAndResumeSendsTheRestOnce) {
  const int n = 3000;
  seed_list(t_.url(), "news", n);
  const auto id = create("news");
  ASSERT_EQ(mailer({"campaign", "start", std::to_string(id)}).exit_code, 0);
  const std::string record = dir_ + "/pause.log";
  mailer::testing::WorkerProcess w(
      {"--config", dir_ + "/mailer.toml", "run", "--worker-id", "pausee", "--until-idle", "--json",
       "--transport", "record:" + record + ",delay=100ms"},
      {{"MAILER_DATABASE_URL", t_.url()}}, dir_ + "/pause.out", dir_ + "/pause.err");
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (mailer::testing::recorded_sends({record}).size() < 20 &&
         std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_GE(mailer::testing::recorded_sends({record}).size(), 20u) << w.err();
  ASSERT_EQ(mailer({"campaign", "pause", std::to_string(id)}).exit_code, 0);
  ASSERT_EQ(w.wait(std::chrono::seconds(60)), 0) << w.err();
  const auto first = mailer::testing::recorded_sends({record}).size();
  EXPECT_LT(first, static_cast<std::size_t>(n)) << "the pause came after everything was sent";
  EXPECT_EQ(query_int(t_.url(), "SELECT count(*) FROM deliveries WHERE lease_owner IS NOT NULL"),
            0);
  EXPECT_EQ(query_int(t_.url(), "SELECT count(*) FROM deliveries WHERE state = 'sent'"),
            static_cast<std::int64_t>(first));
  EXPECT_EQ(query_int(t_.url(), fmt::format("SELECT count(*) FROM campaigns WHERE id = {} AND "
                                            "status = 'paused'",
                                            id)),
            1);
  // run --json: why it ended, what it did, and no lease lost.
  const auto report = nlohmann::json::parse(w.out());
  EXPECT_EQ(report.at("lost_leases"), 0) << w.out();
  EXPECT_EQ(report.at("outcomes").value("sent", 0), static_cast<int>(first)) << w.out();
  EXPECT_TRUE(report.at("reason").get<std::string>().starts_with("idle")) << w.out();

  ASSERT_EQ(mailer({"campaign", "resume", std::to_string(id)}).exit_code, 0);
  auto rest = mailer({"run", "--until-idle", "--transport", "record:" + record});
  ASSERT_EQ(rest.exit_code, 0) << rest.err;
  const auto sends = mailer::testing::recorded_sends({record});
  EXPECT_EQ(sends.size(), static_cast<std::size_t>(n));
  for (const auto& [delivery, times] : sends) EXPECT_EQ(times, 1) << "delivery " << delivery;
}

TEST_F(CampaignCliTest, LogFormatJsonWritesEveryLogLineAsOneJsonObject) {
  seed_list(t_.url(), "news", 5);
  const auto id = create("news");
  ASSERT_EQ(mailer({"campaign", "start", std::to_string(id)}).exit_code, 0);
  auto run = mailer({"--log-format", "json", "run", "--until-idle", "--worker-id", "jsonlog",
                     "--transport", "null"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  std::istringstream lines(run.err);
  int logged = 0;
  bool saw_start = false;
  for (std::string line; std::getline(lines, line);) {
    // The command's own closing line ("mailer run: ...") is not a log line.
    if (line.rfind("mailer run: ", 0) == 0) continue;
    nlohmann::json j;
    ASSERT_NO_THROW(j = nlohmann::json::parse(line)) << line;
    EXPECT_TRUE(j.at("time").is_string()) << line;
    EXPECT_TRUE(j.at("level").is_string()) << line;
    const std::string msg = j.at("msg").get<std::string>();
    if (msg.find("worker jsonlog started") != std::string::npos) saw_start = true;
    ++logged;
  }
  EXPECT_GT(logged, 0) << run.err;
  EXPECT_TRUE(saw_start) << run.err;
  auto bad = mailer({"--log-format", "xml", "campaign", "list"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("--log-format"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace mailer::app
