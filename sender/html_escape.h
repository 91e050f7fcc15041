// Escaping of text written into HTML (message parts, the HTTP surface's
// pages) and SVG: every byte that could end a text node or an attribute
// value becomes a character reference, so merge field values, names,
// replies and labels can never become markup. Lives in sender/, the lowest
// floor that writes HTML; app/ (the dashboard) uses it too.
#pragma once

#include <string>
#include <string_view>

namespace mailer::sender {

// Appends `text` to `out` with & < > " ' written as character references;
// safe in element content and in quoted attribute values. Control
// characters other than tab, line feed and carriage return become U+FFFD
// (neither HTML nor XML allows them).
void AppendHtmlEscaped(std::string_view text, std::string& out);

// `text` escaped as AppendHtmlEscaped does.
std::string HtmlEscaped(std::string_view text);

}  // namespace mailer::sender
