// The SMTP conversation of `mailer inbound` (SmtpSession) without I/O:
// sequencing, relay refusal, size and line limits, pipelining, the end of
// data, STARTTLS input discarding and the shutdown rules.
#include "app/inbound/smtp_session.h"

#include <gtest/gtest.h>

namespace mailer::app {
namespace {

SmtpSessionOptions opts() {
  SmtpSessionOptions o;
  o.hostname = "in.example.test";
  o.domains = {"Bounces.Example.Test."};
  o.max_message_size = 200;
  o.max_command_line = 64;
  o.max_data_line = 80;
  o.max_recipients = 2;
  o.max_errors = 5;
  return o;
}

// Feeds `bytes` and steps once.
SmtpStep say(SmtpSession& s, const std::string& bytes) {
  s.feed(bytes);
  return s.step();
}

TEST(SmtpSession, AFullTransactionDeliversTheDotUnstuffedMessage) {
  SmtpSession s(opts());
  EXPECT_EQ(s.greeting(), "220 in.example.test ESMTP mailer inbound\r\n");
  auto st = say(s, "EHLO client\r\n");
  EXPECT_NE(st.replies.find("250-SIZE 200\r\n"), std::string::npos) << st.replies;
  EXPECT_EQ(st.replies.find("STARTTLS"), std::string::npos) << st.replies;
  EXPECT_EQ(say(s, "MAIL FROM:<>\r\n").replies, "250 2.1.0 Ok\r\n");
  EXPECT_EQ(say(s, "RCPT TO:<bounce+1-x@bounces.example.TEST>\r\n").replies, "250 2.1.5 Ok\r\n");
  EXPECT_EQ(say(s, "DATA\r\n").replies.substr(0, 3), "354");
  st = say(s, "Subject: x\r\n\r\n..leading dot\r\nbare\nline\r\n.\r\n");
  ASSERT_EQ(st.action, SmtpAction::kMessage);
  EXPECT_EQ(s.message(), "Subject: x\r\n\r\n.leading dot\r\nbare\r\nline\r\n");
  EXPECT_EQ(s.sender(), "");
  EXPECT_EQ(s.recipients(), std::vector<std::string>{"bounce+1-x@bounces.example.TEST"});
  EXPECT_EQ(s.message_done(SmtpDelivery::kAccepted).substr(0, 3), "250");
  EXPECT_FALSE(s.in_transaction());
}

TEST(SmtpSession, ForeignDomainsGet550AtRcpt) {
  SmtpSession s(opts());
  say(s, "HELO c\r\nMAIL FROM:<a@b.test>\r\n");
  EXPECT_EQ(say(s, "RCPT TO:<x@example.com>\r\n").replies.substr(0, 3), "550");
  EXPECT_EQ(say(s, "RCPT TO:<x@bounces.example.test.evil>\r\n").replies.substr(0, 3), "550");
  EXPECT_EQ(say(s, "RCPT TO:<x@sub.bounces.example.test>\r\n").replies.substr(0, 3), "550");
  EXPECT_EQ(say(s, "RCPT TO:<@relay.test:x@bounces.example.test>\r\n").replies.substr(0, 3), "250");
  EXPECT_EQ(say(s, "DATA\r\n").replies.substr(0, 3), "354");
}

TEST(SmtpSession, OutOfOrderCommandsGet503AndTooManyErrorsClose) {
  SmtpSession s(opts());
  EXPECT_EQ(say(s, "MAIL FROM:<>\r\n").replies.substr(0, 3), "503");
  say(s, "EHLO c\r\n");
  EXPECT_EQ(say(s, "RCPT TO:<x@bounces.example.test>\r\n").replies.substr(0, 3), "503");
  EXPECT_EQ(say(s, "DATA\r\n").replies.substr(0, 3), "503");
  EXPECT_EQ(say(s, "BOGUS\r\n").replies.substr(0, 3), "500");
  const auto st = say(s, "MAIL FROM:bad\r\n");
  EXPECT_EQ(st.action, SmtpAction::kClose);
  EXPECT_NE(st.replies.find("421"), std::string::npos) << st.replies;
}

TEST(SmtpSession, SizeParameterOverTheLimitGets552) {
  SmtpSession s(opts());
  say(s, "EHLO c\r\n");
  EXPECT_EQ(say(s, "MAIL FROM:<> SIZE=201\r\n").replies.substr(0, 3), "552");
  EXPECT_EQ(say(s, "MAIL FROM:<> SIZE=99999999999999999999999\r\n").replies.substr(0, 3), "552");
  EXPECT_EQ(say(s, "MAIL FROM:<> SIZE=200\r\n").replies.substr(0, 3), "250");
}

TEST(SmtpSession, MessageGrowingPastTheLimitDuringDataGets552AndIsNotDelivered) {
  SmtpSession s(opts());
  say(s, "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@bounces.example.test>\r\nDATA\r\n");
  std::string body;
  for (int i = 0; i < 5; ++i) body += std::string(60, 'x') + "\r\n";
  const auto st = say(s, body + ".\r\nNOOP\r\n");
  EXPECT_EQ(st.action, SmtpAction::kNeedInput);
  EXPECT_EQ(st.replies,
            "552 5.3.4 Message size exceeds fixed maximum message size\r\n250 2.0.0 Ok\r\n");
}

TEST(SmtpSession, OverlongLinesAreRefusedWithoutBufferingThem) {
  SmtpSession s(opts());
  say(s, "EHLO c\r\n");
  // Sent in pieces with no line end for longer than the limit.
  EXPECT_EQ(say(s, "NOOP " + std::string(100, 'a')).replies, "");
  EXPECT_EQ(say(s, std::string(100, 'a') + "\r\nNOOP\r\n").replies,
            "500 5.5.2 Line too long\r\n250 2.0.0 Ok\r\n");
  say(s, "MAIL FROM:<>\r\nRCPT TO:<a@bounces.example.test>\r\nDATA\r\n");
  const auto st = say(s, std::string(90, 'y') + "\r\n.\r\n");
  EXPECT_EQ(st.action, SmtpAction::kNeedInput);
  EXPECT_EQ(st.replies.substr(0, 3), "554") << st.replies;
}

TEST(SmtpSession, OnlyDotCrlfEndsTheMessage) {
  SmtpSession s(opts());
  say(s, "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@bounces.example.test>\r\nDATA\r\n");
  auto st = say(s, "a\r\n.\nb\r\n");
  EXPECT_EQ(st.action, SmtpAction::kNeedInput);
  st = say(s, ".\r\n");
  ASSERT_EQ(st.action, SmtpAction::kMessage);
  EXPECT_EQ(s.message(), "a\r\n\r\nb\r\n");
}

TEST(SmtpSession, PipelinedCommandsAfterDataWaitForTheDeliveryOutcome) {
  SmtpSession s(opts());
  auto st = say(s,
                "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@bounces.example.test>\r\nDATA\r\nx\r\n.\r\n"
                "MAIL FROM:<>\r\nQUIT\r\n");
  ASSERT_EQ(st.action, SmtpAction::kMessage);
  EXPECT_NE(st.replies.find("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354"), std::string::npos)
      << st.replies;
  EXPECT_EQ(s.step().action, SmtpAction::kMessage);  // still waiting
  EXPECT_EQ(s.message_done(SmtpDelivery::kTransient),
            "451 4.3.0 Temporary failure, try again later\r\n");
  st = s.step();
  EXPECT_EQ(st.replies, "250 2.1.0 Ok\r\n221 2.0.0 Bye\r\n");
  EXPECT_EQ(st.action, SmtpAction::kClose);
}

TEST(SmtpSession, TooManyRecipientsGet452) {
  SmtpSession s(opts());
  say(s, "EHLO c\r\nMAIL FROM:<>\r\n");
  say(s, "RCPT TO:<a@bounces.example.test>\r\nRCPT TO:<b@bounces.example.test>\r\n");
  EXPECT_EQ(say(s, "RCPT TO:<c@bounces.example.test>\r\n").replies.substr(0, 3), "452");
}

TEST(SmtpSession, StartTlsDiscardsWhatWasSentBeforeTheHandshake) {
  SmtpSessionOptions o = opts();
  o.tls_available = true;
  SmtpSession s(o);
  EXPECT_NE(say(s, "EHLO c\r\n").replies.find("250-STARTTLS"), std::string::npos);
  const auto st = say(s, "STARTTLS\r\nMAIL FROM:<injected@x>\r\n");
  EXPECT_EQ(st.action, SmtpAction::kStartTls);
  EXPECT_EQ(st.replies, "220 2.0.0 Ready to start TLS\r\n");
  s.tls_started();
  EXPECT_EQ(s.step().replies, "");
  EXPECT_EQ(say(s, "MAIL FROM:<>\r\n").replies.substr(0, 3), "503");  // EHLO again first
  EXPECT_EQ(say(s, "EHLO c\r\n").replies.find("STARTTLS"), std::string::npos);
  EXPECT_EQ(say(s, "STARTTLS\r\n").replies.substr(0, 3), "502");
}

TEST(SmtpSession, ShutdownRefusesNewTransactionsButFinishesTheOneUnderWay) {
  SmtpSession s(opts());
  say(s, "EHLO c\r\nMAIL FROM:<>\r\n");
  s.begin_shutdown();
  EXPECT_EQ(say(s, "RCPT TO:<a@bounces.example.test>\r\n").replies.substr(0, 3), "250");
  auto st = say(s, "DATA\r\nx\r\n.\r\n");
  ASSERT_EQ(st.action, SmtpAction::kMessage);
  s.message_done(SmtpDelivery::kAccepted);
  st = say(s, "MAIL FROM:<>\r\n");
  EXPECT_EQ(st.replies.substr(0, 3), "421");
  EXPECT_EQ(st.action, SmtpAction::kClose);
}

TEST(SmtpSession, LogEscapeKeepsPrintableAsciiAndEscapesTheRest) {
  EXPECT_EQ(log_escape("a b\r\n\x1b[31m\"\\\xff"), "a b\\x0d\\x0a\\x1b[31m\\x22\\x5c\\xff");
  EXPECT_EQ(log_escape(std::string(10, 'z'), 4), "zzzz...");
}

TEST(SmtpSession, RecipientDomainIgnoresCaseTrailingDotsAndSourceRoutes) {
  EXPECT_EQ(recipient_domain("A@B.Example."), "b.example");
  EXPECT_EQ(recipient_domain("@r1,@r2:u@D.test"), "d.test");
  EXPECT_EQ(recipient_domain("\"a@b\"@c.test"), "c.test");
  EXPECT_EQ(recipient_domain("nodomain"), "");
  EXPECT_EQ(recipient_domain("@x.test"), "");
}

}  // namespace
}  // namespace mailer::app
