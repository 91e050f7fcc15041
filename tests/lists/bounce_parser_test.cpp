// The bounce parser on the corpus under tests/data/bounces/ (one message per
// file, named by MTA and case) and on messages built here for the edges:
// line ends, encodings, nesting, limits and hostile input.
//
// The corpus follows each MTA's and provider's own layout (notice wording,
// DSN fields, header set, line ends, encodings) with addresses under example
// domains; the quoted originals carry what our composer writes (Message-ID
// <delivery.campaign@domain>, VERP Return-Path, Feedback-ID,
// List-Unsubscribe). tests/lists/sisimai_compare.sh checks it against
// Sisimai.
#include "lists/bounce_parser.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "lists/mime_reader.h"

namespace mailer::lists {
namespace {

const std::filesystem::path kCorpus =
    std::filesystem::path(MAILER_SOURCE_DIR) / "tests/data/bounces";

std::string read_sample(const std::string& name) {
  std::ifstream in(kCorpus / name, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

struct Expected {
  std::string address;
  FeedbackKind kind;
  std::string status;
};

// What each sample says, recipient by recipient.
const std::map<std::string, std::vector<Expected>>& corpus_expectations() {
  using K = FeedbackKind;
  static const std::map<std::string, std::vector<Expected>> table = {
      {"amazonses-dsn-user-unknown.eml", {{"mona@ses-dest.example", K::kHard, "5.1.1"}}},
      {"amazonses-json-bounce.eml", {{"nora@ses-dest.example", K::kHard, "5.1.1"}}},
      {"amazonses-json-complaint.eml", {{"olga@ses-dest.example", K::kComplaint, ""}}},
      {"arf-aol-to-only.eml", {{"tom.complains@aol.com", K::kComplaint, ""}}},
      {"arf-microsoft-jmrp-redacted.eml", {}},
      {"arf-yahoo-abuse.eml", {{"sara.reports@yahoo.com", K::kComplaint, ""}}},
      {"autoreply-exchange-automatic-reply.eml",
       {{"vera.lindqvist@contoso.example", K::kAutoReply, ""}}},
      {"autoreply-rfc3834-vacation.eml", {{"uli.becker@firma.example", K::kAutoReply, ""}}},
      {"autoreply-x-autoreply-header.eml", {{"will@smallbiz.example", K::kAutoReply, ""}}},
      {"courier-user-unknown.eml", {{"paul@courier.example", K::kHard, "5.0.0"}}},
      {"exchange2003-user-unknown.eml", {{"yolanda@corp2003.example", K::kHard, "5.1.1"}}},
      {"exchange2013-recipient-not-found.eml", {{"zach@corp.example", K::kHard, "5.1.1"}}},
      {"exim-delay-warning.eml", {{"quinn@slowhost.example", K::kSoft, "4.7.1"}}},
      {"exim-mailbox-quota.eml", {{"mike@remote.example", K::kSoft, "5.2.2"}}},
      {"exim-two-recipients.eml",
       {{"oscar@remote.example", K::kHard, "5.0.0"}, {"pam@remote.example", K::kSoft, "5.7.1"}}},
      {"exim-unrouteable.eml", {{"nina@gone.example", K::kHard, ""}}},
      {"exim-user-unknown.eml", {{"lena@remote.example", K::kHard, "5.1.1"}}},
      {"gmail-account-disabled.eml", {{"eve.disabled@gmail.com", K::kSoft, "5.2.1"}}},
      {"gmail-legacy-text.eml", {{"hal@legacy-dest.example", K::kHard, "5.1.1"}}},
      {"gmail-no-such-user.eml", {{"dan.nosuchuser@gmail.com", K::kHard, "5.1.1"}}},
      {"gmail-over-quota.eml", {{"fay.full@gmail.com", K::kSoft, "4.2.2"}}},
      {"gmail-rate-limited.eml", {{"gus@gmail.com", K::kSoft, "4.7.28"}}},
      {"not-a-report-human-reply.eml", {}},
      {"not-a-report-newsletter.eml", {}},
      {"office365-blocked-spam.eml", {{"cara@fabrikam.example", K::kSoft, "5.7.1"}}},
      {"office365-mailbox-full.eml", {{"ben@contoso.example", K::kSoft, "5.2.2"}}},
      {"office365-recipient-not-found.eml", {{"amy@contoso.example", K::kSoft, "5.1.10"}}},
      {"opensmtpd-legacy-text.eml", {{"rachel@nxdomain-dest.example", K::kHard, ""}}},
      {"opensmtpd-user-unknown-text.eml", {{"quentin@openbsd-dest.example", K::kHard, "5.1.1"}}},
      // "mailbox unavailable" with neither a mailbox status nor the command
      // it answered: the words alone do not prove the address dead.
      {"outlookcom-mailbox-unavailable.eml", {{"ivy.gone@hotmail.com", K::kSoft, "5.5.0"}}},
      {"postfix-bare-cr-user-unknown.eml", {{"judy@recipient.example", K::kHard, "5.1.1"}}},
      {"postfix-crlf-user-unknown.eml", {{"ivan@recipient.example", K::kHard, "5.1.1"}}},
      {"postfix-delayed.eml", {{"grace@slow.example", K::kSoft, "4.4.1"}}},
      {"postfix-host-unknown.eml", {{"carol@no-such-domain.example", K::kHard, "5.4.4"}}},
      {"postfix-mailbox-full.eml", {{"bob@mailhost.example", K::kSoft, "5.2.2"}}},
      {"postfix-multiple-recipients.eml",
       {{"erin@corp.example", K::kHard, "5.1.1"}, {"frank@corp.example", K::kSoft, "5.7.1"}}},
      {"postfix-null-mx.eml", {{"dave@nullmx.example", K::kHard, "5.1.10"}}},
      {"postfix-spamhaus-block.eml", {{"kim@isp.example", K::kSoft, "5.7.1"}}},
      {"postfix-success.eml", {{"heidi@receiver.example", K::kDelivered, "2.0.0"}}},
      {"postfix-user-unknown.eml", {{"alice.smith@recipient.example", K::kHard, "5.1.1"}}},
      {"qmail-host-unknown.eml", {{"wendy@nohost.example", K::kHard, "5.1.2"}}},
      {"qmail-no-mailbox.eml", {{"uma@qmailhost.example", K::kHard, "5.1.1"}}},
      {"qmail-over-quota.eml", {{"xavier@qmailhost.example", K::kSoft, "5.2.2"}}},
      {"qmail-remote-blocked.eml", {{"victor@isp2.example", K::kSoft, "5.7.1"}}},
      {"sendmail-host-unknown-text.eml", {{"tina@unknown-host.example", K::kHard, "5.0.0"}}},
      {"sendmail-mailbox-full.eml", {{"sam@dest.example", K::kSoft, "5.2.2"}}},
      {"sendmail-user-unknown.eml", {{"rita@dest.example", K::kHard, "5.1.1"}}},
      {"yahoo-mailbox-disabled.eml", {{"kate.old@yahoo.com", K::kSoft, "5.0.0"}}},
      {"yahoo-no-account.eml", {{"jack.nobody@yahoo.com", K::kSoft, "5.0.0"}}},
      {"yahoo-ts03-blocked.eml", {{"liam@yahoo.com", K::kSoft, "5.7.1"}}},
      {"exim-retry-timeout.eml", {{"yusuf@flaky.example", K::kSoft, ""}}},
      {"exim-forwarded-alias.eml", {{"zoe@forwarder.example", K::kHard, "5.1.1"}}},
      {"postfix-forwarded-original-recipient.eml", {{"abe@final.example", K::kSoft, "5.2.2"}}},
      {"postfix-legacy-text.eml", {{"bea@legacy.example", K::kHard, "5.1.1"}}},
      {"sendmail-delay-warning.eml", {{"carl@sluggish.example", K::kSoft, "4.4.1"}}},
      {"domino-not-listed.eml", {{"dora@lotus.example", K::kHard, ""}}},
      {"office365-relay-denied.eml", {{"ed@partner.example", K::kSoft, "5.7.54"}}},
      {"gmail-unsolicited-blocked.eml", {{"fern@gmail.com", K::kSoft, "5.7.1"}}},
      {"amazonses-json-transient.eml", {{"gil@ses-dest.example", K::kSoft, "5.2.2"}}},
      {"arf-base64-embedded.eml", {{"hugo.spamclick@example-isp.example", K::kComplaint, ""}}},
      {"autoreply-german-abwesenheit.eml", {{"ines.maier@firma.example", K::kAutoReply, ""}}},
      {"not-a-report-vacation-talk.eml", {}},
      {"exim-local-part-only.eml", {{"ken@relay-dest.example", K::kHard, "5.1.1"}}},
      {"amazonses-json-direct-footer.eml", {{"lou@ses-dest.example", K::kHard, "5.1.1"}}},
      {"outlookcom-blocklist-s3150.eml", {{"jo.live@outlook.com", K::kSoft, "5.7.1"}}},
      {"courier-mailbox-full.eml", {{"quin@courier.example", K::kSoft, "5.0.0"}}},
      {"gmail-legacy-dns-error.eml", {{"ray@no-such-host.example", K::kHard, ""}}},
      {"exchange2010-text-only.eml", {{"sue@corp2010.example", K::kHard, "5.1.1"}}},
      {"verizon-broken-boundary-fold.eml", {{"5550100123@vtext.example", K::kHard, "5.0.0"}}},
      {"pmdf-inline-dsn-fields.eml", {{"tom@pmdf-dest.example", K::kSoft, "5.7.1"}}},
  };
  return table;
}

TEST(BounceParserCorpus, EverySampleHasAnExpectation) {
  std::set<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(kCorpus)) {
    files.insert(entry.path().filename().string());
  }
  ASSERT_GE(files.size(), 60u);
  for (const std::string& file : files) {
    EXPECT_TRUE(corpus_expectations().contains(file)) << file << " has no expectation";
  }
}

TEST(BounceParserCorpus, ReadsEveryRecipientKindAndStatus) {
  for (const auto& [file, expected] : corpus_expectations()) {
    SCOPED_TRACE(file);
    const BounceReport report = parse_bounce(read_sample(file));
    ASSERT_EQ(report.recipients.size(), expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) {
      EXPECT_EQ(report.recipients[i].address, expected[i].address);
      EXPECT_EQ(to_string(report.recipients[i].kind), to_string(expected[i].kind))
          << report.recipients[i].diagnostic;
      EXPECT_EQ(report.recipients[i].status, expected[i].status);
      EXPECT_FALSE(report.recipients[i].diagnostic.empty());
    }
  }
}

TEST(BounceParserCorpus, FindsTheOriginalMessageIdWhereTheReportQuotesIt) {
  for (const auto& [file, expected] : corpus_expectations()) {
    if (file.starts_with("not-a-report") || file.starts_with("exchange2003") ||
        file.starts_with("domino") || file.starts_with("pmdf") ||
        file == "autoreply-x-autoreply-header.eml") {
      continue;  // these quote nothing of the original
    }
    SCOPED_TRACE(file);
    const BounceReport report = parse_bounce(read_sample(file));
    EXPECT_TRUE(report.original.message_id.ends_with(".7@news.example.com>"))
        << report.original.message_id;
  }
}

// The corpus under tests/data/bounces-mta/ was written by the MTAs
// themselves (tests/lists/bounce_corpus/generate.sh): each relayed messages
// to a peer that refused recipient rNN.* with reply rule NN. File names follow
// arrival order, so the tests find a bounce by the recipient it names.
const std::filesystem::path kMtaCorpus =
    std::filesystem::path(MAILER_SOURCE_DIR) / "tests/data/bounces-mta";

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// The first failure notice (not a delay warning: no 4.x.x status) that
// names `address`.
std::string mta_bounce_for(const std::string& mta, const std::string& address) {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(kMtaCorpus / mta)) {
    if (entry.path().extension() == ".eml") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& path : files) {
    std::string text = read_file(path);
    if (text.find(address) == std::string::npos) continue;
    const BounceReport report = parse_bounce(text);
    for (const BounceRecipient& r : report.recipients) {
      if (r.address == address && !r.status.starts_with('4')) return text;
    }
  }
  return {};
}

TEST(BounceParserMtaCorpus, ReadsEveryRecipientAndTheQuotedOriginalOfEveryBounce) {
  std::size_t files = 0;
  std::size_t recipients = 0;
  for (const auto& dir : std::filesystem::directory_iterator(kMtaCorpus)) {
    if (!dir.is_directory()) continue;
    const std::string mta = dir.path().filename().string();
    for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
      if (entry.path().extension() != ".eml") continue;
      SCOPED_TRACE(entry.path().string());
      ++files;
      const BounceReport report = parse_bounce(read_file(entry.path()));
      ASSERT_FALSE(report.recipients.empty());
      for (const BounceRecipient& r : report.recipients) {
        ++recipients;
        // Only the refused messages' recipients, never the return path,
        // the sender or the reporting host. An auto-reply names who replied
        // (its From:, which a vacation :from may set to another address).
        if (r.kind != FeedbackKind::kAutoReply) {
          EXPECT_NE(r.address.find("." + mta + "@"), std::string::npos) << r.address;
        }
        EXPECT_FALSE(r.diagnostic.empty()) << r.address;
      }
      EXPECT_TRUE(report.original.message_id.ends_with("." + mta + "@news.example.com>"))
          << report.original.message_id;
    }
  }
  EXPECT_GE(files, 1000u);
  EXPECT_GE(recipients, 1200u);
}

// Words of an unknown user ("550 No such user - psmtp", no mailbox status)
// are hard where the report shows they answered RCPT TO, and soft where it
// does not say (OpenSMTPD's notices name no command).
TEST(BounceParserMtaCorpus, UnknownUserWordsAreHardOnlyInAnswerToRcpt) {
  struct Case {
    std::string mta;
    FeedbackKind kind;
  };
  const Case cases[] = {{"postfix", FeedbackKind::kHard},  // "(in reply to RCPT TO command)"
                        {"exim", FeedbackKind::kHard},     // "after RCPT TO:<...>:"
                        {"courier", FeedbackKind::kHard},  // " >>> RCPT TO:<...>"
                        {"dma", FeedbackKind::kHard},      // "did not like our RCPT TO:"
                        {"opensmtpd", FeedbackKind::kSoft}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.mta);
    const std::string address = "r9.a." + c.mta + "@example.net";
    const std::string text = mta_bounce_for(c.mta, address);
    ASSERT_FALSE(text.empty());
    const BounceReport report = parse_bounce(text);
    ASSERT_EQ(report.recipients.size(), 1u);
    EXPECT_EQ(report.recipients[0].address, address);
    EXPECT_NE(report.recipients[0].diagnostic.find("550 No such user - psmtp"), std::string::npos)
        << report.recipients[0].diagnostic;
    EXPECT_EQ(to_string(report.recipients[0].kind), to_string(c.kind));
  }
}

