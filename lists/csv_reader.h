// CsvReader: a strict, streaming RFC 4180 reader for imports of millions of
// rows. Memory is bounded by one record (field and record size limits), not
// by the file.
//
// Grammar (RFC 4180, with the leniencies real exports need):
//   - Fields are separated by the delimiter (',' by default); records end with
//     LF, CRLF or a lone CR. A UTF-8 byte order mark at the start is skipped.
//   - A field that starts with '"' is quoted: it may hold delimiters, CR, LF
//     and doubled quotes ("" for "). The closing quote must be followed by a
//     delimiter or the end of the record.
//   - A quote inside an unquoted field, text after a closing quote, a quoted
//     field still open at the end of the file, a field longer than
//     max_field_bytes, a record longer than max_record_bytes, a NUL byte and
//     invalid UTF-8 make the record bad. A bad record is reported with its
//     line and reason and reading goes on: one bad record never stops the
//     reader.
//   - Empty lines are skipped (not records).
//
// Recovery after a bad record (where the next record starts):
//   - The reader reads on to the end of the bad record, honouring quotes: a
//     quote at the start of a field opens a quoted section that only its
//     closing quote ends (a stray quote inside a field, or text after a
//     closing quote, is taken as text). So the text of a quoted field is never
//     read as records of its own, however long the field: a field over the
//     size limit that is closed later is one bad record, up to its end.
//   - A quoted field still open at the end of the file never had an end: the
//     bad record is cut at the end of the line holding its opening quote, and
//     reading goes on with the line after it. The lines after that quote are
//     read again as records (at most once per file: after a quote that runs
//     to the end of the file, every later quote is paired).
// So every byte of the input belongs to exactly one record (good or bad) or
// to a skipped empty line, in order, and every line is accounted for.
//
// Line numbers are 1-based physical lines where the record starts, so a
// record with embedded line breaks is reported at its first line. Lines are
// counted the way records are split: CR, LF and CRLF each end one line.
#pragma once

#include <cstdint>
#include <istream>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace mailer::lists {

struct CsvOptions {
  char delimiter = ',';
  // Longest accepted field. Real attributes are short; a longer field is
  // almost always a runaway quote swallowing the rest of the file.
  std::size_t max_field_bytes = 64 * 1024;
  // Longest accepted record (all fields together, a byte for each field's
  // delimiter); bounds memory.
  std::size_t max_record_bytes = 1024 * 1024;
  // Size of the read buffer (at least 4 bytes).
  std::size_t buffer_bytes = 1024 * 1024;
};

struct CsvRecord {
  // Physical line where the record starts (1-based).
  std::uint64_t line = 0;
  // Byte offsets of the record's first byte and just past its terminator.
  std::uint64_t begin_offset = 0;
  std::uint64_t end_offset = 0;
  // Views into the reader's buffer, valid until the next call to next(). Of a
  // bad record: the fields as far as they were read, the last one possibly
  // cut short (at the size limit, or at the end of the line of an
  // unterminated quote); its text is unchecked (NUL, invalid UTF-8).
  std::vector<std::string_view> fields;
};

enum class CsvStatus { kRecord, kBadRecord, kEnd };

class CsvReader {
 public:
  // Reads `in` from its current position, which is byte `start_offset` of the
  // file at physical line `start_line` (to resume after a committed record).
  // A BOM is only looked for at offset 0. Throws std::runtime_error on a read
  // error of the stream. Going back to the line after an unterminated quote
  // seeks `in` when the bytes are no longer buffered; a stream that cannot
  // seek then ends that bad record at the end of the file instead.
  explicit CsvReader(std::istream& in, CsvOptions options = {}, std::uint64_t start_offset = 0,
                     std::uint64_t start_line = 1);

  // kRecord: `record` holds the next record. kBadRecord: `record.line` and
  // offsets say where, `reason` says why ("quote inside unquoted field
  // 2"). kEnd: nothing left.
  CsvStatus next(CsvRecord& record, std::string& reason);

  // Bytes consumed so far (the end offset of the last record returned).
  std::uint64_t offset() const { return consumed_; }
  // The physical line the next record starts on.
  std::uint64_t line() const { return line_; }
  // "UTF-16LE" or "UTF-16BE" when the file starts like UTF-16 text (a UTF-16
  // byte order mark, or NUL in every other byte), else nullptr. Only known
  // for a reader that starts at offset 0.
  const char* utf16_encoding() const { return utf16_; }

 private:
  // Where in a record the reader is when it skips the rest of a bad one.
  enum class At { kFieldStart, kUnquoted, kQuoted };
  // Where the quoted field being read opened: its quote's offset and line.
  struct QuoteStart {
    std::uint64_t offset = 0;
    std::uint64_t line = 0;
  };

  int get();
  int peek();
  bool refill();
  void detect_utf16();
  // Appends one byte to the current field; false when a limit is crossed.
  bool append(char c);
  CsvStatus read_record(CsvRecord& record, std::string& reason);
  // Ends the bad record being read (the field in progress is kept as its
  // last field): reads on to its end from `at` (see "Recovery" above).
  CsvStatus bad_record(CsvRecord& record, std::string& reason, std::string why, At at,
                       QuoteStart quote);
  // The quote at `quote` is still open at the end of the file: ends the bad
  // record at the end of the quote's line and goes on reading from there.
  void end_at_line_of(CsvRecord& record, std::string& reason, QuoteStart quote);
  // Moves the reader back to file offset `offset` at line `line`; false when
  // the stream cannot go back there.
  bool rewind(std::uint64_t offset, std::uint64_t line);
  void fill_fields(CsvRecord& record) const;

  std::istream& in_;
  CsvOptions options_;
  std::vector<char> buffer_;
  std::size_t pos_ = 0;
  std::size_t end_ = 0;
  std::uint64_t consumed_ = 0;
  std::uint64_t line_ = 1;
  // Offset just past the last CR read: an LF there ends no further line.
  std::uint64_t cr_end_ = std::numeric_limits<std::uint64_t>::max();
  bool eof_ = false;
  // The stream position of file offset `start_offset_`; -1 when the stream
  // cannot tell (and so cannot seek).
  std::streamoff stream_base_ = -1;
  std::uint64_t start_offset_ = 0;
  const char* utf16_ = nullptr;
  std::string data_;
  std::vector<std::size_t> ends_;
  std::size_t field_start_ = 0;
  // data_ may grow to this size in the field being read (its field limit or
  // what is left of the record's).
  std::size_t field_limit_ = 0;
};

// A problem with a CSV file as a whole (empty, binary, no usable header):
// what() names the file and says what is wrong.
class CsvFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Reads the header record of `reader` (a file named `file` in messages) and
// returns the column names, trimmed of surrounding spaces. Throws
// CsvFileError when the file is empty, is UTF-16 text, the header row is not
// valid CSV text (binary data, invalid UTF-8), or two columns share a name
// (ASCII case-insensitively).
std::vector<std::string> read_csv_header(CsvReader& reader, const std::string& file);

// Index of the column named `name` (ASCII case-insensitive), or -1.
int find_column(const std::vector<std::string>& header, std::string_view name);

// `s` without leading and trailing spaces and tabs.
std::string_view trim_blanks(std::string_view s);

// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, at most
// U+10FFFF).
bool is_valid_utf8(std::string_view s);

}  // namespace mailer::lists
