// `mailer bounces parse` and `mailer bounces ingest` end to end through the
// binary and a real PostgreSQL: the JSON shapes of CLI.md, VERP matching
// (tampered tags change nothing), suppressions, idempotent re-ingest, the
// per-campaign feedback of `campaign show`, and the guard.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "sender/unsubscribe_token.h"
#include "sender/verp.h"
#include "tests/app/queue_seed.h"
#include "tests/app/report_messages.h"
#include "tests/support/pg_fixture.h"
#include "tests/support/process.h"

namespace mailer::app {
namespace {

using mailer::testing::auto_reply;
using mailer::testing::dsn;
using mailer::testing::exec_sql;
using mailer::testing::query_int;
using mailer::testing::run_mailer;
using mailer::testing::seed_campaign;
using mailer::testing::seed_list;
using mailer::testing::write_file;

constexpr const char* kSecret = "0123456789abcdef0123456789abcdef-bounces-test";
constexpr const char* kVerpDomain = "bounces.example.com";

std::string data_file(const std::string& name) {
  return std::string(MAILER_SOURCE_DIR) + "/tests/data/bounces/" + name;
}

std::vector<nlohmann::json> json_lines(const std::string& out) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

// A Microsoft-style ARF complaint with the recipient redacted; only the
// quoted Return-Path names the delivery.
std::string redacted_complaint(const std::string& id, const std::string& return_path) {
  return "From: staff@hotmail.com\r\nTo: fbl@example.com\r\nSubject: complaint\r\n"
         "Message-ID: <" +
         id +
         "@feedback.example.net>\r\nMIME-Version: 1.0\r\n"
         "Content-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\r\n\r\n"
         "--F\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n\r\n"
         "--F\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
         "User-Agent: Microsoft JMRP/1.0\r\nVersion: 1\r\n\r\n"
         "--F\r\nContent-Type: message/rfc822\r\n\r\nReturn-Path: <" +
         return_path +
         ">\r\nFrom: News <news@example.com>\r\nTo: <redacted>\r\nSubject: Hello\r\n\r\nHi\r\n"
         "--F--\r\n";
}

// A complaint with the recipient redacted and no return path: only the
// List-Unsubscribe token of the quoted message names the delivery.
std::string token_complaint(const std::string& id, const std::string& token) {
  return "From: staff@hotmail.com\r\nTo: fbl@example.com\r\nSubject: complaint\r\n"
         "Message-ID: <" +
         id +
         "@feedback.example.net>\r\nMIME-Version: 1.0\r\n"
         "Content-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\r\n\r\n"
         "--F\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n\r\n"
         "--F\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
         "User-Agent: Microsoft JMRP/1.0\r\nVersion: 1\r\n\r\n"
         "--F\r\nContent-Type: message/rfc822\r\n\r\nFrom: News <news@example.com>\r\n"
         "To: <redacted>\r\nSubject: Hello\r\nMessage-ID: <x.y@example.com>\r\n"
         "List-Unsubscribe: <https://mail.example.com/u/" +
         token + ">\r\n\r\nHi\r\n--F--\r\n";
}

class BouncesCliTest : public ::testing::Test {
 protected:
  BouncesCliTest() : dir_(mailer::testing::make_temp_dir("bounces-cli")) {
    write_file(dir_ + "/secret.key", kSecret);
    write_config("");
  }

  void write_config(const std::string& extra) {
    write_file(dir_ + "/mailer.toml", "[sender]\nverp_domain = \"" + std::string(kVerpDomain) +
                                          "\"\n[unsubscribe]\nsecret_file = \"" + dir_ +
                                          "/secret.key\"\n" + extra);
  }

  mailer::testing::ProcessResult mailer(std::vector<std::string> args,
                                        const std::string& stdin_text = "") {
    args.insert(args.begin(), {"--config", dir_ + "/mailer.toml"});
    return run_mailer(args, {{"MAILER_DATABASE_URL", t_.url()}}, stdin_text);
  }

