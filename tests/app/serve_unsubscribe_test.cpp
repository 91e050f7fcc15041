// One-click unsubscribe over HTTP against a real PostgreSQL: the POST of
// RFC 8058 suppresses the address and a running campaign's next claim skips
// it; GET only shows the confirmation form; bad tokens and bad bodies change
// nothing; repeats are harmless.
#include <gtest/gtest.h>

#include "app/db/delivery_queue.h"
#include "app/http/unsubscribe_endpoint.h"
#include "tests/app/serve_support.h"
#include "tests/support/pg_fixture.h"

namespace mailer::app {
namespace {

using mailer::testing::http_call;
using mailer::testing::query_int;

constexpr const char* kForm = "application/x-www-form-urlencoded";

class ServeUnsubscribeTest : public ::testing::Test {
 protected:
  ServeUnsubscribeTest() : db_(db::DatabaseOptions{t_.url()}), queue_(db_) {
    const auto list = mailer::testing::seed_list(t_.url(), "news", 8);
    campaign_ = mailer::testing::seed_campaign(t_.url(), list, "running");
    queue_.freeze_audience(campaign_, [](std::string_view d) { return "other:" + std::string(d); });
    pqxx::connection c(t_.url());
    pqxx::work w(c);
    const auto row = w.exec1(
        "SELECT d.id, d.recipient_id, r.email_key FROM deliveries d JOIN recipients r"
        " ON r.id = d.recipient_id WHERE d.provider = 'gmail' ORDER BY d.id LIMIT 1");
    who_ = {row[0].as<std::int64_t>(), campaign_, row[1].as<std::int64_t>()};
    email_key_ = row[2].as<std::string>();
    token_ = mailer::testing::serve_codec()->Issue(who_);
  }

  std::int64_t suppressions() { return query_int(t_.url(), "SELECT count(*) FROM suppressions"); }

  mailer::testing::HttpReply post(const std::string& token, const std::string& body,
                                  const std::string& type = kForm) {
    return http_call(serve_.port(), "POST", "/u/" + token, body, {{"Content-Type", type}});
  }

  mailer::testing::TestDatabase t_{"serve_unsub"};
  db::Database db_;
  db::DeliveryQueue queue_;
  std::int64_t campaign_ = 0;
  sender::DeliveryIdentity who_;
  std::string email_key_;
  std::string token_;
  mailer::testing::InProcessServe serve_{t_.url()};
};

TEST_F(ServeUnsubscribeTest, OneClickPostSuppressesAndTheRunningCampaignSkipsTheRecipient) {
  const auto reply = post(token_, "List-Unsubscribe=One-Click");
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.headers.count("location"), 0u) << "RFC 8058: no redirect";

  pqxx::connection c(t_.url());
  pqxx::work w(c);
  const auto s = w.exec_params1(
      "SELECT reason, source, campaign_id, created_at > now() - interval '1 minute'"
      " FROM suppressions WHERE email_key = $1",
      email_key_);
  EXPECT_EQ(s[0].as<std::string>(), "unsubscribe");
  EXPECT_EQ(s[1].as<std::string>(), "http");
  EXPECT_EQ(s[2].as<std::int64_t>(), campaign_);
  EXPECT_TRUE(s[3].as<bool>());
  w.commit();

