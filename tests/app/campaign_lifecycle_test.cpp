// Campaign lifecycle and the scheduler tick with an injected clock: due
// starts, late starts, windows that close and reopen across midnight and DST,
// impossible transitions, cancel, completion.
#include <gtest/gtest.h>

#include "app/base/errors.h"
#include "app/campaigns/campaign_store.h"
#include "app/campaigns/scheduler.h"
#include "tests/app/queue_seed.h"
#include "tests/support/pg_fixture.h"

namespace mailer::app {
namespace {

using mailer::testing::query_int;
using mailer::testing::seed_list;

SysTime utc(const std::string& text) {
  return parse_start_time(text, find_zone("UTC"));
}

class CampaignLifecycleTest : public ::testing::Test {
 protected:
  CampaignLifecycleTest()
      : db_(db::DatabaseOptions{t_.url()}),
        queue_(db_),
        store_(db_),
        lifecycle_(store_, queue_, [](std::string_view d) { return "other:" + std::string(d); }),
        scheduler_(
            store_, queue_, lifecycle_, [this] { return now_; }, std::chrono::hours(1)) {
    list_ = seed_list(t_.url(), "news", 8);
  }

  std::int64_t create(std::optional<SysTime> at = {}, std::optional<std::string> window = {},
                      std::string tz = "UTC") {
    NewCampaign c;
    c.name = "spring";
    c.list_id = list_;
    c.from = "News <news@example.com>";
    c.subject = "Hello {{first_name}}";
    c.text_body = "Hi";
    c.scheduled_at = at;
    c.timezone = tz;
    if (window) {
      const SendWindow w = SendWindow::parse(*window, tz);
      c.window_start = w.start_minute();
      c.window_end = w.end_minute();
    }
    return store_.create(c);
  }

  std::string status(std::int64_t id) { return store_.find(id)->status; }

  std::string error_of(const std::function<void()>& fn) {
    try {
      fn();
    } catch (const UsageError& e) {
      return e.what();
    }
    return "(no error)";
  }