  // A running campaign over `n` recipients, every delivery sent; returns the
  // campaign id and fills ids_ and emails_ in delivery order.
  std::int64_t sent_campaign(int n) {
    const auto list = seed_list(t_.url(), "news", n);
    const auto campaign = seed_campaign(t_.url(), list, "running");
    exec_sql(
        t_.url(),
        "INSERT INTO deliveries (campaign_id, recipient_id, provider, state, attempts, sent_at)"
        " SELECT " +
            std::to_string(campaign) +
            ", recipient_id, 'other', 'sent', 1, now() FROM list_members ORDER BY "
            "recipient_id");
    pqxx::connection c(t_.url());
    pqxx::work w(c);
    for (const auto& row :
         w.exec("SELECT d.id, r.email FROM deliveries d JOIN recipients r ON r.id = d.recipient_id "
                "ORDER BY d.id")) {
      ids_.push_back(row[0].as<std::int64_t>());
      emails_.push_back(row[1].as<std::string>());
    }
    return campaign;
  }

  std::string verp(std::int64_t delivery) const {
    return sender::VerpCodec("bounce", kVerpDomain, kSecret).ReturnPath(delivery).envelope_form();
  }

  std::string state_of(std::int64_t delivery) {
    pqxx::connection c(t_.url());
    pqxx::work w(c);
    return w.exec_params1("SELECT state FROM deliveries WHERE id = $1", delivery)[0]
        .as<std::string>();
  }

  std::string suppression_of(const std::string& email) {
    pqxx::connection c(t_.url());
    pqxx::work w(c);
    const auto r =
        w.exec_params("SELECT reason FROM suppressions WHERE email_key = lower($1)", email);
    return r.empty() ? "" : r[0][0].as<std::string>();
  }

