// Per-delivery message composition, checked with Python's email package as
// an independent parser: headers present and decodable, parts rendered,
// encodings within limits, and injection attempts through merge fields and
// campaign fields that never create a header or a MIME part.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "sender/message_composer.h"

namespace mailer::sender {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Debian's interpreter: the checks rely on its packages, and a python3 found
// first on PATH (pyenv, a virtualenv) may not have them.
constexpr const char* kPython = "/usr/bin/python3";
const std::string kSecret = "composer-test-secret-0123456789ab";
// 2025-03-04T05:06:07Z
const auto kNow = std::chrono::system_clock::time_point(std::chrono::seconds(1741064767));

std::string ScriptPath(const char* name) {
  return std::string(MAILER_SOURCE_DIR) + "/tests/sender/" + name;
}

// Runs `command`, returns its standard output; fails the test on a non-zero
// exit status.
std::string RunCommand(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) {
    ADD_FAILURE() << "cannot run " << command;
    return out;
  }
  std::array<char, 4096> buf{};
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  const int status = ::pclose(pipe);
  EXPECT_EQ(status, 0) << command << "\n" << out;
  return out;
}

// Parses `message` with Python's email package (see parse_message.py).
nlohmann::json ParseWithPython(const std::string& message) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("composer_test_" + std::to_string(::getpid()) + ".eml");
  std::ofstream(path, std::ios::binary) << message;
  const std::string out =
      RunCommand(std::string(kPython) + " " + ScriptPath("parse_message.py") + " " + path.string());
  std::filesystem::remove(path);
  return nlohmann::json::parse(out);
}

std::vector<std::string> HeaderValues(const nlohmann::json& parsed, std::string_view name) {
  std::vector<std::string> values;
  for (const auto& h : parsed["headers"]) {
    std::string n = h[0].get<std::string>();
    if (strcasecmp(n.c_str(), std::string(name).c_str()) == 0) values.push_back(h[1]);
  }
  return values;
}

std::vector<std::string> RawHeaderLines(const std::string& message) {
  const std::string block = message.substr(0, message.find("\r\n\r\n"));
  std::vector<std::string> lines;
  std::size_t pos = 0;
  while (pos <= block.size()) {
    const std::size_t end = block.find("\r\n", pos);
    lines.push_back(block.substr(pos, end == std::string::npos ? std::string::npos : end - pos));
    if (end == std::string::npos) break;
    pos = end + 2;
  }
  return lines;
}

ComposerSettings Settings() {
  ComposerSettings s;
  s.unsubscribe_base_url = "https://mail.example.com/";
  s.unsubscribe_mailto = "unsubscribe@example.com";
  s.tokens = std::make_shared<UnsubscribeTokenCodec>(kSecret);
  s.verp = std::make_shared<VerpCodec>("bounce", "bounces.example.com", kSecret);
  s.feedback_sender_id = "mailer";
  return s;
}

CampaignContent Campaign() {
  CampaignContent c;
  c.campaign_id = 42;
  c.list_id = "spring list";
  c.from = "Zoë's Café <news@example.com>";
  c.reply_to = "Support <help@example.com>";
  c.subject = "Hi {{first_name|there}}, spring is here ☀";
  c.text =
      "Hello {{first_name|there}},\nSee you in {{city|town}}.\nUnsubscribe: {{unsubscribe_url}}\n";
  c.html =
      "<p>Hello {{first_name|there}}</p><p>{{city|town}}</p><a href=\"{{unsubscribe_url}}\">u</a>";
  return c;
}

DeliveryRecipient Recipient(std::int64_t delivery, std::string first_name) {
  DeliveryRecipient r;
  r.delivery_id = delivery;
  r.recipient_id = 555;
  r.email = "jane@example.org";
  r.fields.Set("first_name", std::move(first_name));
  r.fields.Set("city", "Zürich");
  return r;
}

