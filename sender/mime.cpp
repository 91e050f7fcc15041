// MIME and RFC 5322 building blocks; see mime.h.
#include "sender/mime.h"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstdint>

namespace mailer::sender {
namespace {

constexpr char kHex[] = "0123456789ABCDEF";
// "=?UTF-8?B?" plus "?=": the fixed part of every encoded word we write.
constexpr std::string_view kEncodedWordPrefix = "=?UTF-8?B?";
constexpr std::size_t kEncodedWordOverhead = kEncodedWordPrefix.size() + 2;
// U+FFFD REPLACEMENT CHARACTER, written for invalid UTF-8 in header text.
constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";

bool IsWsp(char c) {
  return c == ' ' || c == '\t';
}

std::string_view TrimWsp(std::string_view s) {
  while (!s.empty() && IsWsp(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsWsp(s.back())) s.remove_suffix(1);
  return s;
}

// Calls fn(line) for each line of `text`, split at LF, CRLF or lone CR. A
// final line break does not produce an empty last line.
template <typename Fn>
void ForEachLine(std::string_view text, Fn&& fn) {
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = start;
    while (end < text.size() && text[end] != '\r' && text[end] != '\n') ++end;
    fn(text.substr(start, end - start));
    if (end == text.size()) return;
    if (text[end] == '\r' && end + 1 < text.size() && text[end + 1] == '\n') ++end;
    start = end + 1;
  }
}

// Bytes quoted-printable always escapes (RFC 2045 6.7 rules 1 and 2): '=',
// controls other than tab, DEL and everything non-ASCII. Line breaks are
// handled apart.
constexpr std::array<bool, 256> kQpEscapeTable = [] {
  std::array<bool, 256> table{};
  for (int b = 0; b < 256; ++b) table[b] = b >= 0x7F || b == '=' || (b < 0x20 && b != '\t');
  table['\r'] = table['\n'] = false;
  return table;
}();

bool QpEscapes(unsigned char b) {
  return kQpEscapeTable[b];
}

// Length of the UTF-8 sequence starting at text[i] if it is valid, else 0.
std::size_t Utf8SequenceLength(std::string_view text, std::size_t i) {
  const auto b0 = static_cast<unsigned char>(text[i]);
  if (b0 < 0x80) return 1;
  std::size_t len = 0;
  std::uint32_t cp = 0;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
    cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    cp = b0 & 0x0F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    cp = b0 & 0x07;
  } else {
    return 0;
  }
  if (i + len > text.size()) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(text[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  // Reject overlong forms, surrogates and code points past U+10FFFF.
  if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF)) {
    return 0;
  }
  return len;
}

// Code points that some readers treat as line breaks or controls: C1 controls,
// LINE SEPARATOR and PARAGRAPH SEPARATOR. Header text gets a space instead.
bool IsUnicodeBreakOrControl(std::string_view seq) {
  if (seq.size() == 2 && static_cast<unsigned char>(seq[0]) == 0xC2) {
    return static_cast<unsigned char>(seq[1]) <= 0x9F;  // U+0080..U+009F
  }
  return seq == "\xE2\x80\xA8" || seq == "\xE2\x80\xA9";
}

bool IsAtext(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-/=?^_`{|}~").find(c) != std::string_view::npos;
}

bool IsDotAtom(std::string_view s) {
  if (s.empty() || s.front() == '.' || s.back() == '.') return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '.') {
      if (s[i + 1] == '.') return false;
    } else if (!IsAtext(s[i])) {
      return false;
    }
  }
  return true;
}

bool NeedsEncodedWords(std::string_view text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) return true;
  }
  // Text that reads like an encoded word would be decoded by the reader.
  if (text.find("=?") != std::string_view::npos) return true;
  // A word too long to fit a line cannot be folded as plain text.
  std::size_t run = 0;
  for (char c : text) {
    run = IsWsp(c) ? 0 : run + 1;
    if (run > kMaxEncodedLineLength) return true;
  }
  return false;
}

// Writes `text` (sanitised UTF-8) as encoded words, the first one fitting
// after `used` characters on the first line, the rest on continuation lines.
std::string EncodedWords(std::string_view text, std::size_t used) {
  // Base64 turns 3 bytes into 4 characters; whole groups keep words short.
  auto capacity = [](std::size_t room) -> std::size_t {
    if (room <= kEncodedWordOverhead) return 0;
    return (std::min(room, kMaxEncodedWordLength) - kEncodedWordOverhead) / 4 * 3;
  };
  std::string out;
  std::size_t room = kPreferredHeaderLineLength > used ? kPreferredHeaderLineLength - used : 0;
  std::size_t i = 0;
  bool first = true;
  while (i < text.size()) {
    std::size_t max_bytes = capacity(room);
    // Always make progress: at least one whole character per word.
    std::size_t end = i;
    while (end < text.size()) {
      std::size_t len = Utf8SequenceLength(text, end);
      if (len == 0) len = 1;  // input is sanitised; defensive only
      if (end + len - i > max_bytes && end > i) break;
      end += len;
    }
    if (!first) out += "\r\n ";
    out += kEncodedWordPrefix;
    out += Base64(text.substr(i, end - i));
    out += "?=";
    i = end;
    first = false;
    room = kPreferredHeaderLineLength - 1;  // continuation lines start with a space
  }
  return out;
}

// Folds ASCII text at whitespace so lines stay within 78 characters where the
// words allow, starting `used` characters into the first line. Folding only
// inserts CRLF before existing whitespace, so unfolding restores the text.
std::string FoldAtWhitespace(std::string_view text, std::size_t used) {
  std::string out;
  out.reserve(text.size() + 8);
  std::size_t line = used;
  bool line_has_word = used > 0;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t ws_end = i;
    while (ws_end < text.size() && IsWsp(text[ws_end])) ++ws_end;
    std::size_t word_end = ws_end;
    while (word_end < text.size() && !IsWsp(text[word_end])) ++word_end;
    const std::size_t chunk = word_end - i;
    if (word_end > ws_end && ws_end > i && line_has_word &&
        line + chunk > kPreferredHeaderLineLength) {
      out += "\r\n";
      line = 0;
    }
    out.append(text.substr(i, chunk));
    line += chunk;
    if (word_end > ws_end) line_has_word = true;
    i = word_end;
  }
  return out;
}

void CheckHeaderSafe(std::string_view what, std::string_view text, bool allow_folding) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\0') throw MimeError(fmt::format("{} contains a NUL byte", what));
    if (c == '\n') throw MimeError(fmt::format("{} contains a bare LF", what));
    if (c != '\r') continue;
    if (!allow_folding || i + 2 >= text.size() || text[i + 1] != '\n' || !IsWsp(text[i + 2])) {
      throw MimeError(fmt::format("{} contains a line break that is not folding", what));
    }
    ++i;
  }
}

std::string QuoteLocalPart(std::string_view local) {
  std::string out = "\"";
  for (char c : local) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
  return out;
}

bool IsValidDomain(std::string_view domain) {
  if (domain.empty() || domain.size() > 253) return false;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = domain.find('.', start);
    const std::string_view label =
        domain.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      const bool ok =
          (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
      if (!ok) return false;
    }
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

}  // namespace

std::string_view TransferEncodingName(TransferEncoding encoding) {
  return encoding == TransferEncoding::kBase64 ? "base64" : "quoted-printable";
}

TransferEncoding ChooseTransferEncoding(std::string_view text) {
  std::size_t escaped = 0;
  for (char c : text) escaped += QpEscapes(static_cast<unsigned char>(c)) ? 1 : 0;
  // QP costs 2 extra bytes per escaped byte, base64 a third of the whole:
  // base64 wins once more than one byte in six needs escaping.
  return escaped * 6 > text.size() ? TransferEncoding::kBase64 : TransferEncoding::kQuotedPrintable;
}

std::string EncodeQuotedPrintable(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 8 + 16);
  ForEachLine(text, [&](std::string_view line) {
    const std::size_t n = line.size();
    std::size_t used = 0;  // columns taken on the current output line
    std::size_t i = 0;
    while (i < n) {
      // Bytes that go out as they are, copied as one run up to the last
      // column a non-final character may take; a leading '.', an escape, the
      // soft break and trailing whitespace go byte by byte below.
      if (used > 0 || line[i] != '.') {
        const std::size_t room =
            used < kMaxEncodedLineLength - 1 ? kMaxEncodedLineLength - 1 - used : 0;
        const std::size_t stop = std::min(n, i + room);
        std::size_t j = i;
        while (j < stop && !QpEscapes(static_cast<unsigned char>(line[j]))) ++j;
        if (j == n && IsWsp(line[n - 1])) --j;
        if (j > i) {
          out.append(line.data() + i, j - i);
          used += j - i;
          i = j;
          continue;
        }
      }
      const auto b = static_cast<unsigned char>(line[i]);
      const bool last = i + 1 == n;
      bool escape = QpEscapes(b) || (last && IsWsp(line[i]));
      std::size_t width = escape ? 3 : 1;
      // The final character may use column 76; others leave room for "=".
      const std::size_t limit = last ? kMaxEncodedLineLength : kMaxEncodedLineLength - 1;
      if (used + width > limit) {
        out += "=\r\n";
        used = 0;
      }
      // A '.' opening a line is escaped so no transport can mistake it for
      // the end of DATA.
      if (used == 0 && b == '.') {
        escape = true;
        width = 3;
      }
      if (escape) {
        out.push_back('=');
        out.push_back(kHex[b >> 4]);
        out.push_back(kHex[b & 0x0F]);
      } else {
        out.push_back(static_cast<char>(b));
      }
      used += width;
      ++i;
    }
    out += "\r\n";
  });
  return out;
}

std::string Base64(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(data.data()),
                                static_cast<int>(data.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::string EncodeBase64Text(std::string_view text) {
  std::string canonical;
  canonical.reserve(text.size() + text.size() / 32);
  ForEachLine(text, [&](std::string_view line) {
    canonical.append(line);
    canonical += "\r\n";
  });
  // The text's own ending is kept: no line break is added after a last line
  // that had none.
  if (!text.empty() && text.back() != '\n' && text.back() != '\r')
    canonical.resize(canonical.size() - 2);
  const std::string encoded = Base64(canonical);
  std::string out;
  out.reserve(encoded.size() + encoded.size() / kMaxEncodedLineLength * 2 + 2);
  for (std::size_t i = 0; i < encoded.size(); i += kMaxEncodedLineLength) {
    out.append(encoded, i, kMaxEncodedLineLength);
    out += "\r\n";
  }
  return out;
}

bool IsValidUtf8(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t len = Utf8SequenceLength(text, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::string SanitizeHeaderText(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t len = Utf8SequenceLength(text, i);
    if (len == 0) {
      out += kReplacementCharacter;
      ++i;
      continue;
    }
    const std::string_view seq = text.substr(i, len);
    const auto b = static_cast<unsigned char>(seq[0]);
    if (len == 1 && (b < 0x20 || b == 0x7F)) {
      out += ' ';
    } else if (IsUnicodeBreakOrControl(seq)) {
      out += ' ';
    } else {
      out.append(seq);
    }
    i += len;
  }
  return out;
}

std::string EncodeUnstructuredHeader(std::string_view text, std::size_t name_length) {
  const std::string clean = SanitizeHeaderText(text);
  const std::string_view value = TrimWsp(clean);
  const std::size_t used = name_length + 2;  // "Name: "
  if (NeedsEncodedWords(value)) return EncodedWords(value, used);
  return FoldAtWhitespace(value, used);
}

MailAddress MailAddress::Parse(std::string_view text) {
  const std::string_view input = TrimWsp(text);
  auto fail = [&](std::string_view why) -> MimeError {
    return MimeError(
        fmt::format("invalid email address \"{}\": {}", SanitizeHeaderText(input), why));
  };
  for (char c : input) {
    const auto b = static_cast<unsigned char>(c);
    if (b < 0x20 || b >= 0x7F) throw fail("control or non-ASCII character");
  }
  const std::size_t at = input.rfind('@');
  if (at == std::string_view::npos) throw fail("no @");
  std::string_view local_in = input.substr(0, at);
  const std::string_view domain_in = input.substr(at + 1);
  std::string local;
  if (local_in.size() >= 2 && local_in.front() == '"' && local_in.back() == '"') {
    local_in = local_in.substr(1, local_in.size() - 2);
    for (std::size_t i = 0; i < local_in.size(); ++i) {
      if (local_in[i] == '\\') {
        if (++i == local_in.size()) throw fail("dangling backslash");
      } else if (local_in[i] == '"') {
        throw fail("unescaped quote");
      }
      local += local_in[i];
    }
  } else {
    if (!IsDotAtom(local_in)) throw fail("local part is not a dot-atom");
    local = std::string(local_in);
  }
  // RFC 5321 4.5.3.1.1: local part at most 64 octets.
  if (local.empty() || local.size() > 64) throw fail("local part empty or longer than 64");
  if (!IsValidDomain(domain_in)) throw fail("bad domain");
  std::string domain(domain_in);
  std::transform(domain.begin(), domain.end(), domain.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::string header = IsDotAtom(local) ? local : QuoteLocalPart(local);
  header += '@';
  header += domain;
  return MailAddress(std::move(local), std::move(domain), std::move(header));
}

Mailbox Mailbox::Parse(std::string_view text) {
  const std::string_view input = TrimWsp(text);
  if (input.empty() || input.back() != '>') return Mailbox{"", MailAddress::Parse(input)};
  const std::size_t open = input.rfind('<');
  if (open == std::string_view::npos) {
    throw MimeError(
        fmt::format("invalid mailbox \"{}\": '>' without '<'", SanitizeHeaderText(input)));
  }
  std::string_view name = TrimWsp(input.substr(0, open));
  std::string display;
  if (name.size() >= 2 && name.front() == '"' && name.back() == '"') {
    name = name.substr(1, name.size() - 2);
    for (std::size_t i = 0; i < name.size(); ++i) {
      if (name[i] == '\\' && i + 1 < name.size()) ++i;
      display += name[i];
    }
  } else {
    display = std::string(name);
  }
  return Mailbox{std::move(display),
                 MailAddress::Parse(input.substr(open + 1, input.size() - open - 2))};
}

std::string EncodeMailboxHeader(const Mailbox& mailbox, std::size_t name_length) {
  const std::string clean = SanitizeHeaderText(mailbox.display_name);
  const std::string_view name = TrimWsp(clean);
  if (name.empty()) return mailbox.address.header_form();
  const std::string addr = "<" + mailbox.address.header_form() + ">";
  const std::size_t used = name_length + 2;

  std::string phrase;
  bool atoms = true;
  for (char c : name) atoms = atoms && (IsAtext(c) || c == ' ');
  if (NeedsEncodedWords(name)) {
    phrase = EncodedWords(name, used);
  } else if (atoms && name.find("  ") == std::string_view::npos) {
    phrase = std::string(name);
  } else {
    phrase = "\"";
    for (char c : name) {
      if (c == '"' || c == '\\') phrase += '\\';
      phrase += c;
    }
    phrase += '"';
    // A long quoted string cannot be folded safely; encoded words can.
    if (used + phrase.size() > kPreferredHeaderLineLength) phrase = EncodedWords(name, used);
  }
  const std::size_t last_break = phrase.rfind("\r\n");
  const std::size_t last_line =
      last_break == std::string::npos ? used + phrase.size() : phrase.size() - last_break - 2;
  if (last_line + 1 + addr.size() > kPreferredHeaderLineLength) return phrase + "\r\n " + addr;
  return phrase + " " + addr;
}

void AppendHeader(std::string& out, std::string_view name, std::string_view value) {
  if (name.empty()) throw MimeError("header name is empty");
  for (char c : name) {
    const auto b = static_cast<unsigned char>(c);
    if (b <= 32 || b >= 127 || c == ':') {
      throw MimeError(
          fmt::format("header name \"{}\" has a forbidden character", SanitizeHeaderText(name)));
    }
  }
  CheckHeaderSafe(fmt::format("value of header {}", name), value, /*allow_folding=*/true);
  out.append(name);
  out += ": ";
  if (value.find('\r') == std::string_view::npos) {
    out += FoldAtWhitespace(value, name.size() + 2);
  } else {
    out.append(value);
  }
  out += "\r\n";
}

}  // namespace mailer::sender
