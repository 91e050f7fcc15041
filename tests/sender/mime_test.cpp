// MIME building blocks: quoted-printable and base64 line lengths and round
// trips, RFC 2047 encoded words (never splitting UTF-8), header folding,
// header-text sanitising and address parsing.
#include "sender/mime.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <random>

namespace mailer::sender {
namespace {

std::vector<std::string> Lines(const std::string& crlf_text) {
  std::vector<std::string> lines;
  std::size_t pos = 0;
  while (pos < crlf_text.size()) {
    const std::size_t end = crlf_text.find("\r\n", pos);
    if (end == std::string::npos) {
      lines.push_back(crlf_text.substr(pos));
      break;
    }
    lines.push_back(crlf_text.substr(pos, end - pos));
    pos = end + 2;
  }
  return lines;
}

// Every CR is part of a CRLF and every LF follows a CR.
bool OnlyCrlfLineEnds(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r' && (i + 1 == s.size() || s[i + 1] != '\n')) return false;
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) return false;
  }
  return true;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A strict RFC 2045 quoted-printable decoder: fails the test on anything our
// encoder must never produce.
std::string DecodeQp(const std::string& qp) {
  std::string out;
  for (const std::string& line : Lines(qp)) {
    EXPECT_LE(line.size(), kMaxEncodedLineLength) << line;
    bool soft = false;
    for (std::size_t i = 0; i < line.size(); ++i) {
      const char c = line[i];
      if (c == '=') {
        if (i + 1 == line.size()) {
          soft = true;
          break;
        }
        EXPECT_LT(i + 2, line.size() + 0) << "split escape in: " << line;
        const int hi = HexValue(line[i + 1]);
        const int lo = HexValue(line[i + 2]);
        EXPECT_TRUE(hi >= 0 && lo >= 0) << line;
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
      } else {
        EXPECT_TRUE(c == '\t' || (c >= 32 && c < 127)) << line;
        out += c;
      }
    }
    if (!line.empty() && !soft) {
      EXPECT_NE(line.back(), ' ') << "unescaped trailing space: " << line;
      EXPECT_NE(line.back(), '\t') << line;
    }
    if (!soft) out += "\r\n";
  }
  return out;
}

std::string DecodeBase64(std::string_view b64) {
  std::string clean;
  for (char c : b64) {
    if (c != '\r' && c != '\n') clean += c;
  }
  std::string out(clean.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(clean.data()),
                                static_cast<int>(clean.size()));
  EXPECT_GE(n, 0);
  std::size_t pad = 0;
  if (!clean.empty() && clean.back() == '=') ++pad;
  if (clean.size() > 1 && clean[clean.size() - 2] == '=') ++pad;
  out.resize(static_cast<std::size_t>(n) - pad);
  return out;
}

// Decodes a header value made of =?UTF-8?B?...?= words separated by folding
// whitespace, asserting each word is at most 75 characters and holds whole
// UTF-8 characters.
std::string DecodeEncodedWords(const std::string& value) {
  std::string out;
  std::size_t pos = 0;
  while (pos < value.size()) {
    while (pos < value.size() && (value[pos] == ' ' || value[pos] == '\r' || value[pos] == '\n')) {
      ++pos;
    }
    if (pos == value.size()) break;
    EXPECT_EQ(value.compare(pos, 10, "=?UTF-8?B?"), 0) << value.substr(pos);
    const std::size_t end = value.find("?=", pos + 10);
    EXPECT_NE(end, std::string::npos);
    EXPECT_LE(end + 2 - pos, kMaxEncodedWordLength);
    const std::string word = DecodeBase64(value.substr(pos + 10, end - pos - 10));
    EXPECT_TRUE(IsValidUtf8(word)) << "encoded word splits a UTF-8 sequence";
    out += word;
    pos = end + 2;
  }
  return out;
}

std::string Unfold(std::string s) {
  std::size_t pos;
  while ((pos = s.find("\r\n")) != std::string::npos) s.erase(pos, 2);
  return s;
}

void ExpectHeaderLinesWithin78(const std::string& value, std::size_t first_line_used) {
  const auto lines = Lines(value);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const std::size_t len = lines[i].size() + (i == 0 ? first_line_used : 0);
    EXPECT_LE(len, kPreferredHeaderLineLength) << lines[i];
    if (i > 0) {
      EXPECT_EQ(lines[i][0], ' ') << "continuation must start with a space";
    }
  }
}