TEST(ComposerTest, ComposesMultipartMessageThatPythonParsesWithAllHeaders) {
  const MessageComposer composer(Campaign(), Settings());
  const ComposedMessage m = composer.Compose(Recipient(1001, "Jane"), kNow);
  const auto parsed = ParseWithPython(m.data);

  EXPECT_TRUE(parsed["defects"].empty()) << parsed["defects"];
  EXPECT_EQ(parsed["content_type"], "multipart/alternative");
  EXPECT_EQ(HeaderValues(parsed, "Subject"), std::vector<std::string>{"Hi Jane, spring is here ☀"});
  EXPECT_EQ(parsed["from_addresses"][0]["display_name"], "Zoë's Café");
  EXPECT_EQ(parsed["from_addresses"][0]["addr_spec"], "news@example.com");
  EXPECT_EQ(parsed["to_addresses"][0]["addr_spec"], "jane@example.org");
  EXPECT_EQ(parsed["reply-to_addresses"][0]["addr_spec"], "help@example.com");
  EXPECT_EQ(HeaderValues(parsed, "Date"),
            std::vector<std::string>{"Tue, 04 Mar 2025 05:06:07 +0000"});
  EXPECT_EQ(HeaderValues(parsed, "Message-ID"), std::vector<std::string>{"<1001.42@example.com>"});
  EXPECT_EQ(m.message_id, "<1001.42@example.com>");
  EXPECT_EQ(HeaderValues(parsed, "MIME-Version"), std::vector<std::string>{"1.0"});
  EXPECT_EQ(HeaderValues(parsed, "List-Unsubscribe-Post"),
            std::vector<std::string>{"List-Unsubscribe=One-Click"});
  EXPECT_EQ(HeaderValues(parsed, "Feedback-ID"), std::vector<std::string>{"42:spring-list:mailer"});

  const auto unsub = HeaderValues(parsed, "List-Unsubscribe");
  ASSERT_EQ(unsub.size(), 1u);
  EXPECT_THAT(unsub[0], HasSubstr("<" + m.unsubscribe_url + ">"));
  EXPECT_THAT(unsub[0], HasSubstr("<mailto:unsubscribe@example.com?subject=unsubscribe-"));
  EXPECT_TRUE(m.unsubscribe_url.starts_with("https://mail.example.com/u/")) << m.unsubscribe_url;

  ASSERT_EQ(parsed["parts"].size(), 2u);
  EXPECT_EQ(parsed["parts"][0]["content_type"], "text/plain");
  EXPECT_EQ(parsed["parts"][0]["charset"], "utf-8");
  EXPECT_EQ(parsed["parts"][0]["content"],
            "Hello Jane,\nSee you in Zürich.\nUnsubscribe: " + m.unsubscribe_url + "\n");
  EXPECT_EQ(parsed["parts"][1]["content_type"], "text/html");
  EXPECT_EQ(parsed["parts"][1]["content"],
            "<p>Hello Jane</p><p>Zürich</p><a href=\"" + m.unsubscribe_url + "\">u</a>");
}

TEST(ComposerTest, UnsubscribeTokenInTheUrlVerifiesToTheDelivery) {
  const MessageComposer composer(Campaign(), Settings());
  const ComposedMessage m = composer.Compose(Recipient(1001, "Jane"), kNow);
  const std::string token = m.unsubscribe_url.substr(m.unsubscribe_url.rfind('/') + 1);
  const auto identity = UnsubscribeTokenCodec(kSecret).Verify(token);
  ASSERT_TRUE(identity.has_value());
  EXPECT_EQ(*identity, (DeliveryIdentity{1001, 42, 555}));
}

TEST(ComposerTest, EnvelopeUsesVerpReturnPathThatParsesToTheDelivery) {
  const MessageComposer composer(Campaign(), Settings());
  const ComposedMessage m = composer.Compose(Recipient(1001, "Jane"), kNow);
  EXPECT_EQ(m.envelope_to.header_form(), "jane@example.org");
  EXPECT_EQ(
      VerpCodec("bounce", "bounces.example.com", kSecret).Parse(m.envelope_from.header_form()),
      1001);
}

TEST(ComposerTest, SameDeliveryGivesSameMessageIdAndOthersDiffer) {
  const MessageComposer composer(Campaign(), Settings());
  const auto a = composer.Compose(Recipient(7, "A"), kNow);
  const auto again = composer.Compose(Recipient(7, "A"), kNow + std::chrono::hours(5));
  const auto b = composer.Compose(Recipient(8, "A"), kNow);
  EXPECT_EQ(a.message_id, again.message_id);
  EXPECT_NE(a.message_id, b.message_id);
  ComposerSettings s = Settings();
  s.message_id_domain = "mid.example.net";
  EXPECT_EQ(MessageComposer(Campaign(), s).Compose(Recipient(7, "A"), kNow).message_id,
            "<7.42@mid.example.net>");
}