// Dovecot's answers for its mailboxes (tests/lists/bounce_corpus/mta/
// dovecot.sh): a Sieve vacation reply, a Sieve reject (an MDN, RFC 5429) and
// a refusal over quota (a DSN). None of them says the address is dead.
TEST(BounceParserMtaCorpus, DovecotVacationRejectAndQuota) {
  // Recipients r1.b, r2.b and r4.b are answered by a vacation, a reject
  // and the full mailbox (users by rule number, tests/lists/bounce_corpus).
  std::string reject = mta_bounce_for("dovecot", "r2.b.dovecot@example.net");
  ASSERT_FALSE(reject.empty());
  BounceReport report = parse_bounce(reject);
  EXPECT_EQ(report.format, ReportFormat::kDispositionNotification);
  ASSERT_EQ(report.recipients.size(), 1u);
  EXPECT_EQ(to_string(report.recipients[0].kind), "soft");
  EXPECT_NE(report.recipients[0].diagnostic.find("was automatically rejected"), std::string::npos);
  EXPECT_EQ(report.original.message_id, "<0006.dovecot@news.example.com>");

  std::string quota = mta_bounce_for("dovecot", "r4.b.dovecot@mail.example.com");
  ASSERT_FALSE(quota.empty());
  report = parse_bounce(quota);
  ASSERT_EQ(report.recipients.size(), 1u);
  EXPECT_EQ(report.recipients[0].status, "5.2.2");
  EXPECT_EQ(to_string(report.recipients[0].kind), "soft");

  // A read receipt is no report.
  const std::string receipt =
      "From: a@x.example\nTo: b@y.example\nSubject: Read: hello\nMIME-Version: 1.0\n"
      "Content-Type: multipart/report; report-type=disposition-notification; boundary=b\n\n"
      "--b\nContent-Type: text/plain\n\nYour message was displayed.\n--b\n"
      "Content-Type: message/disposition-notification\n\nFinal-Recipient: rfc822; a@x.example\n"
      "Disposition: manual-action/MDN-sent-manually; displayed\n--b--\n";
  EXPECT_EQ(parse_bounce(receipt).format, ReportFormat::kNotAReport);
}

