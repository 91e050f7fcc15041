// The delivery queue on the real server: audience freezing, per-provider
// claims under leases, batched outcomes guarded by the lease, suppressions
// after the freeze, expired leases, completion, and throttle state.
#include <gtest/gtest.h>

#include <set>

#include "app/db/delivery_queue.h"
#include "tests/app/queue_seed.h"
#include "tests/support/pg_fixture.h"

namespace mailer::db {
namespace {

using mailer::testing::exec_sql;
using mailer::testing::query_int;
using mailer::testing::seed_campaign;
using mailer::testing::seed_list;

DeliveryOutcome outcome(std::int64_t id, OutcomeKind kind) {
  DeliveryOutcome o;
  o.delivery_id = id;
  o.kind = kind;
  return o;
}

std::string classify(std::string_view domain) {
  return "other:" + std::string(domain);
}

class QueueTest : public ::testing::Test {
 protected:
  QueueTest() : db_(DatabaseOptions{t_.url()}), queue_(db_) {}

  // A running campaign over a fresh list of n members, audience frozen.
  std::int64_t running_campaign(int n) {
    const auto list = seed_list(t_.url(), "list" + std::to_string(++lists_), n);
    const auto id = seed_campaign(t_.url(), list, "running");
    queue_.freeze_audience(id, classify);
    return id;
  }

  // The state as reported: an open delivery under an unexpired lease is
  // "sending" (the stored state stays queued or deferred).
  std::string state_of(std::int64_t delivery) {
    pqxx::connection c(t_.url());
    pqxx::work w(c);
    return w
        .exec_params1(
            "SELECT CASE WHEN state IN ('queued', 'deferred') AND"
            " lease_expires_at > now() THEN 'sending' ELSE state END"
            " FROM deliveries WHERE id = $1",
            delivery)[0]
        .as<std::string>();
  }