  const auto claimed = queue_.claim("gmail", "worker-1", 100, std::chrono::minutes(1));
  EXPECT_FALSE(claimed.empty()) << "the other gmail recipients are still sent to";
  for (const auto& d : claimed) EXPECT_NE(d.recipient_id, who_.recipient_id);
  EXPECT_EQ(query_int(t_.url(), fmt::format("SELECT count(*) FROM deliveries WHERE id = {} AND "
                                            "state = 'skipped'",
                                            who_.delivery_id)),
            1);
}

TEST_F(ServeUnsubscribeTest, MultipartOneClickBodyIsAccepted) {
  const std::string body =
      "--XyZ\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\n"
      "One-Click\r\n--XyZ--\r\n";
  EXPECT_EQ(post(token_, body, "multipart/form-data; boundary=XyZ").status, 200);
  EXPECT_EQ(suppressions(), 1);
}

TEST_F(ServeUnsubscribeTest, RepeatedPostsAnswer200AndKeepOneSuppression) {
  for (int i = 0; i < 3; ++i) EXPECT_EQ(post(token_, "List-Unsubscribe=One-Click").status, 200);
  EXPECT_EQ(suppressions(), 1);
}

TEST_F(ServeUnsubscribeTest, GetShowsAFormThatPostsOneClickAndSuppressesNothing) {
  const auto reply = http_call(serve_.port(), "GET", "/u/" + token_);
  EXPECT_EQ(reply.status, 200);
  EXPECT_NE(reply.headers.at("content-type").find("text/html"), std::string::npos);
  EXPECT_NE(reply.body.find("<form method=\"post\""), std::string::npos);
  EXPECT_NE(reply.body.find("name=\"List-Unsubscribe\" value=\"One-Click\""), std::string::npos);
  EXPECT_NE(reply.body.find("<button"), std::string::npos);
  EXPECT_EQ(suppressions(), 0);
}

TEST_F(ServeUnsubscribeTest, ForgedTamperedAndTruncatedTokensGetTheSame400AndChangeNothing) {
  std::string tampered = token_;
  tampered[10] = tampered[10] == 'A' ? 'B' : 'A';
  const std::string forged =
      sender::UnsubscribeTokenCodec("another-secret-of-enough-length!").Issue(who_);
  const std::vector<std::string> bad = {
      tampered, forged,           token_.substr(0, token_.size() - 1), token_ + "A", "",
      "%00%ff", "x/../../metrics"};
  std::string first_body;
  for (const auto& token : bad) {
    for (const char* method : {"GET", "POST"}) {
      const auto reply = std::string(method) == "GET"
                             ? http_call(serve_.port(), "GET", "/u/" + token)
                             : post(token, "List-Unsubscribe=One-Click");
      EXPECT_EQ(reply.status, 400) << method << " " << token;
      if (first_body.empty()) first_body = reply.body;
      EXPECT_EQ(reply.body, first_body) << "the answer must not say what is wrong";
    }
  }
  EXPECT_EQ(first_body.find(std::to_string(who_.recipient_id)), std::string::npos);
  EXPECT_EQ(suppressions(), 0);
}

TEST_F(ServeUnsubscribeTest, PostWithoutOneClickOrWithAnotherTypeChangesNothing) {
  EXPECT_EQ(post(token_, "List-Unsubscribe=Yes").status, 400);
  EXPECT_EQ(post(token_, "").status, 400);
  EXPECT_EQ(post(token_, "List-Unsubscribe=One-Click", "text/plain").status, 415);
  EXPECT_EQ(http_call(serve_.port(), "PUT", "/u/" + token_).status, 405);
  EXPECT_EQ(suppressions(), 0);
}

TEST(OneClickBody, ReadsUrlencodedAndMultipartForms) {
  EXPECT_EQ(parse_one_click_body(kForm, "List-Unsubscribe=One-Click"), OneClickBody::kOneClick);
  EXPECT_EQ(parse_one_click_body("Application/X-WWW-Form-Urlencoded; charset=utf-8",
                                 "a=1&List-Unsubscribe=One%2DClick\r\n"),
            OneClickBody::kOneClick);
  EXPECT_EQ(parse_one_click_body(kForm, "List-Unsubscribe=One-Click%"), OneClickBody::kMissing);
  EXPECT_EQ(parse_one_click_body(kForm, "List-Unsubscribe=one-click"), OneClickBody::kMissing);
  EXPECT_EQ(parse_one_click_body("multipart/form-data; boundary=\"b 1\"",
                                 "--b 1\r\ncontent-disposition: form-data; "
                                 "name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--b 1--"),
            OneClickBody::kOneClick);
  EXPECT_EQ(parse_one_click_body("multipart/form-data", "--x\r\n\r\nOne-Click\r\n--x--"),
            OneClickBody::kMissing);
  EXPECT_EQ(parse_one_click_body("multipart/form-data; boundary=x", "--x"), OneClickBody::kMissing);
  EXPECT_EQ(parse_one_click_body("application/json", "{}"), OneClickBody::kUnsupportedType);
}

}  // namespace
}  // namespace mailer::app