// OpenSMTPD's DSN has no Diagnostic-Code: the reply comes from its notice,
// and the failure is classified on it rather than on "Status: 5.0.0" alone.
TEST(BounceParserMtaCorpus, OpenSmtpdReplyComesFromTheNotice) {
  const std::string address = "r0.a.opensmtpd@example.net";
  const BounceReport report = parse_bounce(mta_bounce_for("opensmtpd", address));
  ASSERT_EQ(report.recipients.size(), 1u);
  EXPECT_EQ(report.recipients[0].status, "5.1.1");
  EXPECT_EQ(to_string(report.recipients[0].kind), "hard");
  EXPECT_NE(report.recipients[0].diagnostic.find("User unknown in local recipient table"),
            std::string::npos);
}

TEST(BounceParser, PostfixDsnGivesTheVerpEnvelopeAndTheOriginalKeys) {
  const BounceReport report = parse_bounce(read_sample("postfix-user-unknown.eml"));
  EXPECT_EQ(report.format, ReportFormat::kDeliveryStatus);
  EXPECT_EQ(report.reporting_mta, "mta1.news.example.com");
  ASSERT_EQ(report.recipients.size(), 1u);
  EXPECT_EQ(report.recipients[0].diagnostic,
            "550 5.1.1 <alice.smith@recipient.example>: Recipient address rejected: User unknown "
            "in virtual mailbox table");
  const std::vector<std::pair<std::string, std::string>> verp = {
      {"To", "bounce+1001-5f3a9c2e1b7d@bounces.example.com"},
      {"Delivered-To", "bounce+1001-5f3a9c2e1b7d@bounces.example.com"}};
  EXPECT_EQ(report.verp_headers, verp);
  EXPECT_EQ(report.original.message_id, "<1001.7@news.example.com>");
  EXPECT_EQ(report.original.to, "alice.smith@recipient.example");
  EXPECT_EQ(report.original.return_path, "bounce+1001-5f3a9c2e1b7d@bounces.example.com");
  EXPECT_EQ(report.original.subject, "Your December newsletter");
  ASSERT_EQ(report.original.mailer_headers.size(), 2u);
  EXPECT_EQ(report.original.mailer_headers[0].first, "List-Unsubscribe");
  EXPECT_EQ(report.original.mailer_headers[1],
            (std::pair<std::string, std::string>{"Feedback-ID", "7:newsletter:examplenews"}));
}

