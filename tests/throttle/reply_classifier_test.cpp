#include "throttle/reply_classifier.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "throttle/provider_profiles.h"

namespace mailer::throttle {
namespace {

std::string source_dir() {
  if (const char* env = std::getenv("MAILER_SOURCE_DIR")) return env;
#ifdef MAILER_SOURCE_DIR
  return MAILER_SOURCE_DIR;
#else
  return ".";
#endif
}

struct Vector {
  int line = 0;
  std::string provider;
  SmtpStage stage = SmtpStage::kGreeting;
  std::string reply;
  Signal expected = Signal::kTransient;
};

std::vector<Vector> load_vectors() {
  std::ifstream in(source_dir() + "/tests/data/replies.tsv");
  std::vector<Vector> out;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> cols;
    std::stringstream ss(line);
    std::string col;
    while (std::getline(ss, col, '\t')) cols.push_back(col);
    if (cols.size() != 4) {
      ADD_FAILURE() << "replies.tsv line " << number << ": expected 4 columns";
      continue;
    }
    auto stage = parse_stage(cols[1]);
    auto signal = parse_signal(cols[3]);
    if (!stage || !signal) {
      ADD_FAILURE() << "replies.tsv line " << number << ": bad stage or signal";
      continue;
    }
    out.push_back({number, cols[0], *stage, cols[2], *signal});
  }
  return out;
}

Classification classify(std::string_view raw, SmtpStage stage, std::string_view provider = {},
                        const ReplyClassifier& classifier = ReplyClassifier()) {
  auto parsed = parse_smtp_reply(raw, stage);
  EXPECT_TRUE(parsed) << raw << ": " << parsed.error;
  if (!parsed) return {};
  return classifier.classify(*parsed, provider);
}

Signal signal_of(std::string_view raw, SmtpStage stage) {
  return classify(raw, stage).signal;
}

TEST(ReplyClassifier, ClassifiesEveryRowOfRepliesTsv) {
  std::vector<Vector> vectors = load_vectors();
  ASSERT_GE(vectors.size(), 38u) << "tests/data/replies.tsv missing or truncated";
  ReplyClassifier classifier;
  for (const Vector& v : vectors) {
    Classification c = classify(v.reply, v.stage, v.provider, classifier);
    EXPECT_EQ(signal_name(c.signal), signal_name(v.expected))
        << "replies.tsv line " << v.line << " (" << c.reason << "): " << v.reply;
  }
}

TEST(ReplyClassifier, DecidesOnTokensNotWholeStrings) {
  // Other IPs, other wording, different line splits.
  EXPECT_EQ(signal_of("421 4.7.0 [TSS04] Messages from 203.0.113.77 temporarily deferred",
                      SmtpStage::kMail),
            Signal::kSuspend);
  EXPECT_EQ(signal_of("421 4.7.0 [TS02] Mail from 2001:db8::5 deferred, volume too high",
                      SmtpStage::kMail),
            Signal::kThrottle);
  EXPECT_EQ(
      signal_of("421 4.7.1 [TS03] All mail from 198.51.100.3 refused for good", SmtpStage::kMail),
      Signal::kBlock);
  EXPECT_EQ(
      signal_of("421 4.7.0 RP-001 (AMS05-MC4) limit reached for 198.51.100.9", SmtpStage::kMail),
      Signal::kThrottle);
  EXPECT_EQ(
      signal_of("451 4.7.650 Your server [203.0.113.1] is rate limited (S843)", SmtpStage::kMail),
      Signal::kThrottle);
}

TEST(ReplyClassifier, ClassifiesMultiLineAndSingleLineAlike) {
  const char* multi =
      "421-4.7.28 We see an unusual rate of mail from your IP.\r\n"
      "421-4.7.28 It is rate limited for now.\r\n"
      "421 4.7.28 Please retry later. - gsmtp\r\n";
  const char* single = "421 4.7.28 Unusual rate; rate limited. - gsmtp";
  EXPECT_EQ(signal_of(multi, SmtpStage::kEndOfData), Signal::kThrottle);
  EXPECT_EQ(signal_of(single, SmtpStage::kEndOfData), Signal::kThrottle);
  const char* full_multi =
      "452-4.2.2 The recipient's inbox is full.\r\n452 4.2.2 Please try later. - gsmtp\r\n";
  EXPECT_EQ(signal_of(full_multi, SmtpStage::kRcpt), Signal::kRecipientTempfail);
}

TEST(ReplyClassifier, DefersMailboxFullWithoutSlowingDown) {
  EXPECT_EQ(signal_of("452 4.2.2 Mailbox over quota", SmtpStage::kRcpt),
            Signal::kRecipientTempfail);
  EXPECT_EQ(signal_of("450 4.2.1 Receiving mail too fast", SmtpStage::kRcpt),
            Signal::kRecipientTempfail);
  EXPECT_EQ(signal_of("451 Greylisted, come back later", SmtpStage::kRcpt),
            Signal::kRecipientTempfail);
}

TEST(ReplyClassifier, SeparatesAuthenticationFromRate) {
  EXPECT_EQ(signal_of("421 4.7.26 Unauthenticated mail is rate limited", SmtpStage::kEndOfData),
            Signal::kAuthPolicy);
  EXPECT_EQ(signal_of("550 5.7.23 SPF validation failed", SmtpStage::kMail), Signal::kAuthPolicy);
  EXPECT_EQ(signal_of("530 5.7.0 Must issue a STARTTLS command first", SmtpStage::kMail),
            Signal::kAuthPolicy);
  EXPECT_EQ(
      signal_of("421 4.7.0 Low reputation of the sending IP, rate limited", SmtpStage::kEndOfData),
      Signal::kThrottle);
}

TEST(ReplyClassifier, FallsBackOnTheCode) {
  EXPECT_EQ(signal_of("421 closing connection", SmtpStage::kMail), Signal::kThrottle);
  EXPECT_EQ(signal_of("451 local error in processing", SmtpStage::kData), Signal::kTransient);
  EXPECT_EQ(signal_of("450 try later", SmtpStage::kRcpt), Signal::kRecipientTempfail);
  EXPECT_EQ(signal_of("550 no such user here", SmtpStage::kRcpt), Signal::kHardBounce);
  EXPECT_EQ(signal_of("554 no SMTP service here", SmtpStage::kGreeting), Signal::kBlock);
  EXPECT_EQ(signal_of("250 ok", SmtpStage::kEndOfData), Signal::kAccepted);
}

TEST(ReplyClassifier, FlagsConnectionCountComplaints) {
  Classification rp003 =
      classify("421 4.7.0 RP-003 (X) we limit concurrent connections", SmtpStage::kGreeting);
  EXPECT_EQ(rp003.signal, Signal::kThrottle);
  EXPECT_TRUE(rp003.connection_limit);
  Classification phrase = classify("421 Too many connections from your host", SmtpStage::kGreeting);
  EXPECT_EQ(phrase.signal, Signal::kThrottle);
  EXPECT_TRUE(phrase.connection_limit);
  EXPECT_FALSE(classify("421 4.7.28 rate limited", SmtpStage::kEndOfData).connection_limit);
}

TEST(ReplyClassifier, OperatorRulesTakePrecedence) {
  ReplyClassifier classifier({
      {"[TS02]", Signal::kSuspend, std::chrono::minutes(30), "yahoo"},
      {"queue file write error", Signal::kThrottle, std::nullopt, ""},
  });
  const char* ts02 = "421 4.7.0 [TS02] Messages from 192.0.2.10 temporarily deferred";
  Classification c = classify(ts02, SmtpStage::kMail, "yahoo", classifier);
  EXPECT_EQ(c.signal, Signal::kSuspend);
  EXPECT_EQ(c.suspend_for, Duration(std::chrono::minutes(30)));
  EXPECT_EQ(c.reason, "rule 1 ([TS02])");
  // The rule is limited to yahoo: another provider gets the built-in verdict.
  EXPECT_EQ(classify(ts02, SmtpStage::kMail, "other:mx.example.net", classifier).signal,
            Signal::kThrottle);
  EXPECT_EQ(
      classify("451 4.3.0 Error: QUEUE FILE WRITE ERROR", SmtpStage::kMail, "other:x", classifier)
          .signal,
      Signal::kThrottle);
}

TEST(ReplyClassifier, ValidatesOperatorRules) {
  EXPECT_EQ(validate_reply_rule({"", Signal::kThrottle, std::nullopt, ""}),
            "pattern must not be empty");
  EXPECT_EQ(validate_reply_rule({"x", Signal::kThrottle, std::chrono::minutes(1), ""}),
            "suspend_for is only meaningful with signal \"suspend\"");
  EXPECT_EQ(validate_reply_rule({"x", Signal::kSuspend, std::chrono::minutes(1), ""}),
            std::nullopt);
}

TEST(ReplyClassifier, ReadsRetryHints) {
  using std::chrono::minutes;
  using std::chrono::seconds;
  EXPECT_EQ(retry_hint("Please try again in 10 minutes"), Duration(minutes(10)));
  EXPECT_EQ(retry_hint("retry after 30 seconds"), Duration(seconds(30)));
  EXPECT_EQ(retry_hint("please wait 2 hours before retrying"), Duration(std::chrono::hours(2)));
  EXPECT_EQ(retry_hint("Try again in 15m"), Duration(minutes(15)));
  EXPECT_EQ(retry_hint("Try again later (10)."), std::nullopt);
  EXPECT_EQ(retry_hint("try again in a while"), std::nullopt);
  Classification c = classify("421 4.7.0 Rate limited, try again in 5 minutes", SmtpStage::kMail);
  EXPECT_EQ(c.retry_after, Duration(minutes(5)));
}

TEST(ReplyClassifier, ProviderProfilesSayWhatTheyMean) {
  ReplyClassifier classifier;
  for (const std::string& name : provider_profile_names()) {
    ProviderProfile p = *find_provider_profile(name);
    EXPECT_EQ(classifier.classify(p.accepted, name).signal, Signal::kAccepted) << name;
    EXPECT_EQ(classifier.classify(p.throttle, name).signal, Signal::kThrottle) << name;
    Classification conn = classifier.classify(p.too_many_connections, name);
    EXPECT_EQ(conn.signal, Signal::kThrottle) << name;
    EXPECT_TRUE(conn.connection_limit) << name;
    if (p.penalty) {
      EXPECT_EQ(classifier.classify(*p.penalty, name).signal, Signal::kSuspend) << name;
    }
    // The wire form parses back to the same reply.
    auto parsed = parse_smtp_reply(format_smtp_reply(p.throttle), p.throttle.stage);
    ASSERT_TRUE(parsed) << name;
    EXPECT_EQ(parsed->text, p.throttle.text);
  }
  EXPECT_TRUE(find_provider_profile("yahoo")->penalty.has_value());
  EXPECT_EQ(find_provider_profile("outlook")->throttle.enhanced_status, "4.7.650");
  EXPECT_EQ(provider_profile_for("other:mx.example.net").name, "generic");
  EXPECT_EQ(find_provider_profile("hotmail"), std::nullopt);
}

TEST(Signal, NamesRoundTrip) {
  for (const char* name : {"accepted", "throttle", "suspend", "recipient_tempfail", "transient",
                           "auth_policy", "hard_bounce", "block"}) {
    auto s = parse_signal(name);
    ASSERT_TRUE(s) << name;
    EXPECT_EQ(signal_name(*s), name);
  }
  EXPECT_EQ(parse_signal("slow"), std::nullopt);
}

}  // namespace
}  // namespace mailer::throttle
