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
//     line and reason, the reader skips to the next line end and goes on: one
//     bad record never stops the reader.
//   - Empty lines are skipped (not records).
// Line numbers are 1-based physical lines (LF count) where the record starts,
// so a record with embedded newlines is reported at its first line.
#pragma once

#include <cstdint>
#include <istream>
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
  // Longest accepted record (all fields together); bounds memory.
  std::size_t max_record_bytes = 1024 * 1024;
  // Size of the read buffer.
  std::size_t buffer_bytes = 1024 * 1024;
};

struct CsvRecord {
  // Physical line where the record starts (1-based).
  std::uint64_t line = 0;
  // Byte offsets of the record's first byte and just past its terminator.
  std::uint64_t begin_offset = 0;
  std::uint64_t end_offset = 0;
  // Views into the reader's buffer, valid until the next call to next().
  std::vector<std::string_view> fields;
};

enum class CsvStatus { kRecord, kBadRecord, kEnd };

class CsvReader {
 public:
  // Reads `in` from its current position, which is byte `start_offset` of the
  // file at physical line `start_line` (to resume after a committed record).
  // A BOM is only looked for at offset 0. Throws std::runtime_error on a read
  // error of the stream.
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

 private:
  int get();
  int peek();
  bool refill();
  void skip_to_line_end();
  // Appends one byte to the current field; false when a limit is crossed.
  bool append(char c);
  CsvStatus read_record(CsvRecord& record, std::string& reason);

  std::istream& in_;
  CsvOptions options_;
  std::vector<char> buffer_;
  std::size_t pos_ = 0;
  std::size_t end_ = 0;
  std::uint64_t consumed_ = 0;
  std::uint64_t line_ = 1;
  bool eof_ = false;
  std::string data_;
  std::vector<std::size_t> ends_;
  std::size_t field_start_ = 0;
};

// A problem with a CSV file as a whole (empty, binary, no usable header):
// what() names the file and says what is wrong.
class CsvFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Reads the header record of `reader` (a file named `file` in messages) and
// returns the column names, trimmed of surrounding spaces. Throws
// CsvFileError when the file is empty, the header row is not valid CSV text
// (binary data, invalid UTF-8), or two columns share a name.
std::vector<std::string> read_csv_header(CsvReader& reader, const std::string& file);

// Index of the column named `name` (ASCII case-insensitive), or -1.
int find_column(const std::vector<std::string>& header, std::string_view name);

// `s` without leading and trailing spaces and tabs.
std::string_view trim_blanks(std::string_view s);

// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, at most
// U+10FFFF).
bool is_valid_utf8(std::string_view s);

}  // namespace mailer::lists