TEST(BounceParser, RedactedComplaintNamesNoRecipientButKeepsTheDeliveryKeys) {
  const BounceReport report = parse_bounce(read_sample("arf-microsoft-jmrp-redacted.eml"));
  EXPECT_EQ(report.format, ReportFormat::kFeedbackReport);
  EXPECT_TRUE(report.recipients.empty());
  EXPECT_EQ(report.reporting_mta, "Microsoft JMRP/1.0");
  EXPECT_EQ(report.original.message_id, "<2103.7@news.example.com>");
  EXPECT_EQ(report.original.return_path, "bounce+2103-5f3a9c2e1b7d@bounces.example.com");
  EXPECT_FALSE(report.original.mailer_headers.empty());
}

TEST(BounceParser, ComplaintWithoutOriginalRcptToUsesTheQuotedTo) {
  const BounceReport report = parse_bounce(read_sample("arf-aol-to-only.eml"));
  ASSERT_EQ(report.recipients.size(), 1u);
  EXPECT_EQ(report.recipients[0].address, "tom.complains@aol.com");
  EXPECT_EQ(report.recipients[0].diagnostic, "abuse");
}

TEST(BounceParser, AutoReplyNamesItsSenderAndTheMessageItAnswers) {
  const BounceReport report = parse_bounce(read_sample("autoreply-rfc3834-vacation.eml"));
  EXPECT_EQ(report.format, ReportFormat::kAutoReply);
  ASSERT_EQ(report.recipients.size(), 1u);
  EXPECT_EQ(report.recipients[0].diagnostic, "Auto: Your December newsletter");
  EXPECT_EQ(report.original.message_id, "<2201.7@news.example.com>");
}

