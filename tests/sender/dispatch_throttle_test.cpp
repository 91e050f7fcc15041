// The adaptive throttle end to end: `mailer run` against rehearsal sinks
// standing in for Gmail, Yahoo and Outlook, each with its own capacity and
// its own deferral wording. Everything must arrive; each provider's learned
// rate must fall when that provider defers and climb again afterwards (as
// throttle_state and the throttle_history samples record it); Yahoo's
// penalty box must suspend Yahoo alone while the others keep sending; and
// deferred deliveries must be retried and counted in reply_counters.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <vector>

#include "tests/sender/dispatch_fixture.h"
#include "tests/sender/sink_thread.h"

namespace mailer::sender {
namespace {

using mailer::testing::SinkThread;

SinkOptions profile(const std::string& name, double capacity) {
  SinkOptions o;
  o.profile = *sink_profile(name);
  o.capacity = capacity;
  return o;
}

struct Sample {
  double at = 0;  // seconds since the epoch
  double rate = 0;
  int accepted = 0;
  int deferred = 0;
  std::string mode;
};

class DispatchThrottleTest : public mailer::testing::DispatchFixture {
 protected:
  DispatchThrottleTest() : DispatchFixture("dispatch_throttle") {}

  std::vector<Sample> history(const std::string& provider) {
    pqxx::connection c(t_.url());
    pqxx::work w(c);
    std::vector<Sample> out;
    for (const auto& row :
         w.exec_params("SELECT extract(epoch FROM at)::float8, rate, accepted, deferred, mode"
                       " FROM throttle_history WHERE provider = $1 ORDER BY at, id",
                       provider)) {
      out.push_back({row[0].as<double>(), row[1].as<double>(), row[2].as<int>(), row[3].as<int>(),
                     row[4].as<std::string>()});
    }
    return out;
  }

  std::int64_t replies(const std::string& provider, const std::string& signal) {
    return scalar(fmt::format(
        "SELECT coalesce(sum(count), 0) FROM reply_counters WHERE provider = '{}' AND signal = "
        "'{}'",
        provider, signal));
  }

