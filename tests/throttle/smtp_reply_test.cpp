#include "throttle/smtp_reply.h"

#include <gtest/gtest.h>

namespace mailer::throttle {
namespace {

TEST(SmtpReply, ParsesMultiLineWireReply) {
  auto parsed = parse_smtp_reply(
      "421-4.7.28 Unusual rate from your IP.\r\n421-4.7.28 Rate limited for now.\r\n"
      "421 4.7.28 Retry later. - gsmtp\r\n",
      SmtpStage::kEndOfData);
  ASSERT_TRUE(parsed) << parsed.error;
  EXPECT_EQ(parsed.reply->code, 421);
  EXPECT_EQ(parsed.reply->enhanced_status, "4.7.28");
  EXPECT_EQ(parsed.reply->text,
            "Unusual rate from your IP.\nRate limited for now.\nRetry later. - gsmtp");
  EXPECT_EQ(parsed.reply->stage, SmtpStage::kEndOfData);
  EXPECT_TRUE(parsed.reply->transient_failure());
}

TEST(SmtpReply, ParsesJoinedLogLineWithContinuationDash) {
  auto parsed = parse_smtp_reply(
      "421-4.7.0 TLS required for RCPT domain, closing connection. - gsmtp", SmtpStage::kEndOfData);
  ASSERT_TRUE(parsed) << parsed.error;
  EXPECT_EQ(parsed.reply->code, 421);
  EXPECT_EQ(parsed.reply->enhanced_status, "4.7.0");
  EXPECT_EQ(parsed.reply->text, "TLS required for RCPT domain, closing connection. - gsmtp");
}

TEST(SmtpReply, ParsesRepliesWithoutEnhancedStatus) {
  auto parsed = parse_smtp_reply("421 Service not available, closing transmission channel\n",
                                 SmtpStage::kGreeting);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed.reply->enhanced_status, "");
  EXPECT_EQ(parsed.reply->text, "Service not available, closing transmission channel");

  auto yahoo =
      parse_smtp_reply("552 1 Requested mail action aborted, mailbox not found", SmtpStage::kRcpt);
  ASSERT_TRUE(yahoo);
  EXPECT_EQ(yahoo.reply->enhanced_status, "");
  EXPECT_EQ(yahoo.reply->text, "1 Requested mail action aborted, mailbox not found");
}

TEST(SmtpReply, IgnoresEnhancedCodeOfAnotherClass) {
  auto parsed = parse_smtp_reply("550 4.2.2 odd server", SmtpStage::kRcpt);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed.reply->enhanced_status, "");
  EXPECT_EQ(parsed.reply->text, "4.2.2 odd server");
}

TEST(SmtpReply, AcceptsBareCode) {
  auto parsed = parse_smtp_reply("250", SmtpStage::kQuit);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed.reply->code, 250);
  EXPECT_EQ(parsed.reply->text, "");
}

TEST(SmtpReply, RejectsGarbageWithReasons) {
  struct Case {
    const char* raw;
    const char* error;
  };
  const Case cases[] = {
      {"", "empty reply"},
      {"hello", "line 1: does not start with a three-digit code"},
      {"42 short", "line 1: does not start with a three-digit code"},
      {"621 nope", "line 1: code 621 is not 2xx..5xx"},
      {"421x4.7.0 text", "line 1: expected ' ' or '-' after the code"},
      {"421-a\r\n450 b", "line 2: code 450 differs from 421 on line 1"},
      {"421 a\r\n421 b", "line 1: reply ends before the last line"},
  };
  for (const Case& c : cases) {
    auto parsed = parse_smtp_reply(c.raw, SmtpStage::kMail);
    EXPECT_FALSE(parsed) << c.raw;
    EXPECT_EQ(parsed.error, c.error) << c.raw;
  }
  EXPECT_FALSE(parse_smtp_reply(std::string(kMaxReplyBytes + 1, '4'), SmtpStage::kMail));
}

TEST(SmtpReply, FormatsWireFormThatParsesBack) {
  SmtpReply reply{451, "4.7.650", "first line\nsecond line", SmtpStage::kMail};
  std::string wire = format_smtp_reply(reply);
  EXPECT_EQ(wire, "451-4.7.650 first line\r\n451 4.7.650 second line\r\n");
  auto parsed = parse_smtp_reply(wire, SmtpStage::kMail);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed.reply->code, reply.code);
  EXPECT_EQ(parsed.reply->enhanced_status, reply.enhanced_status);
  EXPECT_EQ(parsed.reply->text, reply.text);

  SmtpReply bare{250, "", "ok", SmtpStage::kEndOfData};
  EXPECT_EQ(format_smtp_reply(bare), "250 ok\r\n");
}

// Found by the reply fuzz target: a last line with the code alone left an
// empty last text line that the wire form dropped.
TEST(SmtpReply, WireFormKeepsAnEmptyLastLine) {
  auto parsed = parse_smtp_reply("421-4.7.28 Slow down\n421\n", SmtpStage::kGreeting);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->text, "Slow down\n");
  auto again = parse_smtp_reply(format_smtp_reply(*parsed), SmtpStage::kGreeting);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->text, parsed->text);
  EXPECT_EQ(again->enhanced_status, "4.7.28");
}

TEST(SmtpReply, ParsesLinesSplitByTheTransport) {
  std::vector<std::string> lines = {"450-4.2.1 The user is receiving mail too quickly.\r\n",
                                    "450 4.2.1 Please resend later."};
  auto parsed = parse_smtp_reply(lines, SmtpStage::kRcpt);
  ASSERT_TRUE(parsed) << parsed.error;
  EXPECT_EQ(parsed->code, 450);
  EXPECT_EQ((*parsed).text, "The user is receiving mail too quickly.\nPlease resend later.");
  EXPECT_FALSE(parse_smtp_reply(std::vector<std::string>{}, SmtpStage::kRcpt));
}

TEST(SmtpReply, PrintsOneLineForLogsAndPatterns) {
  SmtpReply reply{421, "4.7.28", "a\nb", SmtpStage::kEndOfData};
  EXPECT_EQ(one_line(reply), "421 4.7.28 a b");
}

TEST(SmtpReply, StageNamesRoundTrip) {
  for (SmtpStage s : {SmtpStage::kGreeting, SmtpStage::kHelo, SmtpStage::kMail, SmtpStage::kRcpt,
                      SmtpStage::kData, SmtpStage::kEndOfData, SmtpStage::kQuit}) {
    EXPECT_EQ(parse_stage(stage_name(s)), s);
  }
  EXPECT_EQ(stage_name(SmtpStage::kEndOfData), "eod");
  EXPECT_EQ(parse_stage("bogus"), std::nullopt);
}

}  // namespace
}  // namespace mailer::throttle
