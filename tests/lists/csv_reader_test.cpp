// CsvReader: RFC 4180 quoting, line ends, BOM, and every kind of bad record,
// each reported with its line while reading goes on.
#include "lists/csv_reader.h"

#include <gtest/gtest.h>

#include <chrono>
#include <sstream>
#include <streambuf>
#include <string>
#include <utility>
#include <vector>

namespace mailer::lists {
namespace {

struct Item {
  CsvStatus status;
  std::uint64_t line;
  std::vector<std::string> fields;
  std::string reason;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
};

std::vector<Item> read_stream(std::istream& in, CsvOptions options) {
  CsvReader reader(in, options);
  std::vector<Item> out;
  CsvRecord r;
  std::string reason;
  for (CsvStatus s; (s = reader.next(r, reason)) != CsvStatus::kEnd;) {
    Item item{s,           r.line, {}, s == CsvStatus::kBadRecord ? reason : "", r.begin_offset,
              r.end_offset};
    for (auto f : r.fields) item.fields.emplace_back(f);
    out.push_back(item);
  }
  return out;
}

std::vector<Item> read_all(const std::string& text, CsvOptions options = {}) {
  std::istringstream in(text);
  options.buffer_bytes = 7;  // tiny buffer: every refill boundary is exercised
  return read_stream(in, options);
}

// The same, with the whole text in the reader's buffer (going back to the
// line after an unterminated quote then needs no seek).
std::vector<Item> read_buffered(const std::string& text, CsvOptions options = {}) {
  std::istringstream in(text);
  options.buffer_bytes = text.size() + 1;
  return read_stream(in, options);
}

// Records' byte spans follow each other with nothing between them but the
// line ends of skipped empty lines, from the first byte to the last.
void expect_spans_tile(const std::string& text, const std::vector<Item>& items) {
  std::uint64_t at = 0;
  for (const Item& item : items) {
    ASSERT_LE(at, item.begin);
    EXPECT_EQ(text.substr(at, item.begin - at).find_first_not_of("\r\n"), std::string::npos)
        << "bytes " << at << ".." << item.begin << " belong to no record";
    EXPECT_LT(item.begin, item.end);
    at = item.end;
  }
  EXPECT_EQ(text.substr(at).find_first_not_of("\r\n"), std::string::npos)
      << "bytes from " << at << " belong to no record";
}

// A stream that cannot seek, like a pipe.
class PipeBuf : public std::streambuf {
 public:
  explicit PipeBuf(std::string text) : text_(std::move(text)) {
    setg(text_.data(), text_.data(), text_.data() + text_.size());
  }

 private:
  std::string text_;
};

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
      "c@x.com,\"has_nul\"\n"   // 4 NUL byte
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
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[1].status, CsvStatus::kBadRecord);
  EXPECT_EQ(items[1].reason, "unterminated quoted field 2");
  EXPECT_EQ(items[1].line, 2u);
  EXPECT_EQ(items[2].fields, (Fields{"more"})) << "a line after the quote's is read again";
  EXPECT_EQ(items[2].line, 3u);
}

// A quoted field over the size limit that is closed later is one bad record
// up to its closing quote: its lines never become rows, and the rows after it
// are read.
TEST(CsvReader, OversizeQuotedFieldIsOneBadRecordUpToItsEnd) {
  CsvOptions o;
  o.max_field_bytes = 64;
  std::string note;
  for (int i = 0; i < 20; ++i) note += "note line\n";
  const std::string text = "email,note\nvictim@x.com,\"" + note +
                           "injected@x.com,Mallory\n\"\"end\"\"\"\nlast@x.com,x\n";
  for (const auto& items : {read_all(text, o), read_buffered(text, o)}) {
    ASSERT_EQ(items.size(), 3u);
    EXPECT_EQ(items[1].status, CsvStatus::kBadRecord);
    EXPECT_EQ(items[1].line, 2u);
    EXPECT_EQ(items[1].reason, "field 2 longer than 64 bytes");
    ASSERT_EQ(items[1].fields.size(), 2u) << "the fields read before the problem";
    EXPECT_EQ(items[1].fields[0], "victim@x.com");
    EXPECT_EQ(items[2].status, CsvStatus::kRecord);
    EXPECT_EQ(items[2].fields, (Fields{"last@x.com", "x"}));
    EXPECT_EQ(items[2].line, 24u);
    expect_spans_tile(text, items);
  }
}

