// The open-file limit the long-running commands raise before opening their
// connections.
#include "app/base/fd_limit.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

namespace mailer::app {
namespace {

class FdLimitTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved_), 0); }
  void TearDown() override { setrlimit(RLIMIT_NOFILE, &saved_); }
  struct rlimit saved_ {};
};

TEST_F(FdLimitTest, RaisesALowSoftLimitToTheHardLimit) {
  ASSERT_TRUE(saved_.rlim_max == RLIM_INFINITY || saved_.rlim_max > 64)
      << "a hard limit of " << saved_.rlim_max << " leaves nothing to raise";
  struct rlimit low = saved_;
  low.rlim_cur = 64;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);

  const FdLimit l = raise_open_file_limit(1u << 20);
  EXPECT_EQ(l.before, 64u);
  const std::uint64_t hard = saved_.rlim_max == RLIM_INFINITY
                                 ? (1u << 20)
                                 : std::min<std::uint64_t>(saved_.rlim_max, 1u << 20);
  EXPECT_EQ(l.after, hard);
  struct rlimit now {};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &now), 0);
  EXPECT_EQ(static_cast<std::uint64_t>(now.rlim_cur), hard);
}

TEST_F(FdLimitTest, NeverLowersTheLimitAndHonoursTheCap) {
  struct rlimit low = saved_;
  low.rlim_cur = 100;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  // A cap below the current soft limit changes nothing.
  FdLimit l = raise_open_file_limit(50);
  EXPECT_EQ(l.before, 100u);
  EXPECT_EQ(l.after, 100u);
  if (saved_.rlim_max == RLIM_INFINITY || saved_.rlim_max >= 120) {
    l = raise_open_file_limit(120);
    EXPECT_EQ(l.after, 120u);
    struct rlimit now {};
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &now), 0);
    EXPECT_EQ(now.rlim_cur, 120u);
  }
}

}  // namespace
}  // namespace mailer::app
