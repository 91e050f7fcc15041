// A connection that finishes a message takes the provider's next waiting
// message on the sending thread itself: the worker loop's thread may be
// busy for a while (claiming, writing outcomes) without any connection
// going idle. Real dispatcher, settings read from a configuration, and the
// rehearsal sink on loopback.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "app/config/config.h"
#include "app/worker/dispatcher_setup.h"
#include "sender/dispatcher.h"
#include "sender/throttle_state_store.h"
#include "tests/sender/sink_thread.h"
#include "tests/support/process.h"

namespace mailer::app {
namespace {

using Clock = std::chrono::steady_clock;

class NoSavedStates : public sender::ThrottleStateStore {
 public:
  std::vector<sender::ThrottleStateRow> load_states(std::string_view) override { return {}; }
  void save_state(const sender::ThrottleStateRow&) override {}
  void append_history(const std::vector<sender::ThrottleHistoryRow>&) override {}
};

std::optional<sender::CampaignContent> content(std::int64_t id) {
  sender::CampaignContent c;
  c.campaign_id = id;
  c.list_id = "1";
  c.from = "news@example.com";
  c.subject = "Hello {{first_name}}";
  c.text = "Hello";
  return c;
}

TEST(SenderHandover, AFreedConnectionTakesTheNextMessageWhileTheWorkerLoopIsBusy) {
  const std::string dir = mailer::testing::make_temp_dir("handover");
  mailer::testing::write_file(dir + "/secret", "0123456789abcdef0123456789abcdef\n");
  sender::SinkOptions o;
  o.latency = std::chrono::milliseconds(20);
  mailer::testing::SinkThread sink(std::move(o));

  // Two connections and a rate far above what they carry: the connections
  // are the limit, so every message after the first two waits for one.
  const Config c = parse_config(
      fmt::format("[sender]\nhelo_name = \"test.example.com\"\nhistory_interval = \"1h\"\n"
                  "[providers.gmail]\ninitial_rate = 2000\nmax_rate = 2000\nmax_connections = 2\n"
                  "burst = 100\n"
                  "[routes]\ngmail = \"{}\"\n"
                  "[unsubscribe]\nbase_url = \"https://mail.example.com\"\n"
                  "secret_file = \"{}/secret\"\n",
                  sink.route(), dir),
      "mailer.toml");
  // history_interval: the view's accepted count restarts at each sample.
  NoSavedStates states;
  sender::Dispatcher dispatcher(dispatcher_settings(c), states, nullptr, content);

  const int n = 60;
  std::vector<sender::ClaimedDelivery> batch;
  for (int i = 1; i <= n; ++i) {
    sender::ClaimedDelivery d;
    d.id = i;
    d.campaign_id = 7;
    d.recipient_id = i;
    d.provider = "gmail";
    d.email = fmt::format("user{}@gmail.com", i);
    batch.push_back(std::move(d));
  }
  ASSERT_GE(dispatcher.capacity("gmail"), static_cast<std::size_t>(n));
  dispatcher.submit(std::move(batch));

  // One turn of the worker loop: the first two messages go out.
  std::vector<sender::DeliveryOutcome> out;
  dispatcher.poll(std::chrono::milliseconds(0), out);
  ASSERT_EQ(dispatcher.providers().at("gmail").on_the_wire, 2u);

  // Then the worker loop is away (no poll): the rest still goes out, two at
  // a time, as each connection frees.
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (sink.counters().accepted < static_cast<std::uint64_t>(n) && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const sender::SinkCounters counted = sink.counters();
  EXPECT_EQ(counted.accepted, static_cast<std::uint64_t>(n))
      << "messages sent while the worker loop did not poll";
  EXPECT_LE(counted.connections, 2u) << "the connection limit held";

  // Back at the loop: every outcome is there, each message sent once.
  while (out.size() < static_cast<std::size_t>(n) && Clock::now() < deadline) {
    dispatcher.poll(std::chrono::milliseconds(100), out);
  }
  ASSERT_EQ(out.size(), static_cast<std::size_t>(n));
  std::vector<bool> seen(n + 1, false);
  for (const sender::DeliveryOutcome& d : out) {
    EXPECT_EQ(d.kind, sender::OutcomeKind::kSent) << d.delivery_id << ": " << d.reply;
    ASSERT_GE(d.delivery_id, 1);
    ASSERT_LE(d.delivery_id, n);
    EXPECT_FALSE(seen[d.delivery_id]) << "outcome twice for " << d.delivery_id;
    seen[d.delivery_id] = true;
  }
  const auto view = dispatcher.providers().at("gmail");
  EXPECT_EQ(view.on_the_wire, 0u);
  EXPECT_EQ(view.waiting, 0u);
  EXPECT_EQ(view.accepted, static_cast<std::uint64_t>(n));
  EXPECT_EQ(dispatcher.in_flight(), 0u);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace mailer::app