// A record over the record limit inside a quoted field skips to the record's
// end the same way; so does a stray quote before a quoted field.
TEST(CsvReader, EveryBadRecordEndsWhereItsQuotedFieldsEnd) {
  CsvOptions o;
  o.max_record_bytes = 40;
  const std::string text =
      "a,b,c\n"
      "x,\"0123456789012345678901234567890123456789\nrow@x,y\n\",z\n"  // 2: record limit
      "x\"y,\"in\nrow@x,y\n\",z\n"                                     // 5: stray quote
      "p,\"q\"r,\"in\nrow@x,y\n\"\n"                                   // 8: text after quote
      "last,1,2\n";                                                    // 11
  auto items = read_all(text, o);
  ASSERT_EQ(items.size(), 5u);
  EXPECT_EQ(items[1].reason, "record longer than 40 bytes");
  EXPECT_EQ(items[1].line, 2u);
  EXPECT_EQ(items[2].reason, "quote inside unquoted field 1");
  EXPECT_EQ(items[2].line, 5u);
  EXPECT_EQ(items[3].reason, "text after closing quote in field 2");
  EXPECT_EQ(items[3].line, 8u);
  EXPECT_EQ(items[4].fields, (Fields{"last", "1", "2"}));
  EXPECT_EQ(items[4].line, 11u);
  expect_spans_tile(text, items);
}

// A quote still open at the end of the file: the bad record is the line of
// its opening quote; the lines after it are read as records.
TEST(CsvReader, UnterminatedQuoteRejectsItsLineAndReadsTheLinesAfterIt) {
  const std::string text =
      "email,name\n\"a@example.com,Ann\nb@example.com,Bob\r\nc@example.com,Cy\n";
  for (const auto& items : {read_all(text), read_buffered(text)}) {
    ASSERT_EQ(items.size(), 4u);
    EXPECT_EQ(items[1].status, CsvStatus::kBadRecord);
    EXPECT_EQ(items[1].reason, "unterminated quoted field 1");
    EXPECT_EQ(items[1].line, 2u);
    EXPECT_EQ(items[1].fields, (Fields{"a@example.com,Ann"})) << "the text of its line";
    EXPECT_EQ(items[2].fields, (Fields{"b@example.com", "Bob"}));
    EXPECT_EQ(items[2].line, 3u);
    EXPECT_EQ(items[3].fields, (Fields{"c@example.com", "Cy"}));
    EXPECT_EQ(items[3].line, 4u);
    expect_spans_tile(text, items);
  }
}

// The record is cut at the line of the quote that never closed, not at the
// record's first line: the quoted field closed before it stays in the record.
TEST(CsvReader, UnterminatedQuoteAfterAClosedMultiLineFieldKeepsThatFieldWhole) {
  const std::string text = "a,b,c\nx,\"one\ntwo\",\"open\nrow,1,2\n";
  auto items = read_all(text);
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[1].reason, "unterminated quoted field 3");
  EXPECT_EQ(items[1].line, 2u);
  EXPECT_EQ(items[1].fields, (Fields{"x", "one\ntwo", "open"}));
  EXPECT_EQ(items[2].fields, (Fields{"row", "1", "2"}));
  EXPECT_EQ(items[2].line, 4u);
  expect_spans_tile(text, items);
}

TEST(CsvReader, OversizeQuotedFieldNeverClosedRejectsItsLineAndReadsOn) {
  CsvOptions o;
  o.max_field_bytes = 16;
  const std::string text = "a,b\nx,\"runaway text longer than the limit\ny,1\nz,2\n";
  for (const auto& items : {read_all(text, o), read_buffered(text, o)}) {
    ASSERT_EQ(items.size(), 4u);
    EXPECT_EQ(items[1].reason, "field 2 longer than 16 bytes");
    EXPECT_EQ(items[1].fields, (Fields{"x", "runaway text lon"}));
    EXPECT_EQ(items[2].fields, (Fields{"y", "1"}));
    EXPECT_EQ(items[2].line, 3u);
    EXPECT_EQ(items[3].fields, (Fields{"z", "2"}));
    expect_spans_tile(text, items);
  }
}

TEST(CsvReader, LongMultiLineQuotedFieldWithinTheLimitIsOneRow) {
  std::string note;
  for (int i = 0; i < 6000; ++i) note += "note line\n";  // 60,000 bytes, under 64 KB
  const std::string text = "email,note\nv@x.com,\"" + note + "\"\nlast@x.com,x\n";
  auto items = read_all(text);
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[1].status, CsvStatus::kRecord);
  EXPECT_EQ(items[1].fields, (Fields{"v@x.com", note}));
  EXPECT_EQ(items[2].fields, (Fields{"last@x.com", "x"}));
  EXPECT_EQ(items[2].line, 6003u);
}

// On a stream that cannot go back, the unterminated record takes the rest of
// the file and says so: nothing is read twice, nothing is lost unreported.
TEST(CsvReader, UnterminatedQuoteOnAStreamThatCannotSeekRunsToTheEnd) {
  const std::string text = "a,b\n\"x,1\ny,2\n";
  PipeBuf buf(text);
  std::istream in(&buf);
  CsvOptions o;
  o.buffer_bytes = 4;
  auto items = read_stream(in, o);
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[1].reason,
            "unterminated quoted field 1 (the rest of the file is part of it: the input cannot "
            "be read again)");
  expect_spans_tile(text, items);
}

