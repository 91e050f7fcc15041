// [worker]: documented defaults, every key read, bad values named by file,
// line and key.
#include <gtest/gtest.h>

#include "app/base/errors.h"
#include "app/config/config.h"
#include "tests/support/config_error.h"

namespace mailer::app {
namespace {

using mailer::testing::config_error_of;

TEST(ConfigQueue, EmptyFileGivesDocumentedWorkerDefaults) {
  const WorkerSettings w = parse_config("", "mailer.toml").worker;
  EXPECT_EQ(w.lease, std::chrono::minutes(5));
  EXPECT_EQ(w.claim_batch, 500);
  EXPECT_EQ(w.max_leased, 5000);
  EXPECT_EQ(w.flush_interval, std::chrono::milliseconds(200));
  EXPECT_EQ(w.flush_batch, 1000);
  EXPECT_EQ(w.tick, std::chrono::seconds(1));
  EXPECT_EQ(w.past_due_warning, std::chrono::hours(1));
}

TEST(ConfigQueue, ReadsEveryWorkerKey) {
  const WorkerSettings w = parse_config(R"([worker]
lease = "30s"
claim_batch = 100
max_leased = 400
flush_interval = "50ms"
flush_batch = 250
tick = "250ms"
past_due_warning = "2d"
)",
                                        "mailer.toml")
                               .worker;
  EXPECT_EQ(w.lease, std::chrono::seconds(30));
  EXPECT_EQ(w.claim_batch, 100);
  EXPECT_EQ(w.max_leased, 400);
  EXPECT_EQ(w.flush_interval, std::chrono::milliseconds(50));
  EXPECT_EQ(w.flush_batch, 250);
  EXPECT_EQ(w.tick, std::chrono::milliseconds(250));
  EXPECT_EQ(w.past_due_warning, std::chrono::hours(48));
}

TEST(ConfigQueue, BadWorkerValuesNameFileLineAndKey) {
  EXPECT_NE(
      config_error_of("[worker]\nlease = \"soon\"\n").find("mailer.toml:2: key \"worker.lease\""),
      std::string::npos)
      << config_error_of("[worker]\nlease = \"soon\"\n");
  EXPECT_NE(config_error_of("[worker]\nclaim_batch = 0\n")
                .find("mailer.toml:2: key \"worker.claim_batch\": must be at least 1, got 0"),
            std::string::npos)
      << config_error_of("[worker]\nclaim_batch = 0\n");
  EXPECT_NE(config_error_of("[worker]\nclaim_batch = \"many\"\n").find("expected an integer"),
            std::string::npos);
  EXPECT_NE(config_error_of("[worker]\nclaim_batch = 600\nmax_leased = 500\n")
                .find("key \"worker.max_leased\": must be at least claim_batch"),
            std::string::npos);
  EXPECT_NE(config_error_of("[worker]\nlease = \"10s\"\nflush_interval = \"6s\"\n")
                .find("key \"worker.flush_interval\": must be at most half the lease"),
            std::string::npos);
  EXPECT_NE(config_error_of("[worker]\nlease = \"500ms\"\n")
                .find("key \"worker.lease\": must be at least 1s"),
            std::string::npos);
  EXPECT_NE(config_error_of("[worker]\nleese = \"5m\"\n").find("worker.leese"), std::string::npos)
      << config_error_of("[worker]\nleese = \"5m\"\n");
}

}  // namespace
}  // namespace mailer::app
