#include "app/config/config_throttle.h"

#include <gtest/gtest.h>

#include "app/base/errors.h"

namespace mailer::app {
namespace {

namespace th = mailer::throttle;
using std::chrono::minutes;
using std::chrono::seconds;

ThrottleSettings read(const std::string& text) {
  toml::table root = toml::parse(text, std::string_view("mailer.toml"));
  ConfigReader r(&root, "mailer.toml", "");
  return read_throttle_settings(r);
}

std::string error_of(const std::string& text) {
  try {
    read(text);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ConfigThrottle, DefaultsAreThePolicyDefaults) {
  ThrottleSettings s = read("");
  for (const char* name : {"gmail", "outlook", "yahoo", "other"}) {
    ASSERT_EQ(s.providers.count(name), 1u) << name;
    EXPECT_DOUBLE_EQ(s.providers.at(name).decrease_factor, th::ProviderPolicy{}.decrease_factor);
  }
  EXPECT_EQ(s.retry.max_age, std::chrono::hours(72));
  EXPECT_TRUE(s.retry_by_signal.empty());
  EXPECT_TRUE(s.reply_rules.empty());
}

TEST(ConfigThrottle, ReadsEveryProviderKnob) {
  th::ProviderPolicy p = read(R"(
[providers.gmail]
initial_rate = 30
min_rate = 2
max_rate = 500
max_connections = 8
suspend_for = "90m"
increase_step = 3
decrease_factor = 0.7
reaction_window = "2s"
slow_start_growth = 0.5
slow_start_threshold = 200
restart_factor = 0.25
auth_pause = "20m"
block_pause = "12h"
connection_recovery = "10m"
burst = 2
)")
                             .providers.at("gmail");
  EXPECT_DOUBLE_EQ(p.initial_rate, 30);
  EXPECT_DOUBLE_EQ(p.min_rate, 2);
  EXPECT_DOUBLE_EQ(p.max_rate, 500);
  EXPECT_EQ(p.max_connections, 8);
  EXPECT_EQ(p.suspend_for, minutes(90));
  EXPECT_DOUBLE_EQ(p.increase_step, 3);
  EXPECT_DOUBLE_EQ(p.decrease_factor, 0.7);
  EXPECT_EQ(p.reaction_window, seconds(2));
  EXPECT_DOUBLE_EQ(p.slow_start_growth, 0.5);
  EXPECT_DOUBLE_EQ(p.slow_start_threshold, 200);
  EXPECT_DOUBLE_EQ(p.restart_factor, 0.25);
  EXPECT_EQ(p.auth_pause, minutes(20));
  EXPECT_EQ(p.block_pause, std::chrono::hours(12));
  EXPECT_EQ(p.connection_recovery, minutes(10));
  EXPECT_DOUBLE_EQ(p.burst, 2);
}

TEST(ConfigThrottle, EveryBadProviderKnobNamesItsKey) {
  struct Case {
    const char* body;
    const char* error;
  };
  const Case cases[] = {
      {"min_rate = 0", "key \"providers.gmail.min_rate\": must be greater than 0"},
      {"max_rate = -1", "key \"providers.gmail.max_rate\": must be greater than 0"},
      {"min_rate = 10\nmax_rate = 5", "key \"providers.gmail.max_rate\": must be >= min_rate (10)"},
      {"initial_rate = 5000",
       "key \"providers.gmail.initial_rate\": must lie between min_rate (1) and max_rate (2000)"},
      {"max_connections = 0", "key \"providers.gmail.max_connections\": must be at least 1"},
      {"suspend_for = \"0s\"", "key \"providers.gmail.suspend_for\": must be greater than 0"},
      {"increase_step = 0", "key \"providers.gmail.increase_step\": must be greater than 0"},
      {"decrease_factor = 1",
       "key \"providers.gmail.decrease_factor\": must lie strictly between 0 and 1"},
      {"reaction_window = \"0ms\"",
       "key \"providers.gmail.reaction_window\": must be greater than 0"},
      {"slow_start_growth = -1", "key \"providers.gmail.slow_start_growth\": must be >= 0"},
      {"slow_start_threshold = -1",
       "key \"providers.gmail.slow_start_threshold\": must be >= 0 (0 means max_rate)"},
      {"restart_factor = 2", "key \"providers.gmail.restart_factor\": must lie in (0, 1]"},
      {"connection_recovery = \"0s\"",
       "key \"providers.gmail.connection_recovery\": must be greater than 0"},
      {"burst = 0.5", "key \"providers.gmail.burst\": must be at least 1"},
      {"auth_pause = 5", "key \"providers.gmail.auth_pause\": expected a duration string"},
      {"block_pause = \"forever\"",
       "key \"providers.gmail.block_pause\": expected a duration like"},
      {"decrease_factor = \"half\"",
       "key \"providers.gmail.decrease_factor\": expected a number, got a string"},
      {"speed = 3", "unknown key \"providers.gmail.speed\""},
  };
  for (const Case& c : cases) {
    std::string error = error_of(std::string("[providers.gmail]\n") + c.body + "\n");
    EXPECT_NE(error.find(c.error), std::string::npos) << c.body << " -> " << error;
    EXPECT_EQ(error.rfind("mailer.toml:", 0), 0u) << error;
  }
}

TEST(ConfigThrottle, ReadsRetryKnobsAndPerSignalSchedules) {
  ThrottleSettings s = read(R"(
[retry]
min_backoff = "1m"
max_backoff = "2h"
max_age = "1d"
multiplier = 3
jitter = 0.1
[retry.recipient_tempfail]
min_backoff = "30s"
)");
  EXPECT_EQ(s.retry.min_backoff, minutes(1));
  EXPECT_EQ(s.retry.max_backoff, std::chrono::hours(2));
  EXPECT_EQ(s.retry.max_age, std::chrono::hours(24));
  EXPECT_DOUBLE_EQ(s.retry.multiplier, 3);
  EXPECT_DOUBLE_EQ(s.retry.jitter, 0.1);
  const th::RetryPolicy& r = s.retry_by_signal.at(th::Signal::kRecipientTempfail);
  EXPECT_EQ(r.min_backoff, seconds(30));
  EXPECT_EQ(r.max_backoff, std::chrono::hours(2));  // inherited from [retry]
}

TEST(ConfigThrottle, EveryBadRetryKnobNamesItsKey) {
  struct Case {
    const char* text;
    const char* error;
  };
  const Case cases[] = {
      {"[retry]\nmin_backoff = \"0s\"", "key \"retry.min_backoff\": must be greater than 0"},
      {"[retry]\nmax_backoff = \"1m\"", "key \"retry.max_backoff\": must be >= min_backoff"},
      {"[retry]\nmax_age = \"0s\"", "key \"retry.max_age\": must be greater than 0"},
      {"[retry]\nmultiplier = 0.5", "key \"retry.multiplier\": must be at least 1"},
      {"[retry]\njitter = 1", "key \"retry.jitter\": must lie in [0, 1)"},
      {"[retry.throttle]\nmax_backoff = \"1m\"",
       "key \"retry.throttle.max_backoff\": must be >= min_backoff"},
      {"[retry.sometimes]\nmin_backoff = \"1m\"", "unknown key \"retry.sometimes\""},
  };
  for (const Case& c : cases) {
    std::string error = error_of(std::string(c.text) + "\n");
    EXPECT_NE(error.find(c.error), std::string::npos) << c.text << " -> " << error;
  }
}

TEST(ConfigThrottle, ReadsOperatorRules) {
  ThrottleSettings s = read(R"(
[[reply_rule]]
pattern = "[TS02]"
signal = "suspend"
suspend_for = "30m"
provider = "yahoo"
[[provider_rule]]
mx = "mimecast.com"
provider = "mimecast"
[providers.mimecast]
max_rate = 50
)");
  ASSERT_EQ(s.reply_rules.size(), 1u);
  EXPECT_EQ(s.reply_rules[0].signal, th::Signal::kSuspend);
  EXPECT_EQ(s.reply_rules[0].suspend_for, th::Duration(minutes(30)));
  EXPECT_EQ(s.reply_rules[0].provider, "yahoo");
  ASSERT_EQ(s.provider_rules.size(), 1u);
  EXPECT_EQ(s.provider_rules[0].target, th::ProviderRule::Target::kMx);
  EXPECT_DOUBLE_EQ(s.providers.at("mimecast").max_rate, 50);
  th::ProviderClassifier classifier(s.provider_rules);
  EXPECT_EQ(classifier.classify("example.org", "eu1.mimecast.com"), "mimecast");
}

TEST(ConfigThrottle, BadOperatorRulesNameTheirKey) {
  struct Case {
    const char* text;
    const char* error;
  };
  const Case cases[] = {
      {"[[reply_rule]]\nsignal = \"throttle\"", "key \"reply_rule[0].pattern\": is required"},
      {"[[reply_rule]]\npattern = \"x\"\nsignal = \"slow\"",
       "key \"reply_rule[0].signal\": expected one of accepted, throttle"},
      {"[[reply_rule]]\npattern = \"x\"\nsignal = \"throttle\"\nsuspend_for = \"1h\"",
       "key \"reply_rule[0].suspend_for\": suspend_for is only meaningful with signal"},
      {"[[provider_rule]]\nprovider = \"x\"",
       "key \"provider_rule[0].domain\": give exactly one of domain or mx"},
      {"[[provider_rule]]\nmx = \"*.x.com\"\nprovider = \"x\"",
       "key \"provider_rule[0].mx\": an MX pattern is a host name suffix"},
      {"[[provider_rule]]\ndomain = \"x.com\"\nprovider = \"Big X\"",
       "key \"provider_rule[0].provider\": provider name may hold only"},
      {"[providers.hotmail]\n", "key \"providers.hotmail\": unknown provider"},
  };
  for (const Case& c : cases) {
    std::string error = error_of(std::string(c.text) + "\n");
    EXPECT_NE(error.find(c.error), std::string::npos) << c.text << " -> " << error;
  }
}

}  // namespace
}  // namespace mailer::app