TEST(ComposerTest, SinglePartWhenOnlyTextOrOnlyHtml) {
  CampaignContent text_only = Campaign();
  text_only.html.reset();
  auto parsed =
      ParseWithPython(MessageComposer(text_only, Settings()).Compose(Recipient(1, "T"), kNow).data);
  EXPECT_EQ(parsed["content_type"], "text/plain");
  ASSERT_EQ(parsed["parts"].size(), 1u);
  EXPECT_THAT(parsed["parts"][0]["content"].get<std::string>(), HasSubstr("Hello T,"));

  CampaignContent html_only = Campaign();
  html_only.text.reset();
  parsed =
      ParseWithPython(MessageComposer(html_only, Settings()).Compose(Recipient(1, "H"), kNow).data);
  EXPECT_EQ(parsed["content_type"], "text/html");
  ASSERT_EQ(parsed["parts"].size(), 1u);
  EXPECT_THAT(parsed["parts"][0]["content"].get<std::string>(), HasSubstr("<p>Hello H</p>"));
}

TEST(ComposerTest, AllLinesEndInCrlfAndEncodedBodyLinesStayWithin76) {
  CampaignContent c = Campaign();
  c.text = std::string(500, 'x') + " {{first_name}} " + std::string(300, '=') + "\n" +
           "日本語のテキスト。日本語のテキスト。日本語のテキスト。日本語のテキスト。\n";
  const auto m = MessageComposer(c, Settings()).Compose(Recipient(3, "Jane"), kNow);
  const std::size_t body_start = m.data.find("\r\n\r\n") + 4;
  std::size_t pos = 0;
  while (pos < m.data.size()) {
    const std::size_t end = m.data.find("\r\n", pos);
    ASSERT_NE(end, std::string::npos) << "message must end with CRLF";
    const std::string line = m.data.substr(pos, end - pos);
    ASSERT_EQ(line.find('\n'), std::string::npos);
    ASSERT_EQ(line.find('\r'), std::string::npos);
    if (pos >= body_start) {
      ASSERT_LE(line.size(), 76u) << line;
    }
    ASSERT_LE(line.size(), 998u);
    pos = end + 2;
  }
  const auto parsed = ParseWithPython(m.data);
  EXPECT_THAT(parsed["parts"][0]["content"].get<std::string>(),
              HasSubstr(" Jane " + std::string(300, '=')));
}

TEST(ComposerTest, LineBreaksInMergeFieldsNeverCreateHeadersOrParts) {
  CampaignContent c = Campaign();
  c.subject = "Hi {{first_name}}\r\n\r\n--boundary";
  const std::string evil =
      "x\r\nBcc: victim@example.com\r\n\r\n--=_mailer_42_9\r\nContent-Type: "
      "text/html\r\n\r\n<b>owned</b>";
  const auto m = MessageComposer(c, Settings()).Compose(Recipient(9, evil), kNow);

  // On the wire: every header line is one of ours or a continuation.
  const std::set<std::string> ours = {
      "From",       "To",           "Reply-To",     "Subject",          "Date",
      "Message-ID", "MIME-Version", "Content-Type", "List-Unsubscribe", "List-Unsubscribe-Post",
      "Feedback-ID"};
  for (const std::string& line : RawHeaderLines(m.data)) {
    if (line.starts_with(" ") || line.starts_with("\t")) continue;
    EXPECT_TRUE(ours.contains(line.substr(0, line.find(':')))) << line;
  }
  // As a reader sees it.
  const auto parsed = ParseWithPython(m.data);
  EXPECT_TRUE(HeaderValues(parsed, "Bcc").empty());
  EXPECT_EQ(HeaderValues(parsed, "To").size(), 1u);
  EXPECT_EQ(HeaderValues(parsed, "Content-Type").size(), 1u);
  const auto subject = HeaderValues(parsed, "Subject");
  ASSERT_EQ(subject.size(), 1u);
  EXPECT_THAT(subject[0], HasSubstr("Bcc: victim@example.com"));
  EXPECT_THAT(subject[0], Not(HasSubstr("\n")));
  ASSERT_EQ(parsed["parts"].size(), 2u);
  // The text part holds the value as text; the HTML part escapes it.
  EXPECT_THAT(parsed["parts"][0]["content"].get<std::string>(), HasSubstr("<b>owned</b>"));
  EXPECT_THAT(parsed["parts"][1]["content"].get<std::string>(),
              HasSubstr("&lt;b&gt;owned&lt;/b&gt;"));
  EXPECT_THAT(parsed["parts"][1]["content"].get<std::string>(), Not(HasSubstr("<b>owned")));
}