  static std::string dump(const std::vector<Sample>& samples) {
    std::string out;
    for (const Sample& s : samples) {
      out += fmt::format("\n  {:.1f} rate {:.1f} accepted {} deferred {} {}", s.at, s.rate,
                         s.accepted, s.deferred, s.mode);
    }
    return out;
  }
};

TEST_F(DispatchThrottleTest, EachProviderSlowsDownOnItsDeferralsAndRecovers) {
  // Three providers with three limits, all below where sending starts; Yahoo
  // without its penalty box here (plain [TS02] deferrals).
  SinkThread gmail(profile("gmail", 40));
  SinkThread outlook(profile("outlook", 25));
  SinkOptions y = profile("yahoo", 20);
  y.profile.penalty_for.reset();
  SinkThread yahoo(std::move(y));
  SinkThread other(profile("generic", 0));
  configure({{"gmail", gmail.route()},
             {"outlook", outlook.route()},
             {"yahoo", yahoo.route()},
             {"other", other.route()}},
            "[providers.gmail]\ninitial_rate = 80\n"
            "[providers.outlook]\ninitial_rate = 60\n"
            "[providers.yahoo]\ninitial_rate = 50\n"
            "[providers.other]\ninitial_rate = 200\n"
            "[retry]\nmin_backoff = \"1s\"\nmax_backoff = \"2s\"\njitter = 0\n");
  // Enough that each throttled provider keeps sending for seconds after its
  // rate has been cut, so acceptances can raise it again before the run ends
  // (the worker exits as soon as the last delivery is final).
  const int per_provider = 300;
  start_campaign(4 * per_provider);
  auto run = mailer({"run", "--worker-id", "w1", "--until-idle"}, std::chrono::seconds(60));
  ASSERT_EQ(run.exit_code, 0) << run.err << unsent();

  // Everything arrived, once.
  EXPECT_EQ(count("state = 'sent'"), 4 * per_provider) << unsent();
  for (SinkThread* sink : {&gmail, &outlook, &yahoo, &other}) {
    EXPECT_EQ(sink->counters().accepted, static_cast<std::uint64_t>(per_provider));
  }

  const std::map<std::string, std::pair<SinkThread*, double>> throttled = {
      {"gmail", {&gmail, 80}}, {"outlook", {&outlook, 60}}, {"yahoo", {&yahoo, 50}}};
  for (const auto& [provider, sink_and_start] : throttled) {
    SCOPED_TRACE(provider);
    const auto& [sink, initial] = sink_and_start;
    ASSERT_GT(sink->counters().deferred["capacity"], 0u) << "no deferrals: the test proves nothing";
    // Deferred deliveries were retried and the deferrals counted.
    EXPECT_GT(count(fmt::format("provider = '{}' AND attempts > 1", provider)), 0);
    EXPECT_GT(replies(provider, "throttle"), 0);
    EXPECT_EQ(replies(provider, "accepted"), per_provider);

    // The rate fell below where it started after deferrals, and a later
    // sample is higher than that low point again (the last samples may show
    // a new cut: the sawtooth goes on until the end).
    const auto samples = history(provider);
    ASSERT_GE(samples.size(), 2u) << dump(samples);
    bool fell = false, recovered = false;
    int deferred_so_far = 0;
    for (std::size_t i = 0; i < samples.size(); ++i) {
      deferred_so_far += samples[i].deferred;
      if (samples[i].rate >= initial || deferred_so_far == 0) continue;
      fell = true;
      for (std::size_t j = i + 1; j < samples.size(); ++j) {
        recovered = recovered || samples[j].rate > samples[i].rate;
      }
    }
    EXPECT_TRUE(fell) << dump(samples);
    EXPECT_TRUE(recovered) << dump(samples);
    EXPECT_LT(scalar(fmt::format("SELECT floor(rate)::bigint FROM throttle_state"
                                 " WHERE provider = '{}'",
                                 provider)),
              static_cast<std::int64_t>(initial));
  }
  // The unlimited provider was never deferred.
  EXPECT_EQ(count("provider LIKE 'other%' AND attempts > 1"), 0) << unsent();
}

TEST_F(DispatchThrottleTest, YahooPenaltyBoxSuspendsOnlyYahoo) {
  // Yahoo takes 10 messages/s and, above that, puts the sender in its
  // penalty box for 2 s ([TSS04] at every MAIL); the others take all.
  SinkOptions y = profile("yahoo", 10);
  y.profile.penalty_for = std::chrono::seconds(2);
  SinkThread yahoo(std::move(y));
  SinkThread gmail(profile("gmail", 0));
  SinkThread outlook(profile("outlook", 0));
  SinkThread other(profile("generic", 0));
  configure({{"gmail", gmail.route()},
             {"outlook", outlook.route()},
             {"yahoo", yahoo.route()},
             {"other", other.route()}},
            // The others send slowly enough to be busy through Yahoo's
            // suspension.
            "[providers.yahoo]\ninitial_rate = 40\nsuspend_for = \"3s\"\n"
            "[providers.gmail]\ninitial_rate = 8\nmax_rate = 8\n"
            "[providers.outlook]\ninitial_rate = 8\nmax_rate = 8\n"
            "[providers.other]\ninitial_rate = 8\nmax_rate = 8\n"
            "[retry]\nmin_backoff = \"1s\"\nmax_backoff = \"2s\"\njitter = 0\n");
  const int per_provider = 60;
  start_campaign(4 * per_provider);
  start_worker();

  // Catch Yahoo suspended, then watch what is sent meanwhile.
  ASSERT_TRUE(wait_for(
      [&] {
        return scalar(
                   "SELECT count(*) FROM throttle_state WHERE provider = 'yahoo' AND"
                   " mode = 'suspended' AND suspended_until > now() + interval '1.5 s'") > 0;
      },
      std::chrono::seconds(20)))
      << worker_log();
  EXPECT_EQ(scalar("SELECT count(*) FROM throttle_state WHERE mode = 'suspended' AND"
                   " provider <> 'yahoo'"),
            0);
  const auto yahoo_before = count("provider = 'yahoo' AND state = 'sent'");
  const auto others_before = count("provider <> 'yahoo' AND state = 'sent'");
  // The others go on (8/s each): wait until they have sent 10 more. Replies
  // to messages already past MAIL may still come in; nothing new goes to
  // Yahoo meanwhile, and Yahoo is still suspended after that count was taken,
  // so it was taken within the suspension.
  EXPECT_TRUE(wait_for(
      [&] { return count("provider <> 'yahoo' AND state = 'sent'") - others_before >= 10; },
      std::chrono::seconds(20)))
      << worker_log();
  const auto yahoo_during = count("provider = 'yahoo' AND state = 'sent'");
  EXPECT_GE(scalar("SELECT count(*) FROM throttle_state WHERE provider = 'yahoo' AND"
                   " mode = 'suspended' AND suspended_until > now()"),
            1)
      << "Yahoo's suspension ended before the others sent 10: " << worker_log();
  EXPECT_LE(yahoo_during - yahoo_before, 2) << worker_log();

  ASSERT_TRUE(wait_for([&] { return count("state = 'sent'") == 4 * per_provider; },
                       std::chrono::seconds(40)))
      << unsent() << worker_log();
  EXPECT_EQ(stop_worker(), 0);

  // Everything arrived; Yahoo's deliveries that met the box were retried.
  EXPECT_EQ(yahoo.counters().accepted, static_cast<std::uint64_t>(per_provider));
  EXPECT_GT(yahoo.counters().deferred["penalty_box"], 0u);
  EXPECT_GT(count("provider = 'yahoo' AND attempts > 1"), 0);
  EXPECT_EQ(count("provider <> 'yahoo' AND attempts > 1"), 0) << unsent();
  // Counted: Yahoo's suspend signals, nobody else's.
  EXPECT_GT(replies("yahoo", "suspend"), 0);
  EXPECT_EQ(scalar("SELECT coalesce(sum(count), 0) FROM reply_counters WHERE signal IN"
                   " ('suspend', 'throttle') AND provider <> 'yahoo'"),
            0);
  // The history shows Yahoo suspended and back to normal, and no one else
  // ever suspended.
  const auto samples = history("yahoo");
  bool suspended = false, resumed = false;
  for (const Sample& s : samples) {
    if (s.mode == "suspended") suspended = true;
    if (suspended && s.mode != "suspended") resumed = true;
  }
  EXPECT_TRUE(suspended) << dump(samples);
  EXPECT_TRUE(resumed) << dump(samples);
  EXPECT_EQ(scalar("SELECT count(*) FROM throttle_history WHERE mode = 'suspended' AND"
                   " provider <> 'yahoo'"),
            0);
}

}  // namespace
}  // namespace mailer::sender
