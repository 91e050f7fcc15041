// The dashboard: the SVG chart drawn from throttle history (unit tests of
// the renderer), and the page as a real browser sees it: `mailer serve` with
// seeded history, loaded by headless Chromium, whose DOM must hold one chart
// per provider with its rate line; a screenshot is saved in the test output.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "app/http/dashboard_chart.h"
#include "app/http/dashboard_page.h"
#include "tests/app/serve_support.h"
#include "tests/support/pg_fixture.h"

namespace mailer::app {
namespace {

using namespace std::chrono_literals;

constexpr const char* kChromium = "/usr/bin/chromium";

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) ++n;
  return n;
}

HistorySeries sawtooth(const std::string& provider, db::SysTime from, int buckets) {
  HistorySeries s{provider, "default", {}};
  for (int i = 0; i < buckets; ++i) {
    HistoryPoint p;
    p.at = from + i * 15s;
    p.rate = 10 + (i % 20);
    p.accepted = static_cast<std::int64_t>(p.rate * 15);
    p.deferred = i % 20 == 19 ? 4 : 0;
    p.mode = i % 20 == 19 ? "backoff" : "normal";
    s.points.push_back(p);
  }
  return s;
}

TEST(DashboardChart, DrawsTheRateLineDeferralBarsAndModeBands) {
  const db::SysTime from{std::chrono::hours(500000)};
  const auto svg = render_throttle_chart(sawtooth("gmail", from, 240), from, from + 1h, 15s);
  EXPECT_EQ(svg.rfind("<svg class=\"throttle-chart\"", 0), 0u);
  EXPECT_EQ(count_of(svg, "<polyline class=\"rate\""), 1u) << "no gap: one line";
  EXPECT_EQ(count_of(svg, "<polyline class=\"accepted\""), 1u);
  EXPECT_EQ(count_of(svg, "<rect class=\"deferred\""), 12u);
  EXPECT_EQ(count_of(svg, "<rect class=\"mode-backoff\""), 12u);
  // Every coordinate stays inside the drawing.
  const std::regex point(R"((\d+\.\d),(\d+\.\d))");
  for (std::sregex_iterator it(svg.begin(), svg.end(), point), end; it != end; ++it) {
    EXPECT_LE(std::stod((*it)[1]), 720);
    EXPECT_LE(std::stod((*it)[2]), 220);
  }
}

TEST(DashboardChart, BreaksTheLineWhereSamplesAreMissingAndSaysWhenThereAreNone) {
  const db::SysTime from{std::chrono::hours(500000)};
  auto s = sawtooth("gmail", from, 240);
  s.points.erase(s.points.begin() + 100, s.points.begin() + 140);
  EXPECT_EQ(count_of(render_throttle_chart(s, from, from + 1h, 15s), "<polyline class=\"rate\""),
            2u);
  const auto empty = render_throttle_chart({"gmail", "default", {}}, from, from + 1h, 15s);
  EXPECT_EQ(count_of(empty, "<polyline"), 0u);
  EXPECT_NE(empty.find("no samples"), std::string::npos);
}

TEST(DashboardChart, EscapesNamesFromTheDatabase) {
  const db::SysTime from{std::chrono::hours(500000)};
  const auto svg =
      render_throttle_chart(sawtooth("other:<script>x\"y", from, 3), from, from + 1h, 15s);
  EXPECT_EQ(svg.find("<script>"), std::string::npos);
  EXPECT_NE(svg.find("other:&lt;script&gt;x&quot;y"), std::string::npos);
  DashboardView v;
  v.snapshot.campaigns.push_back(
      {1, "<img src=x onerror=alert(1)>", "running", {{"queued", 1}}, {}});
  const auto page = render_dashboard(v);
  EXPECT_EQ(page.find("<img"), std::string::npos);
  EXPECT_EQ(page.find("<script"), std::string::npos) << "the page runs no script";
  EXPECT_EQ(page.find("http://"), page.find("http://www.w3.org/2000/svg")) << "nothing external";
}

TEST(DashboardChart, NiceAxisMaximaAreOneTwoOrFiveTimesAPowerOfTen) {
  EXPECT_EQ(nice_axis_max(0), 1);
  EXPECT_EQ(nice_axis_max(7), 10);
  EXPECT_EQ(nice_axis_max(10), 10);
  EXPECT_EQ(nice_axis_max(11), 20);
  EXPECT_EQ(nice_axis_max(0.3), 0.5);
  EXPECT_EQ(nice_axis_max(2001), 5000);
}

