// CsvReader: RFC 4180 quoting, line ends, BOM, and every kind of bad record,
// each reported with its line while reading goes on.
#include "lists/csv_reader.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

namespace mailer::lists {
namespace {

struct Item {
  CsvStatus status;
  std::uint64_t line;
  std::vector<std::string> fields;
  std::string reason;
};

std::vector<Item> read_all(const std::string& text, CsvOptions options = {}) {
  std::istringstream in(text);
  options.buffer_bytes = 7;  // tiny buffer: every refill boundary is exercised
  CsvReader reader(in, options);
  std::vector<Item> out;
  CsvRecord r;
  std::string reason;
  for (CsvStatus s; (s = reader.next(r, reason)) != CsvStatus::kEnd;) {
    Item item{s, r.line, {}, s == CsvStatus::kBadRecord ? reason : ""};
    if (s == CsvStatus::kRecord) {
      for (auto f : r.fields) item.fields.emplace_back(f);
    }
    out.push_back(item);
  }
  return out;
}

using Fields = std::vector<std::string>;

TEST(CsvReader, ReadsQuotedFieldsWithDelimitersQuotesAndNewlines) {
  auto items =
      read_all("email,name\r\n\"a@x.com\",\"Doe, \"\"JD\"\"\r\nline two\"\r\nb@x.com,B\r\n");
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[1].fields, (Fields{"a@x.com", "Doe, \"JD\"\r\nline two"}));
  EXPECT_EQ(items[1].line, 2u);
  EXPECT_EQ(items[2].fields, (Fields{"b@x.com", "B"}));
  EXPECT_EQ(items[2].line, 4u) << "line numbers count the embedded newline";
}

TEST(CsvReader, AcceptsLfCrlfAndMissingFinalNewline) {
  auto items = read_all("a,b\nc,d\r\ne,f");
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0].fields, (Fields{"a", "b"}));
  EXPECT_EQ(items[1].fields, (Fields{"c", "d"}));
  EXPECT_EQ(items[2].fields, (Fields{"e", "f"}));
}

TEST(CsvReader, SkipsUtf8ByteOrderMark) {
  auto items = read_all(
      "\xEF\xBB\xBF"
      "email\na@x.com\n");
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0].fields, (Fields{"email"}));
}

TEST(CsvReader, SkipsEmptyLinesButKeepsEmptyFields) {
  auto items = read_all("a,b\n\n,\n\r\n\"\",x\n");
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[1].fields, (Fields{"", ""}));
  EXPECT_EQ(items[1].line, 3u);
  EXPECT_EQ(items[2].fields, (Fields{"", "x"}));
}

TEST(CsvReader, UsesTheConfiguredDelimiter) {
  CsvOptions o;
  o.delimiter = ';';
  auto items = read_all("email;name\na@x.com;\"A;B\"\n", o);
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[1].fields, (Fields{"a@x.com", "A;B"}));
}

TEST(CsvReader, ReportsBadRecordsWithLineAndReasonAndGoesOn) {
  std::string text =
      "email,name\n"            // 1
      "a@x.com,ab\"c\n"         // 2 quote inside unquoted field
      "b@x.com,\"ab\"c\n"       // 3 text after closing quote
      "c@x.com,\"has_nul\"\n"  // 4 NUL byte
      "d@x.com,\"\xC3\x28\"\n"  // 5 invalid UTF-8
      "e@x.com,ok\n";           // 6
  text[text.find("has") + 3] = '\0';
  auto items = read_all(std::string(text.data(), text.size()));
  ASSERT_EQ(items.size(), 6u);
  EXPECT_EQ(items[1].status, CsvStatus::kBadRecord);
  EXPECT_EQ(items[1].line, 2u);
  EXPECT_EQ(items[1].reason, "quote inside unquoted field 2");
  EXPECT_EQ(items[2].reason, "text after closing quote in field 2");
  EXPECT_EQ(items[2].line, 3u);
  EXPECT_EQ(items[3].reason, "NUL byte in field 2");
  EXPECT_EQ(items[4].reason, "invalid UTF-8 in field 2");
  EXPECT_EQ(items[5].status, CsvStatus::kRecord);
  EXPECT_EQ(items[5].fields, (Fields{"e@x.com", "ok"}));
  EXPECT_EQ(items[5].line, 6u);
}

TEST(CsvReader, RejectsOverLongFieldsAndResumesAtTheNextLine) {
  CsvOptions o;
  o.max_field_bytes = 10;
  auto items = read_all("a,b\nx," + std::string(50, 'y') + "\nc,d\n", o);
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[1].status, CsvStatus::kBadRecord);
  EXPECT_EQ(items[1].reason, "field 2 longer than 10 bytes");
  EXPECT_EQ(items[2].fields, (Fields{"c", "d"}));
  EXPECT_EQ(items[2].line, 3u);
}

TEST(CsvReader, ReportsUnterminatedQuoteAtEndOfFile) {
  auto items = read_all("a,b\nx,\"never closed\nmore\n");
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[1].status, CsvStatus::kBadRecord);
  EXPECT_EQ(items[1].reason, "unterminated quoted field 2");
  EXPECT_EQ(items[1].line, 2u);
}

TEST(CsvReader, ValidatesUtf8Strictly) {
  EXPECT_TRUE(is_valid_utf8("plain"));
  EXPECT_TRUE(is_valid_utf8("M\xC3\xBCller \xE4\xBE\x8B \xF0\x9F\x98\x80"));
  EXPECT_FALSE(is_valid_utf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(is_valid_utf8("\xE4\xBE"));          // truncated
  EXPECT_FALSE(is_valid_utf8("\xFF"));
}

TEST(CsvReader, ResumesAtARecordOffset) {
  std::string text = "email\na@x.com\nb@x.com\n";
  std::istringstream in(text);
  CsvReader first(in);
  CsvRecord r;
  std::string reason;
  ASSERT_EQ(first.next(r, reason), CsvStatus::kRecord);
  ASSERT_EQ(first.next(r, reason), CsvStatus::kRecord);
  std::uint64_t offset = r.end_offset;
  std::uint64_t line = first.line();
  std::istringstream again(text);
  again.seekg(static_cast<std::streamoff>(offset));
  CsvReader resumed(again, {}, offset, line);
  ASSERT_EQ(resumed.next(r, reason), CsvStatus::kRecord);
  EXPECT_EQ(r.fields[0], "b@x.com");
  EXPECT_EQ(r.line, 3u);
}

TEST(CsvHeader, RejectsBinaryHeadersAndDuplicateColumns) {
  std::istringstream bin(std::string("PK\x03\x04\0\0binary", 12));
  CsvReader r1(bin);
  EXPECT_THROW(read_csv_header(r1, "f.csv"), CsvFileError);
  std::istringstream dup("email,Name,name\n");
  CsvReader r2(dup);
  try {
    read_csv_header(r2, "f.csv");
    FAIL();
  } catch (const CsvFileError& e) {
    EXPECT_STREQ(e.what(), "f.csv: line 1: column \"name\" appears twice in the header");
  }
  std::istringstream empty("");
  CsvReader r3(empty);
  EXPECT_THROW(read_csv_header(r3, "f.csv"), CsvFileError);
  std::istringstream ok(" Email ,name\n");
  CsvReader r4(ok);
  auto header = read_csv_header(r4, "f.csv");
  EXPECT_EQ(find_column(header, "email"), 0);
}

}  // namespace
}  // namespace mailer::lists