// Random UTF-8 mixing 1- to 4-byte characters, spaces, '=', '.', tabs.
std::string RandomText(std::mt19937& rng, std::size_t chars) {
  static const std::vector<std::string> pieces = {"a", "Z", " ", "=",  ".",  "\t",
                                                  "é", "ß", "€", "日", "本", "😀",
                                                  "🎉", "-", "?", "_",  "\n", "\r\n"};
  std::string out;
  std::uniform_int_distribution<std::size_t> pick(0, pieces.size() - 1);
  for (std::size_t i = 0; i < chars; ++i) out += pieces[pick(rng)];
  return out;
}

std::string NormaliseNewlines(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r') {
      out += "\r\n";
      if (i + 1 < s.size() && s[i + 1] == '\n') ++i;
    } else if (s[i] == '\n') {
      out += "\r\n";
    } else {
      out += s[i];
    }
  }
  if (!out.empty() && !out.ends_with("\r\n")) out += "\r\n";
  return out;
}

TEST(QuotedPrintableTest, RoundTripsRandomTextWithinLineLimits) {
  std::mt19937 rng(42);
  for (int round = 0; round < 300; ++round) {
    const std::string text = RandomText(rng, 1 + round % 150);
    const std::string qp = EncodeQuotedPrintable(text);
    ASSERT_TRUE(OnlyCrlfLineEnds(qp));
    ASSERT_EQ(DecodeQp(qp), NormaliseNewlines(text)) << "input: " << text;
  }
}

TEST(QuotedPrintableTest, SoftBreaksLongLinesAt76AndNeverSplitAnEscape) {
  for (std::size_t len = 70; len < 240; ++len) {
    std::string text(len, 'x');
    for (std::size_t i = 0; i < len; i += 7) text[i] = '=';
    const std::string qp = EncodeQuotedPrintable(text);
    for (const std::string& line : Lines(qp)) ASSERT_LE(line.size(), 76u) << line;
    ASSERT_EQ(DecodeQp(qp), text + "\r\n");
  }
}

TEST(QuotedPrintableTest, EscapesTrailingWhitespaceLeadingDotAndEquals) {
  EXPECT_EQ(EncodeQuotedPrintable("a \nb\t\n.c\n1=2"), "a=20\r\nb=09\r\n=2Ec\r\n1=3D2\r\n");
  EXPECT_EQ(EncodeQuotedPrintable("caf\xC3\xA9"), "caf=C3=A9\r\n");
  EXPECT_EQ(EncodeQuotedPrintable(""), "");
}

// The encoding one byte at a time, straight from RFC 2045 6.7 and our rules
// (a '.' opening a line escaped, soft breaks before column 76): the encoder's
// run copying must give exactly this.
std::string ReferenceQp(const std::string& text) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (const std::string& line : Lines(NormaliseNewlines(text))) {
    std::size_t used = 0;
    for (std::size_t i = 0; i < line.size(); ++i) {
      const auto b = static_cast<unsigned char>(line[i]);
      const bool last = i + 1 == line.size();
      bool escape =
          b == '=' || b >= 0x7F || (b < 0x20 && b != '\t') || (last && (b == ' ' || b == '\t'));
      std::size_t width = escape ? 3 : 1;
      if (used + width > (last ? 76u : 75u)) {
        out += "=\r\n";
        used = 0;
      }
      if (used == 0 && b == '.') escape = true, width = 3;
      out += escape ? std::string{'=', hex[b >> 4], hex[b & 15]} : std::string(1, char(b));
      used += width;
    }
    out += "\r\n";
  }
  return out;
}

TEST(QuotedPrintableTest, MatchesByteAtATimeEncodingOnLongLinesDotsAndSpaces) {
  std::mt19937 rng(2026);
  const std::string alphabet = "abcdefghij .\t=\xC3\xA9";
  for (int round = 0; round < 2000; ++round) {
    std::string text;
    const std::size_t lines = 1 + rng() % 4;
    for (std::size_t l = 0; l < lines; ++l) {
      const std::size_t len = rng() % 320;
      // Mostly plain letters, as in real bodies, so the copied runs reach the
      // soft-break column; now and then a dot, space, tab, '=' or UTF-8.
      for (std::size_t i = 0; i < len; ++i) {
        text +=
            rng() % 6 == 0 ? alphabet[10 + rng() % (alphabet.size() - 10)] : alphabet[rng() % 10];
      }
      if (l + 1 < lines) text += "\n";
    }
    ASSERT_EQ(EncodeQuotedPrintable(text), ReferenceQp(text)) << "input: " << text;
  }
}

TEST(QuotedPrintableTest, BareCrAndLfBecomeCrlfHardBreaks) {
  const std::string qp = EncodeQuotedPrintable("a\rb\nc\r\nd");
  EXPECT_EQ(qp, "a\r\nb\r\nc\r\nd\r\n");
}