class ServeDashboardTest : public ::testing::Test {
 protected:
  ServeDashboardTest() {
    // Ten minutes of per-second samples for two providers: an AIMD
    // sawtooth with deferrals at each drop; a third provider's name tries
    // to inject markup.
    mailer::testing::exec_sql(
        t_.url(),
        "INSERT INTO throttle_history (provider, egress, at, rate, accepted, deferred, mode)"
        " SELECT p, 'default', now() - i * interval '1 second',"
        "  5 + ((600 - i) % 120) * 0.5, (4 + ((600 - i) % 120) * 0.4)::int,"
        "  CASE WHEN (600 - i) % 120 = 0 THEN 3 ELSE 0 END,"
        "  CASE WHEN (600 - i) % 120 < 5 THEN 'backoff' ELSE 'normal' END"
        " FROM generate_series(0, 599) i,"
        "  unnest(ARRAY['gmail', 'yahoo', 'other:<b>evil</b>']) p");
    const auto list = mailer::testing::seed_list(t_.url(), "news", 20);
    const auto campaign = mailer::testing::seed_campaign(t_.url(), list, "running");
    mailer::testing::exec_sql(
        t_.url(), fmt::format("INSERT INTO deliveries (campaign_id, recipient_id, provider, state)"
                              " SELECT {}, id, 'gmail', CASE WHEN id % 3 = 0 THEN 'queued'"
                              " ELSE 'sent' END FROM recipients",
                              campaign));
  }

  std::string output_dir() {
    const char* env = std::getenv("MAILER_TEST_OUTPUT_DIR");
    std::string dir = env && *env ? env : std::filesystem::current_path().string() + "/test-output";
    std::filesystem::create_directories(dir);
    return dir;
  }

  std::vector<std::string> chromium_args(const std::string& profile) {
    return {kChromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--user-data-dir=" + profile};
  }

  mailer::testing::TestDatabase t_{"serve_dash"};
};

TEST_F(ServeDashboardTest, HeadlessChromiumRendersAChartPerProviderAndSavesAScreenshot) {
  ASSERT_EQ(access(kChromium, X_OK), 0)
      << kChromium << " is missing: install Debian's chromium (deploy/install-deps.sh does)";
  const std::string dir = mailer::testing::make_temp_dir("serve_dash");
  mailer::testing::ServeProcess serve(t_.url(), dir);
  const auto port = serve.wait_listening();
  ASSERT_TRUE(port) << serve.process().err();
  const std::string url = fmt::format("http://127.0.0.1:{}/", serve.admin_port());

  auto args = chromium_args(dir + "/profile-dom");
  args.push_back("--dump-dom");
  args.push_back(url);
  const auto dom = mailer::testing::run_process(args, {{"HOME", dir}}, "", 90s);
  ASSERT_EQ(dom.exit_code, 0) << dom.err;
  EXPECT_EQ(count_of(dom.out, "<svg class=\"throttle-chart\""), 3u) << dom.out;
  for (const char* provider : {"gmail", "yahoo"}) {
    const std::regex chart(std::string("<svg class=\"throttle-chart\"[^>]*data-provider=\"") +
                           provider +
                           "\"[^>]*>.*?<polyline class=\"rate\" points=\"[0-9., ]{200,}");
    EXPECT_TRUE(std::regex_search(dom.out, chart)) << provider << " has no rate line";
  }
  EXPECT_GE(count_of(dom.out, "<rect class=\"deferred\""), 10u);
  EXPECT_EQ(dom.out.find("<b>evil"), std::string::npos) << "markup from the database rendered";
  EXPECT_NE(dom.out.find("<progress"), std::string::npos) << "campaign progress bar";

  const std::string png = output_dir() + "/dashboard.png";
  std::filesystem::remove(png);
  args = chromium_args(dir + "/profile-shot");
  args.push_back("--screenshot=" + png);
  args.push_back("--window-size=1200,900");
  args.push_back(url);
  const auto shot = mailer::testing::run_process(args, {{"HOME", dir}}, "", 90s);
  ASSERT_EQ(shot.exit_code, 0) << shot.err;
  std::ifstream in(png, std::ios::binary);
  ASSERT_TRUE(in) << png << " was not written";
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_GT(bytes.size(), 20000u) << "a blank page compresses to a few KB";

  serve.process().signal(SIGTERM);
  EXPECT_EQ(serve.process().wait(10s), 0) << serve.process().err();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace mailer::app
