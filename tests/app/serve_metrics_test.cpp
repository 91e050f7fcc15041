// /metrics and /healthz against a real PostgreSQL: the page parses as the
// Prometheus text format, every family is announced once, and the values are
// the database's; health follows the database.
#include <gtest/gtest.h>

#include <regex>
#include <set>
#include <sstream>

#include "app/db/delivery_queue.h"
#include "app/db/reply_counters.h"
#include "app/metrics/metrics_exposition.h"
#include "tests/app/serve_support.h"
#include "tests/support/pg_fixture.h"

namespace mailer::app {
namespace {

using mailer::testing::http_call;

// "name{labels}" -> value, after checking every line of `text` against the
// exposition format: comments are HELP or TYPE, announced once per family
// and before its samples; samples have a known family and a number.
std::map<std::string, double> parse_exposition(const std::string& text) {
  static const std::regex help(R"(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+)");
  static const std::regex type(R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge))");
  static const std::regex sample(
      R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*",?)*\})? )"
      R"(([-+]?[0-9.eE+-]+|NaN|[+-]Inf))");
  std::map<std::string, double> samples;
  std::set<std::string> helped, typed;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_match(line, m, help)) {
      EXPECT_TRUE(helped.insert(m[1]).second) << "HELP twice: " << line;
    } else if (std::regex_match(line, m, type)) {
      EXPECT_TRUE(typed.insert(m[1]).second) << "TYPE twice: " << line;
      EXPECT_TRUE(helped.count(m[1])) << "TYPE before HELP: " << line;
    } else if (std::regex_match(line, m, sample)) {
      EXPECT_TRUE(typed.count(m[1])) << "sample of an unannounced family: " << line;
      const auto space = line.rfind(' ');
      samples[line.substr(0, space)] = std::stod(line.substr(space + 1));
    } else {
      ADD_FAILURE() << "not exposition format: " << line;
    }
  }
  return samples;
}

class ServeMetricsTest : public ::testing::Test {
 protected:
  ServeMetricsTest() : db_(db::DatabaseOptions{t_.url()}), queue_(db_) {}

  mailer::testing::TestDatabase t_{"serve_metrics"};
  db::Database db_;
  db::DeliveryQueue queue_;
  mailer::testing::InProcessServe serve_{t_.url()};
};

TEST_F(ServeMetricsTest, MetricsParseAndCarryTheDatabaseValues) {
  // A running campaign over 8 recipients: 2 per provider (gmail, outlook,
  // yahoo, other:example.org); one gmail delivery claimed (in flight).
  const auto list = mailer::testing::seed_list(t_.url(), "news", 8);
  const auto campaign = mailer::testing::seed_campaign(t_.url(), list, "running");
  mailer::testing::exec_sql(t_.url(),
                            fmt::format("UPDATE campaigns SET name = 'Spring \"sale\"\\ 2026\n' "
                                        "WHERE id = {}",
                                        campaign));
  queue_.freeze_audience(campaign, [](std::string_view d) { return "other:" + std::string(d); });
  ASSERT_EQ(queue_.claim("gmail", "w1", 1, std::chrono::minutes(1)).size(), 1u);

  db::ThrottleStateRow gmail;
  gmail.provider = "gmail";
  gmail.egress = "ip-1";
  gmail.rate = 12.5;
  gmail.connection_limit = 4;
  gmail.mode = "backoff";
  queue_.save_throttle_state(gmail);
  db::ThrottleStateRow yahoo = gmail;
  yahoo.provider = "yahoo";
  yahoo.rate = 1;
  yahoo.mode = "suspended";
  yahoo.suspended_until = std::chrono::system_clock::time_point(std::chrono::seconds(2000000000));
  queue_.save_throttle_state(yahoo);
  db::ReplyCounters(db_).add({{"gmail", "ip-1", "accepted", 120},
                              {"gmail", "ip-1", "throttle", 7},
                              {"gmail", "ip-1", "recipient_tempfail", 2},
                              {"gmail", "ip-1", "hard_bounce", 3}});

  const auto reply = http_call(serve_.admin_port(), "GET", "/metrics");
  ASSERT_EQ(reply.status, 200);
  EXPECT_EQ(reply.headers.at("content-type"), kPrometheusContentType);
  const auto m = parse_exposition(reply.body);

  EXPECT_EQ(m.at(R"(mailer_provider_rate{provider="gmail",egress="ip-1"})"), 12.5);
  EXPECT_EQ(m.at(R"(mailer_provider_connection_limit{provider="gmail",egress="ip-1"})"), 4);
  EXPECT_EQ(m.at(R"(mailer_provider_state{provider="gmail",egress="ip-1",state="backoff"})"), 1);
  EXPECT_EQ(m.at(R"(mailer_provider_state{provider="gmail",egress="ip-1",state="normal"})"), 0);
  EXPECT_EQ(m.at(R"(mailer_provider_state{provider="yahoo",egress="ip-1",state="suspended"})"), 1);
  EXPECT_EQ(m.at(R"(mailer_provider_suspended_until_seconds{provider="yahoo",egress="ip-1"})"),
            2e9);
  EXPECT_EQ(m.at(R"(mailer_provider_in_flight{provider="gmail"})"), 1);
  EXPECT_EQ(m.at(R"(mailer_provider_queue_depth{provider="gmail"})"), 1);
  EXPECT_EQ(m.at(R"(mailer_provider_queue_depth{provider="other:example.org"})"), 2);
  EXPECT_EQ(m.at(R"(mailer_accepted_total{provider="gmail",egress="ip-1"})"), 120);
  EXPECT_EQ(m.at(R"(mailer_deferred_total{provider="gmail",egress="ip-1",signal="throttle"})"), 7);
  EXPECT_EQ(
      m.at(R"(mailer_deferred_total{provider="gmail",egress="ip-1",signal="recipient_tempfail"})"),
      2);
  EXPECT_EQ(m.count(R"(mailer_deferred_total{provider="gmail",egress="ip-1",signal="accepted"})"),
            0u);
  EXPECT_EQ(m.at(R"(mailer_bounced_total{provider="gmail",egress="ip-1"})"), 3);
  EXPECT_EQ(m.at(R"(mailer_replies_total{provider="gmail",egress="ip-1",signal="hard_bounce"})"),
            3);
  // The campaign's name, escaped: quote, backslash and line feed.
  const std::string labels =
      fmt::format(R"(campaign_id="{}",campaign="Spring \"sale\"\\ 2026\n")", campaign);
  EXPECT_EQ(m.at("mailer_campaign_deliveries{" + labels + R"(,state="queued"})"), 7);
  EXPECT_EQ(m.at("mailer_campaign_deliveries{" + labels + R"(,state="sending"})"), 1);
  EXPECT_EQ(m.at("mailer_campaign_deliveries{" + labels + R"(,state="sent"})"), 0);
  EXPECT_EQ(m.at("mailer_campaign_info{" + labels + R"(,status="running"})"), 1);
  EXPECT_EQ(m.at("mailer_campaign_progress_ratio{" + labels + "}"), 0);
}

