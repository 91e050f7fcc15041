// `mailer sink` and `mailer simulate` through the binary: their flags, the
// sink's --json counters after SIGTERM and its maildir, the scenario-file
// reader (tests/data/scenario-issue3.toml and bad files, exit 2 naming the
// file and the key), and simulate's --json shape and --trace CSV.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "tests/app/queue_worker_process.h"
#include "tests/support/process.h"

namespace mailer::app {
namespace {

using mailer::testing::run_mailer;
using mailer::testing::run_process;
using mailer::testing::write_file;

const std::string kScenario = std::string(MAILER_SOURCE_DIR) + "/tests/data/scenario-issue3.toml";

// Sends one message per line of `rcpts` with Python's smtplib, each on a new
// connection, and prints one reply code per message ("250", or the code of
// the refusal).
mailer::testing::ProcessResult send_with_smtplib(unsigned short port, int messages) {
  const std::string script = R"(
import smtplib, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
for i in range(n):
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            s.sendmail("a@example.com", ["r%d@example.net" % i], "Subject: t\r\n\r\nbody\r\n")
            print(250)
    except smtplib.SMTPResponseException as e:
        print(e.smtp_code)
    except smtplib.SMTPRecipientsRefused as e:
        print(list(e.recipients.values())[0][0])
    except smtplib.SMTPServerDisconnected:
        print("disconnected")
)";
  return run_process(
      {"/usr/bin/python3", "-c", script, std::to_string(port), std::to_string(messages)});
}

// The port a `mailer sink --listen 127.0.0.1:0` reports on stderr, polled
// until it appears (or 0 after 20 s).
unsigned short reported_port(const mailer::testing::WorkerProcess& sink) {
  const std::regex line(R"(mailer sink: listening on 127\.0\.0\.1:(\d+))");
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < give_up) {
    std::smatch m;
    const std::string err = sink.err();
    if (std::regex_search(err, m, line)) return static_cast<unsigned short>(std::stoi(m[1]));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return 0;
}

TEST(SinkCli, JsonCountersAfterSigtermCountAcceptedAndCapacityDeferralsAndTheMaildirHoldsThem) {
  const std::string dir = mailer::testing::make_temp_dir("sink-cli");
  // Capacity 1/s with a burst of one: of three messages sent at once, the
  // first is accepted and the next ones are deferred (unless a second has
  // passed, which the counts below allow for).
  mailer::testing::WorkerProcess sink({"sink", "--listen", "127.0.0.1:0", "--profile", "generic",
                                       "--capacity", "1", "--maildir", dir + "/maildir", "--json"},
                                      {}, dir + "/out", dir + "/err");
  const unsigned short port = reported_port(sink);
  ASSERT_NE(port, 0) << sink.err();
  EXPECT_NE(sink.err().find("profile=generic capacity=1"), std::string::npos) << sink.err();
  auto sent = send_with_smtplib(port, 3);
  ASSERT_EQ(sent.exit_code, 0) << sent.err;
  int accepted = 0, deferred = 0;
  std::istringstream codes(sent.out);
  for (std::string code; std::getline(codes, code);) {
    if (code == "250") ++accepted;
    if (!code.empty() && code[0] == '4') ++deferred;
  }
  EXPECT_GE(accepted, 1) << sent.out;
  EXPECT_GE(deferred, 1) << sent.out;
  EXPECT_EQ(accepted + deferred, 3) << sent.out;

  sink.signal(SIGTERM);
  ASSERT_EQ(sink.wait(std::chrono::seconds(20)), 0) << sink.err();
  const auto counters = nlohmann::json::parse(sink.out());
  EXPECT_EQ(counters.at("connections"), 3) << sink.out();
  EXPECT_EQ(counters.at("accepted"), accepted) << sink.out();
  EXPECT_EQ(counters.at("deferred").at("capacity"), deferred) << sink.out();
  EXPECT_EQ(counters.at("dropped"), 0);
  std::size_t stored = 0;
  for ([[maybe_unused]] const auto& f : std::filesystem::directory_iterator(dir + "/maildir/new")) {
    ++stored;
  }
  EXPECT_EQ(stored, static_cast<std::size_t>(accepted));
  std::filesystem::remove_all(dir);
}

TEST(SinkCli, BadFlagsExitTwoNamingTheFlag) {
  struct Case {
    std::vector<std::string> args;
    std::string names;
  };
  for (const Case& c :
       std::vector<Case>{{{"sink", "--listen", "127.0.0.1:0", "--profile", "nosuch"}, "nosuch"},
                         {{"sink", "--listen", "not-an-address"}, "not-an-address"},
                         {{"sink", "--listen", "127.0.0.1:0", "--latency", "soon"}, "--latency"},
                         {{"sink"}, "--listen"}}) {
    auto r = run_mailer(c.args, {}, "", std::chrono::seconds(20));
    EXPECT_EQ(r.exit_code, 2) << c.args.back() << ": " << r.err;
    EXPECT_NE(r.err.find(c.names), std::string::npos) << r.err;
  }
}

TEST(SimulateCli, IssueThreeScenarioPrintsEveryProviderAndBaselineAndTracesEverySecond) {
  const std::string dir = mailer::testing::make_temp_dir("simulate-cli");
  auto r =
      run_mailer({"simulate", "--scenario", kScenario, "--json", "--trace", dir + "/trace.csv"}, {},
                 "", std::chrono::seconds(300));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const std::map<std::string, double> capacity = {{"gmail", 300}, {"outlook", 200}, {"yahoo", 120}};
  auto check_strategy = [&](const nlohmann::json& providers, const std::string& strategy) {
    ASSERT_EQ(providers.size(), 3u) << strategy << ": " << providers.dump();
    for (const auto& [name, cap] : capacity) {
      const auto& p = providers.at(name);
      for (const char* key : {"capacity", "goodput", "goodput_ratio", "attempts", "deferrals",
                              "deferral_ratio", "time_to_90pct_s"}) {
        EXPECT_TRUE(p.contains(key)) << strategy << " " << name << " lacks " << key;
      }
      EXPECT_GT(p.at("goodput").get<double>(), 0) << strategy << " " << name;
      EXPECT_GE(p.at("attempts").get<std::int64_t>(), p.at("deferrals").get<std::int64_t>());
      const double ratio = p.at("deferral_ratio").get<double>();
      EXPECT_GE(ratio, 0.0);
      EXPECT_LE(ratio, 1.0);
    }
  };
  check_strategy(j.at("providers"), "aimd");
  check_strategy(j.at("baselines").at("fixed_rate"), "fixed_rate");
  check_strategy(j.at("baselines").at("step_down_hold"), "step_down_hold");
  // Gmail's capacity halves at 300 s: the report gives the time-weighted
  // capacity, between the two.
  const double gmail = j.at("providers").at("gmail").at("capacity").get<double>();
  EXPECT_LT(gmail, 300.0);
  EXPECT_GT(gmail, 150.0);

  // The trace: a header and one row per provider and second of the run.
  std::ifstream trace(dir + "/trace.csv");
  std::string header;
  ASSERT_TRUE(std::getline(trace, header));
  EXPECT_EQ(header, "time,provider,rate,accepted,deferred");
  std::map<std::string, int> rows;
  double last_time = 0;
  for (std::string line; std::getline(trace, line);) {
    std::istringstream fields(line);
    std::string time, provider;
    std::getline(fields, time, ',');
    std::getline(fields, provider, ',');
    ++rows[provider];
    last_time = std::max(last_time, std::stod(time));
  }
  EXPECT_EQ(rows.size(), 3u);
  for (const auto& [provider, n] : rows) EXPECT_GE(n, 590) << provider;
  EXPECT_GE(last_time, 590.0);
  std::filesystem::remove_all(dir);
}

TEST(SimulateCli, TextOutputHasOneRowPerStrategyAndProvider) {
  auto r = run_mailer({"simulate", "--scenario", kScenario}, {}, "", std::chrono::seconds(300));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string header;
  ASSERT_TRUE(std::getline(lines, header));
  EXPECT_EQ(header.rfind("strategy", 0), 0u) << header;
  int rows = 0;
  for (std::string line; std::getline(lines, line);) ++rows;
  EXPECT_EQ(rows, 9) << r.out;  // three strategies x three providers
}

TEST(SimulateCli, BadScenarioFilesExitTwoNamingTheFileAndTheKey) {
  const std::string dir = mailer::testing::make_temp_dir("simulate-bad");
  struct Case {
    std::string name, text, expect;
  };
  for (const Case& c : std::vector<Case>{
           {"no-capacity.toml", "duration = \"60s\"\n[[provider]]\nname = \"gmail\"\n", "capacity"},
           {"no-name.toml", "[[provider]]\ncapacity = 10\n", "name"},
           {"bad-duration.toml", "duration = \"forever\"\n", "duration"},
           {"unknown-key.toml", "[[provider]]\nname = \"gmail\"\ncapacity = 10\ncolour = 1\n",
            "colour"},
           {"change-without-at.toml",
            "[[provider]]\nname = \"gmail\"\ncapacity = 10\n[[provider.change]]\ncapacity = 5\n",
            "at"},
           {"not-toml.toml", "duration = \n", "not-toml.toml:1:"}}) {
    write_file(dir + "/" + c.name, c.text);
    auto r = run_mailer({"simulate", "--scenario", dir + "/" + c.name});
    EXPECT_EQ(r.exit_code, 2) << c.name << ": " << r.err;
    EXPECT_NE(r.err.find(c.name), std::string::npos) << c.name << ": " << r.err;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.name << ": " << r.err;
    EXPECT_EQ(r.out, "") << c.name;
  }
  auto missing = run_mailer({"simulate", "--scenario", dir + "/absent.toml"});
  EXPECT_EQ(missing.exit_code, 2) << missing.err;
  EXPECT_NE(missing.err.find("absent.toml"), std::string::npos) << missing.err;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace mailer::app