TEST(BounceParser, OrdinaryMailIsNotAReport) {
  for (const char* file : {"not-a-report-human-reply.eml", "not-a-report-newsletter.eml"}) {
    const BounceReport report = parse_bounce(read_sample(file));
    EXPECT_EQ(report.format, ReportFormat::kNotAReport) << file;
    EXPECT_TRUE(report.recipients.empty()) << file;
  }
}

// A small DSN written here, so that its line ends and encodings can vary.
std::string dsn(std::string_view final_recipient, std::string_view status,
                std::string_view diagnostic) {
  return std::string(
             "From: MAILER-DAEMON@mx.example.net\n"
             "To: bounce+42-abc@bounces.example.com\n"
             "Subject: Undelivered Mail Returned to Sender\n"
             "Content-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\n"
             "\n"
             "--b1\n"
             "Content-Type: text/plain\n"
             "\n"
             "Your message could not be delivered.\n"
             "--b1\n"
             "Content-Type: message/delivery-status\n"
             "\n"
             "Reporting-MTA: dns; mx.example.net\n"
             "\n"
             "Final-Recipient: rfc822; ") +
         std::string(final_recipient) +
         "\n"
         "Action: failed\n"
         "Status: " +
         std::string(status) +
         "\n"
         "Diagnostic-Code: smtp; " +
         std::string(diagnostic) +
         "\n"
         "--b1--\n";
}

std::string with_line_ends(std::string text, std::string_view eol) {
  std::string out;
  for (char c : text) {
    if (c == '\n') {
      out += eol;
    } else {
      out += c;
    }
  }
  return out;
}

TEST(BounceParser, ReadsLfCrlfAndBareCrAlike) {
  const std::string lf = dsn("<Someone@Example.COM>", "5.1.1", "550 5.1.1 User unknown");
  for (std::string_view eol : {"\n", "\r\n", "\r"}) {
    const BounceReport report = parse_bounce(with_line_ends(lf, eol));
    ASSERT_EQ(report.recipients.size(), 1u);
    EXPECT_EQ(report.recipients[0].address, "Someone@example.com");
    EXPECT_EQ(report.recipients[0].kind, FeedbackKind::kHard);
    EXPECT_EQ(report.recipients[0].diagnostic, "550 5.1.1 User unknown");
  }
}

