// COPY text format, the encoding of one field: what the import's reader
// thread does to each new row ahead of the database's COPY (app/db's
// CopyStream sends the rows), so the thread the database waits on does not.
// Pure text work: no database here.
#pragma once

#include <string>
#include <string_view>

namespace mailer::lists {

// Appends `text` as one field in COPY text format (backslash, tab, newline
// and carriage return escaped), followed by a tab.
inline void append_copy_field(std::string& out, std::string_view text) {
  for (char c : text) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        out.push_back(c);
    }
  }
  out.push_back('\t');
}

}  // namespace mailer::lists
