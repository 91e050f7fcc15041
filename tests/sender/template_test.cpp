// Campaign templates: merge fields, defaults, HTML escaping, syntax errors
// and unknown-field validation.
#include "sender/template.h"

#include <gtest/gtest.h>

namespace mailer::sender {
namespace {

CompiledTemplate Text(std::string_view source) {
  return CompiledTemplate::Compile(source, "text", TemplateEscaping::kNone);
}

TEST(TemplateTest, RendersFieldsAndUsesDefaultsWhenMissingOrEmpty) {
  const auto tpl = Text("Hi {{first_name|there}}, this went to {{email}}.");
  MergeFields fields({{"first_name", "Ann"}});
  fields.SetEmail("ann@example.com");
  EXPECT_EQ(tpl.Render(fields), "Hi Ann, this went to ann@example.com.");

  MergeFields missing;
  missing.SetEmail("x@example.com");
  EXPECT_EQ(tpl.Render(missing), "Hi there, this went to x@example.com.");

  MergeFields empty({{"first_name", ""}});
  EXPECT_EQ(tpl.Render(empty), "Hi there, this went to .");
}

TEST(TemplateTest, IgnoresSpacesAroundNameAndDefault) {
  const auto tpl = Text("{{ first_name | dear friend }}!{{ city }}");
  EXPECT_EQ(tpl.Render(MergeFields{}), "dear friend!");
  EXPECT_EQ(tpl.Render(MergeFields({{"first_name", "Bo"}, {"city", "Oslo"}})), "Bo!Oslo");
}

TEST(TemplateTest, HtmlTemplateEscapesValuesButNotTemplateText) {
  const auto tpl =
      CompiledTemplate::Compile("<p>Hi {{name|<b>you</b>}}</p>", "html", TemplateEscaping::kHtml);
  EXPECT_EQ(tpl.Render(MergeFields({{"name", "<script>alert(\"x\")</script> & 'co'"}})),
            "<p>Hi &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;co&#39;</p>");
  EXPECT_EQ(tpl.Render(MergeFields{}), "<p>Hi <b>you</b></p>");
}

TEST(TemplateTest, TextTemplateKeepsValuesVerbatim) {
  const auto tpl = Text("Hi {{name}}");
  EXPECT_EQ(tpl.Render(MergeFields({{"name", "<A & B>"}})), "Hi <A & B>");
}

TEST(TemplateTest, FieldValuesAreNeverExpandedAgain) {
  const auto tpl = Text("{{name}}");
  MergeFields fields({{"name", "{{email}} {{unsubscribe_url}}"}});
  fields.SetEmail("secret@example.com");
  EXPECT_EQ(tpl.Render(fields), "{{email}} {{unsubscribe_url}}");
}

TEST(TemplateTest, BuiltinFieldsComeFromTheDeliveryNotAttributes) {
  MergeFields fields({{"email", "attacker@example.com"}, {"unsubscribe_url", "https://evil"}});
  fields.SetEmail("real@example.com");
  fields.SetUnsubscribeUrl("https://mail.example.com/u/T");
  EXPECT_EQ(Text("{{email}} {{unsubscribe_url}}").Render(fields),
            "real@example.com https://mail.example.com/u/T");
}

TEST(TemplateTest, UnclosedFieldIsAnErrorNamingTemplateAndOffset) {
  try {
    CompiledTemplate::Compile("Hello {{name", "subject", TemplateEscaping::kNone);
    FAIL() << "expected TemplateSyntaxError";
  } catch (const TemplateSyntaxError& e) {
    EXPECT_EQ(e.position(), 6u);
    EXPECT_NE(std::string(e.what()).find("subject"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("unclosed"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("offset 6"), std::string::npos) << e.what();
  }
}

TEST(TemplateTest, OpeningInsideAFieldIsAnError) {
  try {
    Text("ok {{a {{b}}");
    FAIL() << "expected TemplateSyntaxError";
  } catch (const TemplateSyntaxError& e) {
    EXPECT_EQ(e.position(), 3u);
  }
}

TEST(TemplateTest, EmptyOrInvalidFieldNamesAreErrors) {
  for (const char* bad : {"{{}}", "{{ }}", "{{|x}}", "{{1abc}}", "{{a b}}", "{{na<me}}"}) {
    EXPECT_THROW(Text(bad), TemplateSyntaxError) << bad;
  }
  EXPECT_NO_THROW(Text("{{a.b-c_d9}}"));
}

TEST(TemplateTest, LoneClosingBracesAndSingleBracesAreLiteral) {
  EXPECT_EQ(Text("a }} b { c } {x}").Render(MergeFields{}), "a }} b { c } {x}");
}

TEST(TemplateTest, ListsUnknownFieldsWithPositionsAndBuiltinsAreKnown) {
  const auto tpl =
      Text("{{first_name}} {{frist_name|there}} {{email}} {{unsubscribe_url}} {{plan}}");
  const std::set<std::string, std::less<>> known = {"first_name", "city"};
  const auto unknown = tpl.UnknownFields(known);
  ASSERT_EQ(unknown.size(), 2u);
  EXPECT_EQ(unknown[0].name, "frist_name");
  EXPECT_EQ(unknown[0].position, 15u);
  EXPECT_TRUE(unknown[0].has_default);
  EXPECT_NE(unknown[0].message.find("\"frist_name\""), std::string::npos) << unknown[0].message;
  EXPECT_NE(unknown[0].message.find("offset 15"), std::string::npos) << unknown[0].message;
  EXPECT_EQ(unknown[1].name, "plan");
  EXPECT_FALSE(unknown[1].has_default);
  EXPECT_TRUE(Text("{{first_name}} {{email}}").UnknownFields(known).empty());
}

TEST(TemplateTest, ReportsDistinctFieldNames) {
  const auto names = Text("{{b}}{{a}}{{b|x}}").FieldNames();
  EXPECT_EQ(names, (std::set<std::string, std::less<>>{"a", "b"}));
}

TEST(TemplateTest, MergeFieldsFromJsonObjectStringifiesScalarsAndDropsNull) {
  const auto fields =
      MergeFields::FromJsonObject(R"({"first_name":"Zoë","age":42,"vip":true,"gone":null})");
  ASSERT_NE(fields.Find("first_name"), nullptr);
  EXPECT_EQ(*fields.Find("first_name"), "Zoë");
  EXPECT_EQ(*fields.Find("age"), "42");
  EXPECT_EQ(*fields.Find("vip"), "true");
  EXPECT_EQ(fields.Find("gone"), nullptr);
  EXPECT_EQ(fields.Find("other"), nullptr);
  EXPECT_THROW(MergeFields::FromJsonObject("[1,2]"), std::invalid_argument);
  EXPECT_THROW(MergeFields::FromJsonObject("{bad"), std::invalid_argument);
}

TEST(TemplateTest, RendersManyRecipientsFromOneCompilation) {
  const auto tpl = Text("Dear {{name|customer}}, #{{n}}");
  for (int i = 0; i < 100; ++i) {
    MergeFields fields({{"n", std::to_string(i)}});
    if (i % 2 == 0) fields.Set("name", "R" + std::to_string(i));
    const std::string expected = "Dear " +
                                 (i % 2 == 0 ? "R" + std::to_string(i) : std::string("customer")) +
                                 ", #" + std::to_string(i);
    ASSERT_EQ(tpl.Render(fields), expected);
  }
}

}  // namespace
}  // namespace mailer::sender