TEST(BounceParser, DecodesBase64AndQuotedPrintableParts) {
  // A text bounce whose notice is base64, nested in a multipart/mixed inside
  // a multipart/alternative.
  const std::string notice =
      "Sorry, we were unable to deliver your message to the following address.\n\n"
      "<pat@example.org>:\nRemote host said: 550 5.1.1 no such user\n";
  const std::string base64 =
      "U29ycnksIHdlIHdlcmUgdW5hYmxlIHRvIGRlbGl2ZXIgeW91ciBtZXNzYWdlIHRvIHRoZSBmb2xs\n"
      "b3dpbmcgYWRkcmVzcy4KCjxwYXRAZXhhbXBsZS5vcmc+OgpSZW1vdGUgaG9zdCBzYWlkOiA1NTAg\n"
      "NS4xLjEgbm8gc3VjaCB1c2VyCg==";
  ASSERT_EQ(decode_base64(base64), notice);
  const std::string message =
      "From: MAILER-DAEMON@example.org\nSubject: Failure Notice\n"
      "Content-Type: multipart/alternative; boundary=outer\n\n"
      "--outer\nContent-Type: multipart/mixed; boundary=\"inner\"\n\n"
      "--inner\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\n" +
      base64 + "\n--inner--\n--outer--\n";
  const BounceReport report = parse_bounce(message);
  ASSERT_EQ(report.recipients.size(), 1u);
  EXPECT_EQ(report.recipients[0].address, "pat@example.org");
  EXPECT_EQ(report.recipients[0].kind, FeedbackKind::kHard);
  EXPECT_EQ(report.recipients[0].status, "5.1.1");

  EXPECT_EQ(decode_quoted_printable("caf=C3=A9 soft=\nbreak =ZZ"), "caf\xC3\xA9 softbreak =ZZ");
}

TEST(BounceParser, ReadsOurOwnHeadersFromTheQuotedOriginal) {
  const std::string message =
      "From: MAILER-DAEMON@mx.example.net\nTo: bounce+9-tag@bounces.example.com\n"
      "Subject: Undelivered Mail Returned to Sender\n"
      "Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n"
      "--b\nContent-Type: message/delivery-status\n\n"
      "Final-Recipient: rfc822; x@example.net\nAction: failed\nStatus: 5.2.2\n\n"
      "--b\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n" +
      std::string(
          "UmV0dXJuLVBhdGg6IDxib3VuY2UrOS10YWdAYm91bmNlcy5leGFtcGxlLmNvbT4KWC1NYWlsZXItQ2FtcGFpZ246"
          "IDcKTWVzc2FnZS1JRDogPDkuN0BleGFtcGxlLmNvbT4KCmJvZHkK") +
      "\n--b--\n";
  const BounceReport report = parse_bounce(message);
  ASSERT_EQ(report.recipients.size(), 1u);
  EXPECT_EQ(report.recipients[0].kind, FeedbackKind::kSoft);
  EXPECT_EQ(report.original.message_id, "<9.7@example.com>");
  EXPECT_EQ(report.original.return_path, "bounce+9-tag@bounces.example.com");
  ASSERT_EQ(report.original.mailer_headers.size(), 1u);
  EXPECT_EQ(report.original.mailer_headers[0],
            (std::pair<std::string, std::string>{"X-Mailer-Campaign", "7"}));
}

TEST(BounceParser, ForwardedSampleKeepsBothAddresses) {
  const BounceReport report = parse_bounce(read_sample("postfix-forwarded-original-recipient.eml"));
  ASSERT_EQ(report.recipients.size(), 1u);
  EXPECT_EQ(report.recipients[0].original_address, "abe@origin.example");
}

TEST(BounceParser, DsnWithoutDiagnosticCodeTakesTheNoticeLine) {
  const BounceReport report = parse_bounce(read_sample("sendmail-delay-warning.eml"));
  ASSERT_EQ(report.recipients.size(), 1u);
  EXPECT_TRUE(report.recipients[0].diagnostic.starts_with(
      "Deferred: Connection timed out with mx.sluggish.example."))
      << report.recipients[0].diagnostic;
}

TEST(BounceParser, KeepsOriginalRecipientApartWhenForwarded) {
  std::string message = dsn("final@forward.example", "5.2.2", "552 5.2.2 Mailbox full");
  const std::string final_line = "Final-Recipient: rfc822; final@forward.example\n";
  message.replace(message.find(final_line), final_line.size(),
                  "Original-Recipient: rfc822;orig@example.com\n" + final_line);
  const BounceReport report = parse_bounce(message);
  ASSERT_EQ(report.recipients.size(), 1u);
  EXPECT_EQ(report.recipients[0].address, "final@forward.example");
  EXPECT_EQ(report.recipients[0].original_address, "orig@example.com");
}