TEST_F(ServeMetricsTest, EmptyDatabaseGivesAnnouncedFamiliesAndOnlyZeroFeedbackCounters) {
  const auto reply = http_call(serve_.admin_port(), "GET", "/metrics");
  ASSERT_EQ(reply.status, 200);
  // The feedback counters exist from the start (so that rate() sees the
  // first report); nothing else has a sample.
  const auto m = parse_exposition(reply.body);
  EXPECT_EQ(m.size(), 5u);
  for (const char* kind : {"hard", "soft", "complaint", "auto_reply", "unmatched"}) {
    EXPECT_EQ(m.at(fmt::format(R"(mailer_feedback_total{{kind="{}"}})", kind)), 0) << kind;
  }
  EXPECT_NE(reply.body.find("# TYPE mailer_accepted_total counter"), std::string::npos);
  EXPECT_NE(reply.body.find("# TYPE mailer_feedback_total counter"), std::string::npos);
}

// A campaign of 8 sent deliveries and what came back about it: 2 hard
// bounces, 1 soft, 1 complaint, 1 auto-reply; and one report that matched
// no delivery.
void seed_feedback(const std::string& url, std::int64_t campaign) {
  mailer::testing::exec_sql(
      url, fmt::format("INSERT INTO deliveries (campaign_id, recipient_id, provider, state, "
                       "attempts, sent_at) SELECT {}, recipient_id, 'gmail', 'sent', 1, now() "
                       "FROM list_members",
                       campaign));
  mailer::testing::exec_sql(
      url, fmt::format("INSERT INTO feedback_reports (message_key, recipient, kind, "
                       "reported_kind, campaign_id) VALUES "
                       "('m1', 'a', 'hard', 'hard', {0}), ('m2', 'b', 'hard', 'hard', {0}), "
                       "('m3', 'c', 'soft', 'soft', {0}), ('m4', 'd', 'complaint', "
                       "'complaint', {0}), ('m5', 'e', 'auto_reply', 'auto_reply', {0}), "
                       "('m6', 'f', 'unmatched', 'hard', NULL)",
                       campaign));
}

