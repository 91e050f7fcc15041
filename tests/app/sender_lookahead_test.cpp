// [sender] lookahead: how much the worker claims ahead of its permits, as
// sending time at the current rate. Read from the configuration into the
// dispatcher the worker runs, whose capacity() is what the worker loop
// claims: the connection limit plus `lookahead` of messages at the
// provider's rate.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "app/config/config.h"
#include "app/worker/dispatcher_setup.h"
#include "sender/dispatcher.h"
#include "sender/throttle_state_store.h"
#include "tests/support/process.h"

namespace mailer::app {
namespace {

// Nothing saved yet: every provider starts from its configured policy.
class NoSavedStates : public sender::ThrottleStateStore {
 public:
  std::vector<sender::ThrottleStateRow> load_states(std::string_view) override { return {}; }
  void save_state(const sender::ThrottleStateRow&) override {}
  void append_history(const std::vector<sender::ThrottleHistoryRow>&) override {}
};

struct Claim {
  std::size_t first = 0;  // what capacity() asks for with nothing held
  double rate = 0;
  int connections = 0;
};

Claim claim_with(const std::string& dir, const std::string& lookahead) {
  const Config c = parse_config("[sender]\nlookahead = \"" + lookahead +
                                    "\"\n"
                                    "[providers.gmail]\ninitial_rate = 50\nmax_connections = 5\n"
                                    "[unsubscribe]\nsecret_file = \"" +
                                    dir + "/secret\"\n",
                                "mailer.toml");
  sender::DispatcherSettings settings = dispatcher_settings(c);
  NoSavedStates states;
  sender::Dispatcher dispatcher(std::move(settings), states, nullptr,
                                [](std::int64_t) { return std::nullopt; });
  Claim claim;
  claim.first = dispatcher.capacity("gmail");
  const auto view = dispatcher.providers().at("gmail");
  claim.rate = view.rate;
  claim.connections = view.connections;
  return claim;
}

TEST(SenderLookahead, ClaimsTheConnectionLimitPlusLookaheadOfSendingTime) {
  const std::string dir = mailer::testing::make_temp_dir("lookahead");
  mailer::testing::write_file(dir + "/secret", "0123456789abcdef0123456789abcdef\n");

  const Claim one = claim_with(dir, "1s");
  const Claim four = claim_with(dir, "4s");
  const Claim tenth = claim_with(dir, "100ms");
  ASSERT_GT(one.rate, 0) << "a fresh provider must have a sending rate";
  ASSERT_EQ(one.rate, four.rate);
  ASSERT_EQ(one.connections, four.connections);
  EXPECT_GT(one.connections, 0);
  EXPECT_LE(one.connections, 5) << "max_connections = 5";

  auto expected = [](const Claim& c, double seconds) {
    return static_cast<std::size_t>(c.connections) +
           static_cast<std::size_t>(std::ceil(c.rate * seconds));
  };
  EXPECT_EQ(one.first, expected(one, 1.0));
  EXPECT_EQ(four.first, expected(four, 4.0));
  EXPECT_EQ(tenth.first, expected(tenth, 0.1));
  // Four times the lookahead claims four times the sending time ahead.
  EXPECT_GT(four.first, one.first);
  EXPECT_GT(one.first, tenth.first);
  std::filesystem::remove_all(dir);
}

TEST(SenderLookahead, IsBoundedAndMustBeAtLeastATenthOfASecond) {
  EXPECT_THROW(parse_config("[sender]\nlookahead = \"50ms\"\n", "mailer.toml"), std::exception);
  EXPECT_EQ(parse_config("[sender]\nlookahead = \"7s\"\n", "mailer.toml").sender.lookahead,
            std::chrono::seconds(7));
}

}  // namespace
}  // namespace mailer::app