TEST(BounceParser, SplitsRecipientGroupsWithoutBlankLines) {
  std::string message = dsn("a@example.com", "5.1.1", "550 5.1.1 User unknown");
  const std::string end = "--b1--\n";
  message.insert(message.find(end),
                 "Final-Recipient: rfc822; b@example.com\nAction: failed\nStatus: 5.2.2\n"
                 "Diagnostic-Code: smtp; 552 mailbox full\n");
  const BounceReport report = parse_bounce(message);
  ASSERT_EQ(report.recipients.size(), 2u);
  EXPECT_EQ(report.recipients[0].kind, FeedbackKind::kHard);
  EXPECT_EQ(report.recipients[1].address, "b@example.com");
  EXPECT_EQ(report.recipients[1].kind, FeedbackKind::kSoft);
}

TEST(BounceParser, TruncatesAtTheSizeLimitAndCapsRecipients) {
  std::string message = dsn("a@example.com", "5.1.1", "550 5.1.1 User unknown");
  std::string many;
  for (int i = 0; i < 50; ++i) {
    many += "Final-Recipient: rfc822; r" + std::to_string(i) + "@example.com\nStatus: 5.1.1\n\n";
  }
  message.insert(message.find("--b1--\n"), many);
  BounceParserLimits limits;
  limits.max_recipients = 10;
  EXPECT_EQ(parse_bounce(message, limits).recipients.size(), 10u);
  limits.max_message_bytes = 100;
  const BounceReport cut = parse_bounce(message, limits);
  EXPECT_TRUE(cut.truncated);
  EXPECT_TRUE(cut.recipients.empty());
}

TEST(BounceParser, HostileInputNeitherThrowsNorNamesNonAddresses) {
  std::string deep = "Subject: failure notice\nContent-Type: multipart/mixed; boundary=a0\n\n";
  for (int i = 1; i < 200; ++i) {
    deep += "--a" + std::to_string(i - 1) + "\nContent-Type: multipart/mixed; boundary=a" +
            std::to_string(i) + "\n\n";
  }
  const std::vector<std::string> inputs = {
      "",
      "\r\r\r\n\n",
      "Content-Type: multipart/report; boundary=\"\"\n\n--\n--\n",
      "Content-Type: message/delivery-status\n\nFinal-Recipient: rfc822; <>\nAction: failed\n",
      "From: MAILER-DAEMON@x\nSubject: failure notice\n\n<@>:\n<a@>:\n<@b.c>:\n< >\n@@@\n",
      "Content-Transfer-Encoding: base64\n\n====////",
      "Content-Transfer-Encoding: quoted-printable\n\n=\n=4=",
      deep,
      std::string(4096, '<'),
      // Runs that a quadratic scan would take minutes over.
      "To: " + std::string(900000, '<') + ">\n\n",
      "From: MAILER-DAEMON@x\nSubject: failure notice\n\n" + std::string(100000, 'a') +
          std::string(800000, '@') + "\n",
      std::string("From: x\0y@example.com\n\n\0\0\0", 26),
  };
  for (const std::string& input : inputs) {
    const BounceReport report = parse_bounce(input);
    for (const BounceRecipient& r : report.recipients) {
      EXPECT_FALSE(r.address.empty());
      EXPECT_NE(r.address.find('@'), std::string::npos);
    }
  }
}

TEST(BounceParser, KeepsDiagnosticsWithinTheirBound) {
  // A long reason of one-letter words: every byte added after a space must
  // still respect the bound (the fuzzer found 1001).
  std::string reason;
  for (int i = 0; i < 800; ++i) reason += "a ";
  const std::string message =
      "From: MAILER-DAEMON@example.org\nSubject: failure notice\n\n<kai@example.org>:\n" + reason +
      "\n";
  const BounceReport report = parse_bounce(message);
  ASSERT_EQ(report.recipients.size(), 1u);
  EXPECT_EQ(report.recipients[0].diagnostic.size(), kMaxDiagnosticBytes - 1);
  EXPECT_LE(report.recipients[0].diagnostic.size(), kMaxDiagnosticBytes);
}