TEST(ComposerTest, LineBreaksInCampaignFieldsNeverCreateHeaders) {
  CampaignContent c = Campaign();
  c.from = "\"Evil\r\nBcc: victim@example.com\" <news@example.com>";
  c.subject = "Sale\r\nBcc: victim@example.com\r\n\r\n--boundary\r\nContent-Type: text/html";
  const auto m = MessageComposer(c, Settings()).Compose(Recipient(10, "J"), kNow);
  const auto parsed = ParseWithPython(m.data);
  EXPECT_TRUE(HeaderValues(parsed, "Bcc").empty());
  EXPECT_EQ(HeaderValues(parsed, "Content-Type").size(), 1u);
  EXPECT_EQ(parsed["from_addresses"].size(), 1u);
  EXPECT_EQ(parsed["from_addresses"][0]["addr_spec"], "news@example.com");
  EXPECT_EQ(parsed["parts"].size(), 2u);

  // An address itself cannot carry a line break: the campaign is refused.
  CampaignContent bad_reply = Campaign();
  bad_reply.reply_to = "help@example.com\r\nBcc: victim@example.com";
  EXPECT_THROW(MessageComposer(bad_reply, Settings()), MimeError);
  CampaignContent bad_from = Campaign();
  bad_from.from = "News <news@example.com>\r\nBcc: victim@example.com";
  EXPECT_THROW(MessageComposer(bad_from, Settings()), MimeError);
}

TEST(ComposerTest, RecipientAddressWithLineBreakIsRefused) {
  const MessageComposer composer(Campaign(), Settings());
  DeliveryRecipient r = Recipient(11, "J");
  r.email = "jane@example.org\r\nBcc: victim@example.com";
  EXPECT_THROW(composer.Compose(r, kNow), MimeError);
}

TEST(ComposerTest, ListsUnknownMergeFieldsAcrossAllTemplates) {
  CampaignContent c = Campaign();
  c.subject = "{{frist_name}}";
  c.html = "<p>{{plan}}</p>";
  const MessageComposer composer(c, Settings());
  const auto unknown = composer.UnknownFields({"first_name", "city"});
  ASSERT_EQ(unknown.size(), 2u);
  EXPECT_EQ(unknown[0].name, "frist_name");
  EXPECT_THAT(unknown[0].message, HasSubstr("subject"));
  EXPECT_EQ(unknown[1].name, "plan");
  EXPECT_THAT(unknown[1].message, HasSubstr("html"));
}

TEST(ComposerTest, CampaignCreationCheckNeedsNoSettings) {
  CampaignContent c = Campaign();
  EXPECT_TRUE(CheckCampaignTemplates(c, {"first_name", "city"}).empty());
  c.text = "{{first_name}} {{coupon}}";
  const auto unknown = CheckCampaignTemplates(c, {"first_name", "city"});
  ASSERT_EQ(unknown.size(), 1u);
  EXPECT_EQ(unknown[0].name, "coupon");
  EXPECT_EQ(unknown[0].position, 15u);
  c.html = "<p>{{city</p>";
  EXPECT_THROW(CheckCampaignTemplates(c, {}), TemplateSyntaxError);
}

TEST(ComposerTest, RefusesCampaignsWithoutBodyOrWithBadSettings) {
  CampaignContent no_body = Campaign();
  no_body.text.reset();
  no_body.html.reset();
  EXPECT_THROW(MessageComposer(no_body, Settings()), std::invalid_argument);
  ComposerSettings bad_url = Settings();
  bad_url.unsubscribe_base_url = "https://mail.example.com/>\r\nBcc: x";
  EXPECT_THROW(MessageComposer(Campaign(), bad_url), MimeError);
  bad_url.unsubscribe_base_url = "ftp://mail.example.com";
  EXPECT_THROW(MessageComposer(Campaign(), bad_url), MimeError);
  ComposerSettings no_codec = Settings();
  no_codec.tokens.reset();
  EXPECT_THROW(MessageComposer(Campaign(), no_codec), std::invalid_argument);
  CampaignContent broken = Campaign();
  broken.text = "Hello {{first_name";
  EXPECT_THROW(MessageComposer(broken, Settings()), TemplateSyntaxError);
}

TEST(ComposerTest, FormatsDatesInUtc) {
  EXPECT_EQ(FormatRfc5322Date(std::chrono::system_clock::time_point{}),
            "Thu, 01 Jan 1970 00:00:00 +0000");
  EXPECT_EQ(FormatRfc5322Date(kNow), "Tue, 04 Mar 2025 05:06:07 +0000");
}

}  // namespace
}  // namespace mailer::sender
