// Escaping for text that the HTTP surface puts into HTML and SVG pages:
// every byte that could end a text node or an attribute value is written as
// a character reference, so names, replies and labels from the database can
// never become markup.
#pragma once

#include <string>
#include <string_view>

namespace mailer::app {

// `text` with & < > " ' written as character references; safe in element
// content and in quoted attribute values. Control characters other than tab,
// line feed and carriage return become U+FFFD (they are not allowed in XML).
std::string escape_html(std::string_view text);

}  // namespace mailer::app