  mailer::testing::TestDatabase t_{"lifecycle"};
  db::Database db_;
  db::DeliveryQueue queue_;
  CampaignStore store_;
  CampaignLifecycle lifecycle_;
  SysTime now_ = utc("2026-01-05T12:00:00Z");
  Scheduler scheduler_;
  std::int64_t list_ = 0;
};

TEST_F(CampaignLifecycleTest, StartFreezesAudienceAndRuns) {
  const auto id = create();
  EXPECT_EQ(status(id), "draft");
  EXPECT_EQ(lifecycle_.start(id, now_), "running");
  EXPECT_EQ(query_int(t_.url(), "SELECT count(*) FROM deliveries WHERE state = 'queued'"), 8);
  const Campaign c = *store_.find(id);
  EXPECT_TRUE(c.audience_frozen_at);
  EXPECT_EQ(c.started_at, now_);
}

TEST_F(CampaignLifecycleTest, ImpossibleTransitionsSayWhatApplies) {
  const auto id = create();
  EXPECT_EQ(error_of([&] { lifecycle_.resume(id, now_); }),
            "campaign 1 is draft: cannot resume it (resume applies to paused campaigns)");
  EXPECT_EQ(error_of([&] { lifecycle_.pause(99, now_); }), "no campaign with id 99");
  lifecycle_.start(id, now_);
  EXPECT_NE(error_of([&] { lifecycle_.start(id, now_); }).find("is running: cannot start it"),
            std::string::npos);
  EXPECT_EQ(lifecycle_.pause(id, now_), "paused");
  EXPECT_NE(error_of([&] { lifecycle_.start(id, now_); }).find("use `mailer campaign resume 1`"),
            std::string::npos);
  EXPECT_EQ(lifecycle_.resume(id, now_), "running");
  EXPECT_EQ(lifecycle_.cancel(id, now_), "cancelled");
  EXPECT_EQ(query_int(t_.url(), "SELECT count(*) FROM deliveries WHERE state = 'skipped'"), 8);
  EXPECT_NE(error_of([&] { lifecycle_.cancel(id, now_); }).find("is cancelled: cannot cancel"),
            std::string::npos);
}

TEST_F(CampaignLifecycleTest, ScheduledCampaignStartsWhenDueNotBefore) {
  const auto id = create(utc("2026-01-05T14:00:00Z"));
  EXPECT_EQ(status(id), "scheduled");
  scheduler_.tick();
  EXPECT_EQ(status(id), "scheduled");
  EXPECT_EQ(query_int(t_.url(), "SELECT count(*) FROM deliveries"), 0);
  now_ = utc("2026-01-05T14:00:00Z");
  const TickReport r = scheduler_.tick();
  EXPECT_EQ(r.started, std::vector<std::int64_t>{id});
  EXPECT_EQ(status(id), "running");
  EXPECT_EQ(query_int(t_.url(), "SELECT count(*) FROM deliveries"), 8);
}

TEST_F(CampaignLifecycleTest, WeekOldScheduleStillStartsWhenFirstSeen) {
  const auto id = create(utc("2025-12-29T12:00:00Z"));
  const TickReport r = scheduler_.tick();
  EXPECT_EQ(r.started, std::vector<std::int64_t>{id});
  EXPECT_EQ(status(id), "running");
}

TEST_F(CampaignLifecycleTest, PausedBeforeDueResumesAsScheduled) {
  const auto id = create(utc("2026-01-06T00:00:00Z"));
  lifecycle_.pause(id, now_);
  scheduler_.tick();
  EXPECT_EQ(status(id), "paused");
  EXPECT_EQ(lifecycle_.resume(id, now_), "scheduled");
}

TEST_F(CampaignLifecycleTest, WindowAcrossMidnightClosesAndReopensByItself) {
  // 22:00-06:00 Berlin = 21:00-05:00Z in January.
  const auto id = create({}, "22:00-06:00", "Europe/Berlin");
  EXPECT_EQ(lifecycle_.start(id, now_), "waiting_window");  // 13:00 local
  now_ = utc("2026-01-05T20:59:00Z");
  scheduler_.tick();
  EXPECT_EQ(status(id), "waiting_window");
  now_ = utc("2026-01-05T21:00:00Z");
  EXPECT_EQ(scheduler_.tick().window_opened, std::vector<std::int64_t>{id});
  EXPECT_EQ(status(id), "running");
  now_ = utc("2026-01-05T23:30:00Z");  // past local midnight: still inside
  scheduler_.tick();
  EXPECT_EQ(status(id), "running");
  now_ = utc("2026-01-06T05:00:00Z");
  EXPECT_EQ(scheduler_.tick().window_closed, std::vector<std::int64_t>{id});
  EXPECT_EQ(status(id), "waiting_window");
  EXPECT_NE(scheduler_.idle_reason().find("opens 2026-01-06T21:00:00Z"), std::string::npos)
      << scheduler_.idle_reason();
}

TEST_F(CampaignLifecycleTest, WindowFollowsWallClockThroughSpringForward) {
  // New York 01:00-05:00; clocks jump at 02:00 on 2026-03-08.
  now_ = utc("2026-03-07T12:00:00Z");
  const auto id = create({}, "01:00-05:00", "America/New_York");
  EXPECT_EQ(lifecycle_.start(id, now_), "waiting_window");
  now_ = utc("2026-03-08T06:00:00Z");  // 01:00 EST
  scheduler_.tick();
  EXPECT_EQ(status(id), "running");
  now_ = utc("2026-03-08T08:30:00Z");  // 04:30 EDT: still open
  scheduler_.tick();
  EXPECT_EQ(status(id), "running");
  now_ = utc("2026-03-08T09:00:00Z");  // 05:00 EDT
  scheduler_.tick();
  EXPECT_EQ(status(id), "waiting_window");
  now_ = utc("2026-03-09T05:00:00Z");  // 01:00 EDT the next night
  scheduler_.tick();
  EXPECT_EQ(status(id), "running");
}

TEST_F(CampaignLifecycleTest, ScheduledStartOutsideWindowWaitsForIt) {
  const auto id = create(utc("2026-01-05T10:00:00Z"), "18:00-20:00", "UTC");
  scheduler_.tick();
  EXPECT_EQ(status(id), "waiting_window");
  EXPECT_EQ(query_int(t_.url(), "SELECT count(*) FROM deliveries"), 8);
}

TEST_F(CampaignLifecycleTest, TickFinishesCampaignWithOnlyFinalDeliveries) {
  const auto id = create();
  lifecycle_.start(id, now_);
  mailer::testing::exec_sql(t_.url(), "UPDATE deliveries SET state = 'sent'");
  EXPECT_EQ(scheduler_.tick().finished, std::vector<std::int64_t>{id});
  EXPECT_EQ(status(id), "finished");
}

}  // namespace
}  // namespace mailer::app