  mailer::testing::TestDatabase t_{"queue"};
  Database db_;
  DeliveryQueue queue_;
  int lists_ = 0;
};

TEST_F(QueueTest, FreezeInsertsOneDeliveryPerMemberWithProviderAndIsIdempotent) {
  const auto list = seed_list(t_.url(), "news", 40);
  exec_sql(t_.url(),
           "INSERT INTO suppressions (email_key, reason) VALUES ('news-1@outlook.com', "
           "'unsubscribe'), ('news-2@yahoo.com', 'complaint')");
  const auto id = seed_campaign(t_.url(), list);
  const FreezeResult first = queue_.freeze_audience(id, classify);
  EXPECT_TRUE(first.frozen_now);
  EXPECT_EQ(first.queued, 38);
  EXPECT_EQ(first.skipped, 2);
  const FreezeResult again = queue_.freeze_audience(id, classify);
  EXPECT_FALSE(again.frozen_now);
  EXPECT_EQ(query_int(t_.url(), "SELECT count(*) FROM deliveries"), 40);
  // Provider from domains rows, and from the classifier for example.org.
  EXPECT_EQ(query_int(t_.url(),
                      "SELECT count(*) FROM deliveries d JOIN recipients r ON r.id = "
                      "d.recipient_id WHERE r.domain = 'gmail.com' AND d.provider = 'gmail'"),
            10);
  EXPECT_EQ(
      query_int(t_.url(), "SELECT count(*) FROM deliveries WHERE provider = 'other:example.org'"),
      10);
  const StateCounts counts = queue_.counts(id);
  EXPECT_EQ(counts.at("queued"), 38);
  EXPECT_EQ(counts.at("skipped"), 2);
  EXPECT_EQ(counts.at("sent"), 0);
}

TEST_F(QueueTest, ClaimsOnlyTheAskedProviderFromRunningCampaignsUnderALease) {
  const auto id = running_campaign(40);
  const auto paused_list = seed_list(t_.url(), "paused", 8);
  const auto paused = seed_campaign(t_.url(), paused_list, "paused");
  queue_.freeze_audience(paused, classify);

  auto batch = queue_.claim("gmail", "w1", 100, std::chrono::minutes(1));
  ASSERT_EQ(batch.size(), 10u);  // gmail members of the running campaign only
  for (const auto& d : batch) {
    EXPECT_EQ(d.campaign_id, id);
    EXPECT_EQ(d.provider, "gmail");
    EXPECT_NE(d.email.find("@gmail.com"), std::string::npos);
    EXPECT_NE(d.attributes_json.find("first_name"), std::string::npos);
    EXPECT_EQ(d.attempts, 0);
    EXPECT_FALSE(d.first_attempt_at);
    EXPECT_EQ(state_of(d.id), "sending");
  }
  // A second worker gets nothing for gmail, but yahoo is not blocked.
  EXPECT_TRUE(queue_.claim("gmail", "w2", 100, std::chrono::minutes(1)).empty());
  EXPECT_EQ(queue_.claim("yahoo", "w2", 3, std::chrono::minutes(1)).size(), 3u);
  EXPECT_EQ(queue_.claim("other:example.org", "w2", 100, std::chrono::minutes(1), paused).size(),
            0u);
}

TEST_F(QueueTest, OutcomesAreWrittenOnlyForLeasesStillHeld) {
  running_campaign(8);
  auto batch = queue_.claim("gmail", "w1", 10, std::chrono::minutes(1));
  ASSERT_EQ(batch.size(), 2u);
  // w2 cannot write outcomes for w1's lease.
  EXPECT_EQ(queue_.write_outcomes("w2", {outcome(batch[0].id, OutcomeKind::kSent)}), 0u);
  EXPECT_EQ(state_of(batch[0].id), "sending");
  const auto later = std::chrono::system_clock::now() + std::chrono::hours(1);
  DeliveryOutcome deferred{batch[1].id, OutcomeKind::kDeferred, later,
                           421,         "421 4.7.28 slow down", "throttle"};
  EXPECT_EQ(queue_.write_outcomes(
                "w1", {{batch[0].id, OutcomeKind::kSent, {}, 250, "250 ok", "accepted"}, deferred}),
            2u);
  EXPECT_EQ(state_of(batch[0].id), "sent");
  EXPECT_EQ(state_of(batch[1].id), "deferred");
  EXPECT_EQ(query_int(t_.url(),
                      fmt::format("SELECT attempts FROM deliveries WHERE id = {}", batch[1].id)),
            1);
  EXPECT_EQ(
      query_int(t_.url(), fmt::format("SELECT count(*) FROM deliveries WHERE id = {} AND "
                                      "last_reply_code = 421 AND last_signal = 'throttle' AND "
                                      "next_attempt_at > now() + interval '50 minutes'",
                                      batch[1].id)),
      1);
  // Written twice (a retried flush): the second write changes nothing.
  EXPECT_EQ(queue_.write_outcomes("w1", {outcome(batch[0].id, OutcomeKind::kFailed)}), 0u);
  EXPECT_EQ(state_of(batch[0].id), "sent");
  // Not due yet: not claimable.
  EXPECT_TRUE(queue_.claim("gmail", "w1", 10, std::chrono::minutes(1)).empty());
}

TEST_F(QueueTest, BounceSuppressesTheAddressInTheSameBatch) {
  const auto id = running_campaign(4);
  auto batch = queue_.claim("gmail", "w1", 10, std::chrono::minutes(1));
  ASSERT_EQ(batch.size(), 1u);
  EXPECT_EQ(
      queue_.write_outcomes(
          "w1",
          {{batch[0].id, OutcomeKind::kBounced, {}, 550, "550 5.1.1 no such user", "hard_bounce"}}),
      1u);
  EXPECT_EQ(state_of(batch[0].id), "bounced");
  EXPECT_EQ(query_int(t_.url(),
                      fmt::format("SELECT count(*) FROM suppressions WHERE email_key = '{}' AND "
                                  "reason = 'hard_bounce' AND campaign_id = {} AND detail LIKE "
                                  "'550 5.1.1%'",
                                  batch[0].email, id)),
            1);
}

TEST_F(QueueTest, AddressSuppressedAfterFreezeIsSkippedAtClaim) {
  running_campaign(8);
  exec_sql(t_.url(),
           "INSERT INTO suppressions (email_key, reason, source) SELECT email_key, "
           "'unsubscribe', 'http' FROM recipients WHERE domain = 'yahoo.com' LIMIT 1");
  auto batch = queue_.claim("yahoo", "w1", 10, std::chrono::minutes(1));
  EXPECT_EQ(batch.size(), 1u);
  EXPECT_EQ(query_int(t_.url(),
                      "SELECT count(*) FROM deliveries WHERE provider = 'yahoo' AND state = "
                      "'skipped' AND last_reply LIKE 'suppressed after%unsubscribe'"),
            1);
}

TEST_F(QueueTest, ReleasedAndExpiredLeasesReturnToTheQueue) {
  running_campaign(12);
  auto batch = queue_.claim("gmail", "w1", 10, std::chrono::minutes(1));
  ASSERT_EQ(batch.size(), 3u);
  EXPECT_EQ(queue_.write_outcomes("w1", {outcome(batch[0].id, OutcomeKind::kReleased)}), 1u);
  EXPECT_EQ(state_of(batch[0].id), "queued");
  EXPECT_EQ(queue_.release_leases("w1"), 2u);
  EXPECT_EQ(query_int(t_.url(), "SELECT count(*) FROM deliveries WHERE lease_owner IS NOT NULL"),
            0);
  EXPECT_EQ(query_int(t_.url(), "SELECT max(attempts) FROM deliveries"), 0);

  auto again = queue_.claim("gmail", "dead", 10, std::chrono::minutes(1));
  ASSERT_EQ(again.size(), 3u);
  for (const auto& d : again) EXPECT_EQ(d.expired_lease_of, "");
  EXPECT_EQ(state_of(again[0].id), "sending");
  // Held: nobody else gets them.
  EXPECT_TRUE(queue_.claim("gmail", "w2", 10, std::chrono::minutes(1)).empty());
  exec_sql(t_.url(),
           "UPDATE deliveries SET lease_expires_at = now() - interval '1 second' WHERE "
           "lease_owner = 'dead'");
  EXPECT_EQ(state_of(again[0].id), "queued");
  // Expired: the next claim takes them over and says whose lease it was.
  auto taken = queue_.claim("gmail", "w2", 10, std::chrono::minutes(1));
  ASSERT_EQ(taken.size(), 3u);
  for (const auto& d : taken) EXPECT_EQ(d.expired_lease_of, "dead");
  // The dead worker's late outcome is refused now that w2 holds the rows.
  EXPECT_EQ(queue_.write_outcomes("dead", {outcome(again[0].id, OutcomeKind::kSent)}), 0u);
  EXPECT_EQ(queue_.write_outcomes("w2", {outcome(again[0].id, OutcomeKind::kSent)}), 1u);
  EXPECT_EQ(state_of(again[0].id), "sent");
}

TEST_F(QueueTest, RenewExtendsOnlyTheGivenLeases) {
  running_campaign(8);
  auto batch = queue_.claim("gmail", "w1", 10, std::chrono::seconds(5));
  ASSERT_EQ(batch.size(), 2u);
  EXPECT_EQ(queue_.renew_leases("w1", {batch[0].id}, std::chrono::minutes(10)), 1u);
  EXPECT_EQ(queue_.renew_leases("w2", {batch[1].id}, std::chrono::minutes(10)), 0u);
  EXPECT_EQ(query_int(t_.url(),
                      "SELECT count(*) FROM deliveries WHERE lease_expires_at > now() "
                      "+ interval '9 minutes'"),
            1);
}

TEST_F(QueueTest, CampaignFinishesWhenEveryDeliveryIsFinal) {
  const auto id = running_campaign(4);
  std::vector<DeliveryOutcome> outcomes;
  for (const char* p : {"gmail", "outlook", "yahoo"}) {
    for (const auto& d : queue_.claim(p, "w1", 10, std::chrono::minutes(1))) {
      outcomes.push_back(outcome(d.id, OutcomeKind::kSent));
    }
  }
  queue_.write_outcomes("w1", outcomes);
  EXPECT_TRUE(queue_.finish_completed().empty());  // example.org is still queued
  PendingWork p = queue_.pending();
  EXPECT_EQ(p.sendable_now, 1);
  auto last = queue_.claim("other:example.org", "w1", 10, std::chrono::minutes(1));
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(queue_.pending().leased, 1);
  queue_.write_outcomes("w1", {{last[0].id, OutcomeKind::kFailed, {}, 0, "expired", ""}});
  EXPECT_EQ(queue_.finish_completed(), std::vector<std::int64_t>{id});
  EXPECT_EQ(query_int(t_.url(), fmt::format("SELECT count(*) FROM campaigns WHERE id = {} AND "
                                            "status = 'finished' AND finished_at IS NOT NULL",
                                            id)),
            1);
}

TEST_F(QueueTest, ProvidersWithWorkListsEachProviderOnce) {
  running_campaign(20);
  const auto providers = queue_.providers_with_work();
  EXPECT_EQ(std::set<std::string>(providers.begin(), providers.end()),
            (std::set<std::string>{"gmail", "other:example.org", "outlook", "yahoo"}));
}

TEST_F(QueueTest, ThrottleStatePersistsPerProviderAndEgress) {
  ThrottleStateRow gmail{"gmail",   "ip-1", R"({"rate": 42.5})",       42.5, 7,
                         "backoff", {},     "421 4.7.28 unusual rate", {}};
  queue_.save_throttle_state(gmail);
  gmail.rate = 50;
  gmail.mode = "normal";
  gmail.last_throttle_reply = "";  // keeps the last one seen
  queue_.save_throttle_state(gmail);
  const auto until = std::chrono::system_clock::now() + std::chrono::hours(2);
  queue_.save_throttle_state(
      {"yahoo", "ip-2", "{}", 5, 1, "suspended", until, "421 4.7.0 [TSS04] Messages from ...", {}});
  auto rows = queue_.load_throttle_states("ip-1");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].provider, "gmail");
  EXPECT_DOUBLE_EQ(rows[0].rate, 50);
  EXPECT_EQ(rows[0].mode, "normal");
  EXPECT_EQ(rows[0].connection_limit, 7);
  EXPECT_EQ(rows[0].last_throttle_reply, "421 4.7.28 unusual rate");
  EXPECT_NE(rows[0].state_json.find("42.5"), std::string::npos);
  rows = queue_.load_throttle_states();
  ASSERT_EQ(rows.size(), 2u);
  ASSERT_TRUE(rows[1].suspended_until);
  EXPECT_LT(std::chrono::abs(*rows[1].suspended_until - until), std::chrono::milliseconds(1));
  queue_.append_throttle_history(
      {{"gmail", "ip-1", 50, 120, 3, "normal"}, {"yahoo", "ip-2", 0, 0, 9, "suspended"}});
  EXPECT_EQ(query_int(t_.url(),
                      "SELECT count(*) FROM throttle_history WHERE (provider, accepted, "
                      "deferred) IN (('gmail', 120, 3), ('yahoo', 0, 9))"),
            2);
}

TEST(PgTextArray, QuotesAndEscapesElements) {
  EXPECT_EQ(pg_text_array({"a", std::nullopt, "b\"c\\d", ""}), R"({"a",NULL,"b\"c\\d",""})");
}

}  // namespace
}  // namespace mailer::db