  nlohmann::json show(std::int64_t campaign) {
    auto r = mailer({"campaign", "show", std::to_string(campaign), "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out);
  }

  mailer::testing::TestDatabase t_{"bounces_cli"};
  std::string dir_;
  std::vector<std::int64_t> ids_;
  std::vector<std::string> emails_;
};

TEST(BouncesParse, PrintsOneJsonLinePerFileAndRecipient) {
  auto r =
      run_mailer({"bounces", "parse", "--json", data_file("gmail-no-such-user.eml"),
                  data_file("not-a-report-newsletter.eml"), data_file("exim-two-recipients.eml")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto lines = json_lines(r.out);
  ASSERT_EQ(lines.size(), 4u) << r.out;
  EXPECT_EQ(lines[0]["file"], data_file("gmail-no-such-user.eml"));
  EXPECT_EQ(lines[0]["kind"], "hard");
  EXPECT_FALSE(lines[0]["recipient"].get<std::string>().empty());
  EXPECT_TRUE(lines[0]["status"].get<std::string>().rfind("5.", 0) == 0) << lines[0];
  EXPECT_TRUE(lines[0].contains("diagnostic"));
  EXPECT_EQ(lines[1], (nlohmann::json{{"file", data_file("not-a-report-newsletter.eml")},
                                      {"kind", "not_a_report"}}));
  EXPECT_EQ(lines[2]["file"], data_file("exim-two-recipients.eml"));
  EXPECT_EQ(lines[3]["file"], data_file("exim-two-recipients.eml"));
  EXPECT_NE(lines[2]["recipient"], lines[3]["recipient"]);
}

TEST(BouncesParse, ARedactedComplaintIsAComplaintWithoutRecipient) {
  auto r = run_mailer({"bounces", "parse", "--json", data_file("arf-microsoft-jmrp-redacted.eml")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto lines = json_lines(r.out);
  ASSERT_EQ(lines.size(), 1u) << r.out;
  EXPECT_EQ(lines[0]["kind"], "complaint");
  EXPECT_EQ(lines[0]["recipient"], "");
}

TEST(BouncesParse, TextOutputNamesFileRecipientAndKind) {
  auto r = run_mailer({"bounces", "parse", data_file("gmail-no-such-user.eml")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind(data_file("gmail-no-such-user.eml") + ": ", 0), 0u) << r.out;
  EXPECT_NE(r.out.find(" hard "), std::string::npos) << r.out;
}

TEST(BouncesParse, UnreadableFileExitsTwoNamingIt) {
  const std::string dir = mailer::testing::make_temp_dir("bounces-parse");
  auto r = run_mailer(
      {"bounces", "parse", "--json", dir + "/missing.eml", data_file("gmail-no-such-user.eml")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(dir + "/missing.eml"), std::string::npos) << r.err;
  EXPECT_EQ(json_lines(r.out).size(), 1u) << r.out;  // the readable file is still read
  auto d = run_mailer({"bounces", "parse", dir});
  EXPECT_EQ(d.exit_code, 2);
  EXPECT_NE(d.err.find(dir), std::string::npos) << d.err;
}

TEST_F(BouncesCliTest, IngestAppliesEachKindOnceAndShowsFeedback) {
  const auto campaign = sent_campaign(6);
  ASSERT_EQ(ids_.size(), 6u);
  std::string tampered = verp(ids_[4]);
  tampered[tampered.find('@') - 1] = tampered[tampered.find('@') - 1] == '0' ? '1' : '0';

  const std::string maildir = dir_ + "/Maildir";
  std::filesystem::create_directories(maildir + "/new");
  std::filesystem::create_directories(maildir + "/cur");
  std::filesystem::create_directories(maildir + "/tmp");
  write_file(maildir + "/new/1.hard",
             dsn("h1", verp(ids_[0]), emails_[0], "failed", "5.1.1", "550 5.1.1 user unknown"));
  for (int i = 0; i < 3; ++i) {
    write_file(maildir + "/cur/2.soft" + std::to_string(i),
               dsn("s" + std::to_string(i), verp(ids_[1]), emails_[1], "delayed", "4.2.2",
                   "452 4.2.2 mailbox full"));
  }
  write_file(maildir + "/new/3.complaint", redacted_complaint("c1", verp(ids_[2])));
  write_file(maildir + "/new/4.auto", auto_reply("a1", emails_[3], verp(ids_[3])));
  write_file(maildir + "/new/5.tampered",
             dsn("t1", tampered, emails_[4], "failed", "5.1.1", "550 5.1.1 user unknown"));
  write_file(maildir + "/new/6.newsletter", "From: a@b.example\r\nSubject: hi\r\n\r\nhello\r\n");

  auto r = mailer({"bounces", "ingest", maildir, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto s = nlohmann::json::parse(r.out);
  EXPECT_EQ(s["messages"], 8);
  EXPECT_EQ(s["not_reports"], 1);
  EXPECT_EQ(s["hard"], 1);
  EXPECT_EQ(s["soft"], 3);
  EXPECT_EQ(s["complaints"], 1);
  EXPECT_EQ(s["auto_replies"], 1);
  EXPECT_EQ(s["unmatched"], 1);
  EXPECT_EQ(s["bounced"], 1);
  EXPECT_EQ(s["suppressed"], 3) << s;  // hard, three softs, complaint

  EXPECT_EQ(state_of(ids_[0]), "bounced");  // a late hard bounce overrides sent
  EXPECT_EQ(suppression_of(emails_[0]), "hard_bounce");
  EXPECT_EQ(suppression_of(emails_[1]), "hard_bounce");  // soft_limit (3) soft bounces
  EXPECT_EQ(suppression_of(emails_[2]), "complaint");
  EXPECT_EQ(suppression_of(emails_[3]), "");  // an auto-reply is only counted
  EXPECT_EQ(state_of(ids_[4]), "sent");       // a tampered tag changes nothing
  EXPECT_EQ(suppression_of(emails_[4]), "");
  EXPECT_EQ(query_int(t_.url(), "SELECT count(*) FROM suppressions"), 3);

  nlohmann::json j = show(campaign);
  EXPECT_EQ(
      j["feedback"],
      (nlohmann::json{
          {"hard", 1}, {"soft", 3}, {"complaints", 1}, {"auto_replies", 1}, {"unmatched", 1}}))
      << j;
  EXPECT_EQ(j["counts"]["bounced"], 1);
  EXPECT_EQ(j["counts"]["sent"], 5);

  // The same messages again: recognised, nothing changes.
  auto again = mailer({"bounces", "ingest", maildir, "--json"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  const auto s2 = nlohmann::json::parse(again.out);
  EXPECT_EQ(s2["duplicates"], 7) << s2;
  EXPECT_EQ(s2["hard"], 0);
  EXPECT_EQ(s2["suppressed"], 0);
  EXPECT_EQ(show(campaign)["feedback"], j["feedback"]);
  EXPECT_EQ(query_int(t_.url(), "SELECT count(*) FROM feedback_reports"), 7);

  auto text = mailer({"campaign", "show", std::to_string(campaign)});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("feedback    hard 1 soft 3 complaints 1 auto_replies 1 unmatched 1"),
            std::string::npos)
      << text.out;
}

TEST_F(BouncesCliTest, IngestReadsOneMessageOnStdinAndOneFile) {
  sent_campaign(2);
  const std::string msg =
      dsn("p1", verp(ids_[0]), emails_[0], "failed", "5.1.1", "550 5.1.1 no such user");
  auto r = mailer({"bounces", "ingest", "--json"}, msg);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["hard"], 1);
  auto dash = mailer({"bounces", "ingest", "-", "--json"}, msg);
  ASSERT_EQ(dash.exit_code, 0) << dash.err;
  EXPECT_EQ(nlohmann::json::parse(dash.out)["duplicates"], 1);

  write_file(dir_ + "/one.eml",
             dsn("p2", verp(ids_[1]), emails_[1], "failed", "5.1.1", "550 5.1.1 no such user"));
  auto f = mailer({"bounces", "ingest", dir_ + "/one.eml"});
  ASSERT_EQ(f.exit_code, 0) << f.err;
  EXPECT_EQ(state_of(ids_[1]), "bounced");
}

TEST_F(BouncesCliTest, RedactedComplaintFindsItsDeliveryThroughTheUnsubscribeToken) {
  const auto campaign = sent_campaign(3);
  const auto recipient = query_int(
      t_.url(), "SELECT recipient_id FROM deliveries WHERE id = " + std::to_string(ids_[1]));
  const sender::UnsubscribeTokenCodec tokens(kSecret);
  const std::string good = tokens.Issue({ids_[1], campaign, recipient});
  std::string forged = tokens.Issue({ids_[2], campaign, recipient + 1});
  forged.back() = forged.back() == 'A' ? 'B' : 'A';
  write_file(dir_ + "/good.eml", token_complaint("k1", good));
  write_file(dir_ + "/forged.eml", token_complaint("k2", forged));
  ASSERT_EQ(mailer({"bounces", "ingest", dir_ + "/good.eml"}).exit_code, 0);
  auto r = mailer({"bounces", "ingest", dir_ + "/forged.eml", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["unmatched"], 1);
  EXPECT_EQ(suppression_of(emails_[1]), "complaint");
  EXPECT_EQ(suppression_of(emails_[2]), "");
  EXPECT_EQ(show(campaign)["feedback"]["complaints"], 1);
}

// A bounce forwarded to a plain address (no VERP) that quotes our
// Message-ID: believed only for the recipient the delivery was sent to.
TEST_F(BouncesCliTest, ForwardedBounceFallsBackToOurMessageIdForItsOwnRecipient) {
  const auto campaign = sent_campaign(3);
  auto forwarded = [&](const std::string& id, std::int64_t delivery, const std::string& rcpt) {
    std::string m =
        dsn(id, "postmaster@example.com", rcpt, "failed", "5.1.1", "550 5.1.1 user unknown");
    const std::string quoted = "Return-Path: <postmaster@example.com>\r\n";
    m.replace(m.find(quoted), quoted.size(),
              quoted + "Message-ID: <" + std::to_string(delivery) + "." + std::to_string(campaign) +
                  "@example.com>\r\n");
    return m;
  };
  write_file(dir_ + "/own.eml", forwarded("f1", ids_[0], emails_[0]));
  write_file(dir_ + "/other.eml", forwarded("f2", ids_[1], emails_[2]));
  ASSERT_EQ(mailer({"bounces", "ingest", dir_ + "/own.eml"}).exit_code, 0);
  auto r = mailer({"bounces", "ingest", dir_ + "/other.eml", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["unmatched"], 1);
  EXPECT_EQ(state_of(ids_[0]), "bounced");
  EXPECT_EQ(state_of(ids_[1]), "sent");
  EXPECT_EQ(suppression_of(emails_[2]), "");
}

TEST_F(BouncesCliTest, IngestBadInputExitsTwoNamingIt) {
  auto missing = mailer({"bounces", "ingest", dir_ + "/missing.eml"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find(dir_ + "/missing.eml"), std::string::npos) << missing.err;
  auto not_maildir = mailer({"bounces", "ingest", dir_});
  EXPECT_EQ(not_maildir.exit_code, 2);
  EXPECT_NE(not_maildir.err.find(dir_ + ": a directory but not a maildir"), std::string::npos)
      << not_maildir.err;
}

TEST_F(BouncesCliTest, GuardPausesARunningCampaignPastItsComplaintRate) {
  write_config("[guard]\nmin_sent = 4\nmax_complaint_rate = 0.2\n");
  const auto campaign = sent_campaign(4);
  write_file(dir_ + "/c1.eml", redacted_complaint("g1", verp(ids_[0])));
  auto r = mailer({"bounces", "ingest", dir_ + "/c1.eml", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["paused"], 1);
  EXPECT_NE(r.err.find("paused: complaint rate"), std::string::npos) << r.err;
  const nlohmann::json j = show(campaign);
  EXPECT_EQ(j["status"], "paused");
  EXPECT_NE(j["pause_reason"].get<std::string>().find("max_complaint_rate"), std::string::npos);
  // An operator resumes it; the reason goes with the pause.
  auto resumed = mailer({"campaign", "resume", std::to_string(campaign)});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_FALSE(show(campaign).contains("pause_reason"));
  EXPECT_EQ(query_int(t_.url(), "SELECT count(*) FROM campaigns WHERE pause_reason IS NOT NULL"),
            0);
}

TEST_F(BouncesCliTest, GuardLeavesACampaignBelowMinSent) {
  write_config("[guard]\nmin_sent = 5\nmax_complaint_rate = 0.2\n");
  const auto campaign = sent_campaign(4);
  write_file(dir_ + "/c1.eml", redacted_complaint("g2", verp(ids_[0])));
  auto r = mailer({"bounces", "ingest", dir_ + "/c1.eml", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["paused"], 0);
  EXPECT_EQ(show(campaign)["status"], "running");
}

TEST_F(BouncesCliTest, StatusShowsEachCampaignsFeedbackAndItsRatesPerSentMessage) {
  const auto campaign = sent_campaign(8);
  const std::string maildir = dir_ + "/Maildir";
  std::filesystem::create_directories(maildir + "/new");
  std::filesystem::create_directories(maildir + "/cur");
  write_file(maildir + "/new/1.hard",
             dsn("sh1", verp(ids_[0]), emails_[0], "failed", "5.1.1", "550 5.1.1 user unknown"));
  write_file(maildir + "/new/2.hard",
             dsn("sh2", verp(ids_[1]), emails_[1], "failed", "5.1.1", "550 5.1.1 user unknown"));
  write_file(maildir + "/new/3.soft",
             dsn("ss1", verp(ids_[2]), emails_[2], "delayed", "4.2.2", "452 4.2.2 full"));
  write_file(maildir + "/new/4.complaint", redacted_complaint("sc1", verp(ids_[3])));
  write_file(maildir + "/new/5.auto", auto_reply("sa1", emails_[4], verp(ids_[4])));
  auto ingest = mailer({"bounces", "ingest", maildir, "--json"});
  ASSERT_EQ(ingest.exit_code, 0) << ingest.err;

  auto r = mailer({"status", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto st = nlohmann::json::parse(r.out);
  ASSERT_EQ(st["campaigns"].size(), 1u) << st;
  const auto& c = st["campaigns"][0];
  EXPECT_EQ(c["id"], campaign);
  const auto& f = c["feedback"];
  // Eight sent; the two hard bounces became bounced but still count as sent.
  EXPECT_EQ(f["sent"], 8) << f;
  EXPECT_EQ(f["hard"], 2) << f;
  EXPECT_EQ(f["soft"], 1) << f;
  EXPECT_EQ(f["complaints"], 1) << f;
  EXPECT_EQ(f["auto_replies"], 1) << f;
  EXPECT_EQ(f["unmatched"], 0) << f;
  EXPECT_DOUBLE_EQ(f["bounce_rate"].get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(f["soft_bounce_rate"].get<double>(), 0.125);
  EXPECT_DOUBLE_EQ(f["complaint_rate"].get<double>(), 0.125);
  EXPECT_DOUBLE_EQ(f["auto_reply_rate"].get<double>(), 0.125);
  EXPECT_EQ(c["counts"]["bounced"], 2);

  auto text = mailer({"status"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("feedback: hard 2 (25.00%) soft 1 (12.50%) complaints 1 (12.500%) "
                          "auto_replies 1 (12.50%) unmatched 0, of 8 sent"),
            std::string::npos)
      << text.out;
}

TEST_F(BouncesCliTest, StatusRatesAreZeroForACampaignThatSentNothing) {
  const auto list = seed_list(t_.url(), "idle", 3);
  seed_campaign(t_.url(), list, "running");
  auto r = mailer({"status", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto f = nlohmann::json::parse(r.out)["campaigns"][0]["feedback"];
  EXPECT_EQ(f["sent"], 0) << f;
  EXPECT_EQ(f["complaint_rate"], 0.0) << f;
  EXPECT_EQ(f["bounce_rate"], 0.0) << f;
}

}  // namespace
}  // namespace mailer::app