TEST_F(ServeMetricsTest, MetricsCountFeedbackByKindAndGaugeEachCampaignsRates) {
  const auto list = mailer::testing::seed_list(t_.url(), "news", 8);
  const auto campaign = mailer::testing::seed_campaign(t_.url(), list, "running");
  seed_feedback(t_.url(), campaign);

  const auto reply = http_call(serve_.admin_port(), "GET", "/metrics");
  ASSERT_EQ(reply.status, 200);
  const auto m = parse_exposition(reply.body);
  EXPECT_EQ(m.at(R"(mailer_feedback_total{kind="hard"})"), 2);
  EXPECT_EQ(m.at(R"(mailer_feedback_total{kind="soft"})"), 1);
  EXPECT_EQ(m.at(R"(mailer_feedback_total{kind="complaint"})"), 1);
  EXPECT_EQ(m.at(R"(mailer_feedback_total{kind="auto_reply"})"), 1);
  EXPECT_EQ(m.at(R"(mailer_feedback_total{kind="unmatched"})"), 1);
  const std::string labels = fmt::format(R"(campaign_id="{}",campaign="test")", campaign);
  EXPECT_EQ(m.at("mailer_campaign_bounce_rate{" + labels + "}"), 0.25) << reply.body;
  EXPECT_EQ(m.at("mailer_campaign_complaint_rate{" + labels + "}"), 0.125) << reply.body;
}

TEST_F(ServeMetricsTest, HealthzAnswersOkWhileTheDatabaseAnswers) {
  const auto reply = http_call(serve_.port(), "GET", "/healthz");
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.body, "ok\n");
}

TEST_F(ServeMetricsTest, DashboardServesEveryRangeWithCampaignProgressAndAStrictPolicy) {
  const auto list = mailer::testing::seed_list(t_.url(), "news", 4);
  mailer::testing::seed_campaign(t_.url(), list, "running");
  mailer::testing::exec_sql(t_.url(),
                            "INSERT INTO throttle_history (provider, egress, rate) VALUES "
                            "('gmail', 'default', 20)");
  for (const char* range : {"", "?range=15m", "?range=6h", "?range=24h", "?range=7d"}) {
    const auto reply = http_call(serve_.admin_port(), "GET", std::string("/") + range);
    ASSERT_EQ(reply.status, 200) << range;
    EXPECT_NE(reply.headers.at("content-security-policy").find("default-src 'none'"),
              std::string::npos);
    EXPECT_NE(reply.body.find("<progress value=\"0\" max=\"1\">"), std::string::npos) << range;
    EXPECT_NE(reply.body.find("data-provider=\"gmail\""), std::string::npos) << range;
    EXPECT_NE(reply.body.find("<polyline class=\"rate\""), std::string::npos) << range;
  }
}

TEST_F(ServeMetricsTest, DashboardShowsEachCampaignsBouncesAndComplaintsWithTheirRates) {
  const auto list = mailer::testing::seed_list(t_.url(), "news", 8);
  const auto campaign = mailer::testing::seed_campaign(t_.url(), list, "running");
  seed_feedback(t_.url(), campaign);
  const auto reply = http_call(serve_.admin_port(), "GET", "/");
  ASSERT_EQ(reply.status, 200);
  for (const char* header : {"<th>hard bounces</th>", "<th>soft bounces</th>",
                             "<th>complaints</th>", "<th>auto-replies</th>"}) {
    EXPECT_NE(reply.body.find(header), std::string::npos) << header;
  }
  const std::string row = fmt::format("data-campaign-id=\"{}\"", campaign);
  const auto at = reply.body.find(row);
  ASSERT_NE(at, std::string::npos) << reply.body;
  const std::string tr = reply.body.substr(at, reply.body.find("</tr>", at) - at);
  EXPECT_NE(tr.find("<td class=\"n feedback-hard\">2 <span class=\"muted\">(25.00%)</span>"),
            std::string::npos)
      << tr;
  EXPECT_NE(tr.find("<td class=\"n feedback-soft\">1 <span class=\"muted\">(12.50%)</span>"),
            std::string::npos)
      << tr;
  EXPECT_NE(tr.find("<td class=\"n feedback-complaint\">1 <span class=\"muted\">(12.50%)</span>"),
            std::string::npos)
      << tr;
  EXPECT_NE(tr.find("<td class=\"n feedback-auto_reply\">1 <span class=\"muted\">(12.50%)</span>"),
            std::string::npos)
      << tr;
}

TEST(ServeHealth, HealthzAnswers503WhenTheDatabaseIsUnreachable) {
  const auto port = mailer::testing::closed_loopback_port();
  mailer::testing::InProcessServe serve(
      fmt::format("postgresql://mailer@127.0.0.1:{}/mailer?connect_timeout=2", port));
  for (const char* path : {"/healthz", "/metrics", "/"}) {
    const auto reply = http_call(serve.admin_port(), "GET", path);
    EXPECT_EQ(reply.status, 503) << path;
    EXPECT_EQ(reply.body.find("127.0.0.1"), std::string::npos) << "no details leak: " << path;
  }
}

TEST(PrometheusText, EscapesLabelValuesAndHelpAndSpellsSpecialValues) {
  EXPECT_EQ(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  EXPECT_EQ(escape_help_text("a\\b\nc\"d"), "a\\\\b\\nc\"d");
  EXPECT_EQ(format_sample_value(0.25), "0.25");
  EXPECT_EQ(format_sample_value(3), "3");
  EXPECT_EQ(format_sample_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(format_sample_value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(format_sample_value(std::nan("")), "NaN");
}

}  // namespace
}  // namespace mailer::app