TEST(Base64TextTest, LinesAre76AndRoundTrip) {
  std::mt19937 rng(7);
  for (int round = 0; round < 100; ++round) {
    const std::string text = RandomText(rng, static_cast<std::size_t>(round * 5));
    const std::string b64 = EncodeBase64Text(text);
    ASSERT_TRUE(OnlyCrlfLineEnds(b64));
    const auto lines = Lines(b64);
    for (std::size_t i = 0; i < lines.size(); ++i) {
      if (i + 1 < lines.size()) {
        ASSERT_EQ(lines[i].size(), 76u);
      }
      ASSERT_LE(lines[i].size(), 76u);
    }
    std::string expected = NormaliseNewlines(text);
    // Base64 keeps the text's own ending: no line break is added.
    if (!text.empty() && text.back() != '\n' && text.back() != '\r')
      expected.resize(expected.size() - 2);
    ASSERT_EQ(DecodeBase64(b64), expected);
  }
}

TEST(TransferEncodingTest, PicksQuotedPrintableForLatinAndBase64ForCjk) {
  EXPECT_EQ(ChooseTransferEncoding("Hello Zoë, your order shipped."),
            TransferEncoding::kQuotedPrintable);
  EXPECT_EQ(ChooseTransferEncoding("こんにちは、ご注文の商品を発送しました。"),
            TransferEncoding::kBase64);
  EXPECT_EQ(ChooseTransferEncoding(""), TransferEncoding::kQuotedPrintable);
}

TEST(EncodedWordsTest, NonAsciiSubjectRoundTripsWithoutSplittingUtf8) {
  std::mt19937 rng(3);
  for (int round = 0; round < 300; ++round) {
    std::string text = RandomText(rng, 1 + round % 120);
    text += "é";  // force encoding
    const std::string value = EncodeUnstructuredHeader(text, 7);
    ASSERT_TRUE(OnlyCrlfLineEnds(value));
    ExpectHeaderLinesWithin78(value, 9);
    std::string expected = SanitizeHeaderText(text);
    while (!expected.empty() && (expected.front() == ' ' || expected.front() == '\t')) {
      expected.erase(0, 1);
    }
    while (!expected.empty() && (expected.back() == ' ' || expected.back() == '\t')) {
      expected.pop_back();
    }
    ASSERT_EQ(DecodeEncodedWords(value), expected);
  }
}

TEST(EncodedWordsTest, FourByteCharactersAtEveryOffsetStayWhole) {
  for (std::size_t prefix = 0; prefix < 50; ++prefix) {
    const std::string text = std::string(prefix, 'a') + "😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀";
    const std::string value = EncodeUnstructuredHeader(text, 7);
    ASSERT_EQ(DecodeEncodedWords(value), text);
  }
}

TEST(UnstructuredHeaderTest, AsciiStaysReadableAndFoldsAtSpaces) {
  EXPECT_EQ(EncodeUnstructuredHeader("Spring sale", 7), "Spring sale");
  std::string longer;
  for (int i = 0; i < 30; ++i) longer += "word" + std::to_string(i) + " ";
  const std::string value = EncodeUnstructuredHeader(longer, 7);
  EXPECT_NE(value.find("\r\n "), std::string::npos);
  ExpectHeaderLinesWithin78(value, 9);
  longer.pop_back();
  EXPECT_EQ(Unfold(value), longer);
}

TEST(UnstructuredHeaderTest, TextThatLooksLikeAnEncodedWordIsEncoded) {
  const std::string value = EncodeUnstructuredHeader("=?UTF-8?B?SGk=?= trick", 7);
  EXPECT_EQ(DecodeEncodedWords(value), "=?UTF-8?B?SGk=?= trick");
}

TEST(UnstructuredHeaderTest, LineBreaksInTextNeverStartAHeader) {
  const std::string value =
      EncodeUnstructuredHeader("Hello\r\nBcc: victim@example.com\r\n\r\n--boundary\n\0x", 7);
  EXPECT_EQ(value.find('\r'), std::string::npos);
  EXPECT_EQ(value.find('\n'), std::string::npos);
  EXPECT_EQ(value, "Hello  Bcc: victim@example.com    --boundary");
}