TEST(BounceClassifier, DeadAddressesAreHardAndEverythingElseSoft) {
  using K = FeedbackKind;
  struct Case {
    const char* status;
    const char* text;
    const char* action;
    K kind;
    const char* context = "";
  };
  const Case cases[] = {
      {"5.1.1", "550 5.1.1 User unknown", "failed", K::kHard},
      // Words of an unknown user: hard in answer to RCPT TO, soft after the
      // body (a filter's answer) or when the report does not say.
      {"5.0.0", "550 No such user here", "", K::kHard, "(in reply to RCPT TO command)"},
      {"5.0.0", "550 No such user here", "", K::kHard, ">>> RCPT TO:<a@x.example>"},
      {"5.0.0", "550 No such user here", "failed", K::kSoft},
      {"5.0.0", "550 No such user here", "failed", K::kSoft, "(in reply to end of DATA command)"},
      {"5.0.0", "550 No such user here", "failed", K::kSoft,
       "a@x.example:\n>>> DATA\n<<< 550 No such user here"},
      // A transcript goes on with other recipients' commands.
      {"5.0.0", "550 No such user here", "failed", K::kHard,
       ">>> RCPT TO:<a@x.example>\n<<< 550 No such user here\n>>> RCPT TO:<b@x.example>\n"
       "<<< 250 OK\n>>> DATA\n<<< 554 5.7.1 spam"},
      {"5.1.1", "550 5.1.1 No such user here", "failed", K::kHard},
      {"5.0.0", "User dora not listed in Domino Directory", "failed", K::kHard},
      {"5.1.2", "", "failed", K::kHard},
      {"5.1.10", "Domain does not accept mail (nullMX)", "failed", K::kHard},
      {"5.1.10", "550 5.1.10 Recipient address has null MX", "failed", K::kHard},
      // Exchange's 5.1.10 is an unknown recipient, not a null MX.
      {"5.1.10",
       "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address "
       "lookup",
       "failed", K::kHard, "(in reply to RCPT TO command)"},
      {"5.1.10",
       "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address "
       "lookup",
       "failed", K::kSoft},
      {"5.1.6", "551 5.1.6 Recipient has moved; no forwarding address", "failed", K::kHard},
      {"5.4.4", "Host or domain name not found", "failed", K::kHard},
      {"5.2.2", "552 5.2.2 Mailbox full", "failed", K::kSoft},
      {"5.1.1", "550 5.1.1 mailbox full", "failed", K::kSoft},
      {"5.7.1", "554 5.7.1 blocked using zen.spamhaus.org; user unknown", "failed", K::kSoft},
      {"5.0.0", "550 Message rejected", "failed", K::kSoft},
      {"5.7.1", "550 5.7.1 550 User Unknown: a@example.org", "failed", K::kSoft},
      {"4.1.1", "450 4.1.1 User unknown in local recipient table", "failed", K::kSoft},
      {"5.1.1", "550 5.1.1 User unknown", "delayed", K::kSoft},
      {"2.0.0", "250 OK", "delivered", K::kDelivered},
      {"", "", "relayed", K::kDelivered},
      {"", "", "", K::kSoft},
      // A 4xx the MTA gave up on after its queue time.
      {"5.0.0",
       "450 4.1.1 <a@x.example>: Recipient address rejected: unverified address: "
       "host mx.x.example said: 550 5.1.1 User unknown",
       "failed", K::kSoft},
      {"5.0.0", "<command failed> 450 4.1.1 <a@x.example>: Recipient address rejected", "failed",
       K::kSoft},
      {"5.1.1", "<command failed> 550 5.1.1 <a@x.example>: User unknown", "failed", K::kHard},
      // The sender was refused, not the recipient.
      {"5.1.8", "553 5.1.8 <b@x.example>: Sender address rejected: Domain not found", "failed",
       K::kSoft},
      {"5.0.0", "550 Sender address rejected: domain not found", "failed", K::kSoft},
      // Exchange Online's directory-based edge blocking: no such recipient.
      {"5.4.1", "550 5.4.1 Recipient address rejected: Access denied. AS(201806281)", "failed",
       K::kHard},
      {"5.0.0", "550 5.7.1 Recipient address rejected: Access denied", "failed", K::kSoft},
      {"5.1.0", "550 #5.1.0 Address rejected.", "failed", K::kHard, "after RCPT TO:<a@x>"},
      {"5.1.0", "550 #5.1.0 Address rejected.", "failed", K::kSoft},
      // Yahoo: no such account at RCPT; the same words after the body are a filter's.
      {"5.0.0", "554 delivery error: dd This user doesn't have a yahoo.com account (a@yahoo.com)",
       "failed", K::kHard, "(in reply to RCPT TO command)"},
      {"", "554 delivery error: dd This user doesn't have a yahoo.com account [0] - mta [BODY]", "",
       K::kSoft},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(to_string(classify_failure(c.status, c.text, c.action, c.context)), to_string(c.kind))
        << c.status << " " << c.text << " " << c.action << " " << c.context;
  }
}

TEST(MimeReader, UnfoldsHeadersAndStopsAtTheFirstNonField) {
  std::string_view body;
  const HeaderBlock headers =
      parse_header_block("Subject: a\n  b\tc\nX-Empty:\nnot a header line\nrest", 10, &body);
  EXPECT_EQ(headers.get("subject"), "a b\tc");
  EXPECT_TRUE(headers.has("x-empty"));
  EXPECT_EQ(body, "not a header line\nrest");
  const ContentType type =
      parse_content_type("Multipart/Report; report-type=\"Delivery-Status\";\tboundary=\"=_a b\"");
  EXPECT_EQ(type.media_type, "multipart/report");
  EXPECT_EQ(type.report_type, "delivery-status");
  EXPECT_EQ(type.boundary, "=_a b");
}

}  // namespace
}  // namespace mailer::lists
