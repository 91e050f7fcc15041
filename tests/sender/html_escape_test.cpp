// The one HTML escaper, used by HTML message parts and the dashboard.
#include "sender/html_escape.h"

#include <gtest/gtest.h>

namespace mailer::sender {
namespace {

TEST(HtmlEscape, WritesMarkupCharactersAsReferences) {
  EXPECT_EQ(HtmlEscaped("<a href=\"x\">Tom & 'Jerry'</a>"),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;");
}

TEST(HtmlEscape, KeepsTextAndWhitespaceButReplacesControlCharacters) {
  EXPECT_EQ(HtmlEscaped("Grüße\tau\r\nrevoir"), "Grüße\tau\r\nrevoir");
  EXPECT_EQ(HtmlEscaped(std::string("a\x01"
                                    "b\x7f",
                                    4)),
            "a\xEF\xBF\xBD"
            "b\xEF\xBF\xBD");
}

TEST(HtmlEscape, AppendsAfterWhatIsThere) {
  std::string out = "<p>";
  AppendHtmlEscaped("1 < 2", out);
  EXPECT_EQ(out, "<p>1 &lt; 2");
}

}  // namespace
}  // namespace mailer::sender