TEST(SanitizeHeaderTextTest, ReplacesControlsSeparatorsAndInvalidUtf8) {
  EXPECT_EQ(SanitizeHeaderText(std::string("a\rb\nc\0d\te\x7f", 10)), "a b c d e ");
  EXPECT_EQ(SanitizeHeaderText("x\xE2\x80\xA8y\xC2\x85z"), "x y z");
  EXPECT_EQ(SanitizeHeaderText("bad\xC3(\xFF"), "bad\xEF\xBF\xBD(\xEF\xBF\xBD");
  EXPECT_EQ(SanitizeHeaderText("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(MailAddressTest, AcceptsUsualAddressesAndLowercasesTheDomain) {
  const auto a = MailAddress::Parse("  Jane.Doe+news@Example.COM ");
  EXPECT_EQ(a.header_form(), "Jane.Doe+news@example.com");
  EXPECT_EQ(a.local_part(), "Jane.Doe+news");
  EXPECT_EQ(a.domain(), "example.com");
  EXPECT_EQ(MailAddress::Parse("\"john doe\"@example.com").header_form(),
            "\"john doe\"@example.com");
  EXPECT_EQ(MailAddress::Parse("user@xn--bcher-kva.example").domain(), "xn--bcher-kva.example");
}

TEST(MailAddressTest, RejectsAddressesThatCouldBreakHeadersOrEnvelope) {
  for (const char* bad :
       {"", "no-at-sign", "a@", "@example.com", "a\r\nBcc: x@y.com@example.com", "a b@example.com",
        "a..b@example.com", ".a@example.com", "a@-example.com", "a@exa_mple.com", "a@example..com",
        "a@b.com>", "<a@b.com", "ü@example.com", "a@exämple.com",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.com"}) {
    EXPECT_THROW(MailAddress::Parse(bad), MimeError) << bad;
  }
  EXPECT_THROW(MailAddress::Parse(std::string("a\0b@example.com", 15)), MimeError);
}

TEST(MailboxTest, ParsesDisplayNamesAndQuotesSpecials) {
  const auto m = Mailbox::Parse("\"Doe, Jane\" <jane@example.com>");
  EXPECT_EQ(m.display_name, "Doe, Jane");
  EXPECT_EQ(EncodeMailboxHeader(m, 4), "\"Doe, Jane\" <jane@example.com>");
  EXPECT_EQ(EncodeMailboxHeader(Mailbox::Parse("Jane Doe <jane@example.com>"), 4),
            "Jane Doe <jane@example.com>");
  EXPECT_EQ(EncodeMailboxHeader(Mailbox::Parse("jane@example.com"), 4), "jane@example.com");
  EXPECT_EQ(EncodeMailboxHeader(Mailbox{"Say \"hi\" \\ bye", MailAddress::Parse("a@b.com")}, 4),
            "\"Say \\\"hi\\\" \\\\ bye\" <a@b.com>");
}

TEST(MailboxTest, NonAsciiDisplayNameUsesEncodedWords) {
  const Mailbox m{"Zoë's Café ☕", MailAddress::Parse("cafe@example.com")};
  const std::string value = EncodeMailboxHeader(m, 4);
  const std::size_t angle = value.rfind(" <");
  ASSERT_NE(angle, std::string::npos);
  EXPECT_EQ(value.substr(angle), " <cafe@example.com>");
  EXPECT_EQ(DecodeEncodedWords(value.substr(0, angle)), "Zoë's Café ☕");
}

TEST(MailboxTest, DisplayNameLineBreaksBecomeSpaces) {
  const Mailbox m{"Evil\r\nBcc: victim@example.com", MailAddress::Parse("a@b.com")};
  const std::string value = EncodeMailboxHeader(m, 4);
  EXPECT_EQ(value.find('\n'), std::string::npos);
  EXPECT_EQ(value, "\"Evil  Bcc: victim@example.com\" <a@b.com>");
}

TEST(AppendHeaderTest, RejectsLineBreaksThatAreNotFolding) {
  std::string out;
  EXPECT_THROW(AppendHeader(out, "X-Test", "a\r\nBcc: b"), MimeError);
  EXPECT_THROW(AppendHeader(out, "X-Test", "a\nb"), MimeError);
  EXPECT_THROW(AppendHeader(out, "X-Test", "a\rb"), MimeError);
  EXPECT_THROW(AppendHeader(out, "X-Test", std::string("a\0b", 3)), MimeError);
  EXPECT_THROW(AppendHeader(out, "Bad Name", "v"), MimeError);
  EXPECT_THROW(AppendHeader(out, "Bad:Name", "v"), MimeError);
  EXPECT_TRUE(out.empty());
  AppendHeader(out, "X-Test", "a\r\n b");
  EXPECT_EQ(out, "X-Test: a\r\n b\r\n");
}

}  // namespace
}  // namespace mailer::sender