TEST(CsvReader, CountsLinesEndedByCrLfOrCrlfAlike) {
  const std::string text = "a,b\rx,\"y\rz\"\rbad\"q,1\r\nc,d\ne,f\r\r\ng\"h,2\r";
  auto items = read_all(text);
  ASSERT_EQ(items.size(), 6u);
  EXPECT_EQ(items[1].line, 2u);
  EXPECT_EQ(items[2].status, CsvStatus::kBadRecord);
  EXPECT_EQ(items[2].line, 4u);
  EXPECT_EQ(items[3].line, 5u);
  EXPECT_EQ(items[4].line, 6u);
  EXPECT_EQ(items[5].status, CsvStatus::kBadRecord);
  EXPECT_EQ(items[5].line, 8u) << "after an empty line";
  expect_spans_tile(text, items);
}

// Every delimiter counts toward the record limit, so a line of a million
// empty fields is one bad record, not a million views in memory.
TEST(CsvReader, EmptyFieldsCountTowardTheRecordLimit) {
  CsvOptions o;
  o.max_record_bytes = 100;
  const std::string text = "a\n" + std::string(500, ',') + "\nb\n";
  auto items = read_all(text, o);
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[1].reason, "record longer than 100 bytes");
  EXPECT_EQ(items[2].fields, (Fields{"b"}));
}

// Found by the fuzzer: with a read buffer smaller than a byte order mark,
// looking for one ended the file after its first byte.
TEST(CsvReader, ReadsTheWholeFileWhateverTheBufferSize) {
  for (std::size_t size : {1, 2, 3}) {
    std::istringstream in(
        "\xEF\xBB\xBF"
        "a,b\n\xEF\xBBx,y\n");
    CsvOptions o;
    o.buffer_bytes = size;
    auto items = read_stream(in, o);
    ASSERT_EQ(items.size(), 2u) << size;
    EXPECT_EQ(items[0].fields, (Fields{"a", "b"}));
    EXPECT_EQ(items[1].fields, (Fields{"\xEF\xBBx", "y"}));
  }
}

// Found by the fuzzer: "" as the file's last line, with no line end after
// it, was taken for an empty line and dropped.
TEST(CsvReader, EmptyQuotedFieldAtTheEndIsARecord) {
  auto items = read_all("a\nx\n\"\"");
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[2].status, CsvStatus::kRecord);
  EXPECT_EQ(items[2].fields, (Fields{""}));
  EXPECT_EQ(items[2].line, 3u);
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

TEST(CsvHeader, NamesUtf16AsTheEncodingToConvertFrom) {
  const std::string le(
      "\xFF\xFE"
      "e\0m\0a\0i\0l\0\n\0",
      14);
  const std::string be(
      "\xFE\xFF"
      "\0e\0m\0a\0i\0l\0\n",
      14);
  const std::string le_without_bom("e\0m\0a\0i\0l\0,\0n\0a\0m\0e\0\n\0", 22);
  for (const auto& [text, encoding] : {std::pair{le, "UTF-16LE"}, std::pair{be, "UTF-16BE"},
                                       std::pair{le_without_bom, "UTF-16LE"}}) {
    std::istringstream in(text);
    CsvReader reader(in);
    try {
      read_csv_header(reader, "f.csv");
      FAIL() << encoding;
    } catch (const CsvFileError& e) {
      EXPECT_EQ(std::string(e.what()),
                std::string("f.csv: file is UTF-16 (") + encoding +
                    "); convert it to UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)");
    }
  }
}

// Half a million columns (a megabyte of delimiters) are checked for repeated
// names at once; comparing each with all before it took a minute.
TEST(CsvHeader, ChecksManyColumnsForRepeatsInLinearTime) {
  std::string many;
  for (int i = 0; i < 50'000; ++i) many += "c" + std::to_string(i) + ",";
  many += std::string(450'000, ',') + "C49999\n";
  std::istringstream in(many);
  CsvReader reader(in);
  const auto start = std::chrono::steady_clock::now();
  try {
    read_csv_header(reader, "f.csv");
    FAIL();
  } catch (const CsvFileError& e) {
    EXPECT_STREQ(e.what(), "f.csv: line 1: column \"C49999\" appears twice in the header");
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  std::istringstream empty_names(std::string(500'000, ',') + "email\n");
  CsvReader r2(empty_names);
  EXPECT_EQ(read_csv_header(r2, "f.csv").size(), 500'001u) << "empty names never clash";
}

}  // namespace
}  // namespace mailer::lists
