// Fuzzes the CSV reader with untrusted file text. Beyond not crashing, the
// reader keeps the promises of lists/csv_reader.h:
//   - Every byte belongs to exactly one record (good or bad) or to a skipped
//     empty line: the records' byte spans follow each other in order, with
//     nothing between them but line ends, from the first byte to the last.
//   - A record's line is one more than the line ends (CR, LF, CRLF) before it.
//   - A good record's fields are UTF-8 without NUL, within the size limits,
//     and written back as CSV they read back the same.
//   - A reader started at a record's offset and line (an import resuming)
//     reads the rest of the file exactly as the first reader did.
//   - A quoted field's text never becomes records: the input, put inside a
//     closed quoted field, is one record (good or bad) spanning exactly that
//     field's record, and the row after it is read intact.
// The first three bytes choose the options: read buffer size, field and
// record limits (small ones, so that the limits are crossed), delimiter.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "lists/csv_reader.h"

using namespace mailer::lists;

namespace {

// Aborts, naming the broken promise's line, when `ok` is false.
void require(bool ok, int line = __builtin_LINE()) {
  if (ok) return;
  std::fprintf(stderr, "csv_reader_fuzz: broken promise at line %d\n", line);
  std::abort();
}

struct Item {
  CsvStatus status;
  std::uint64_t line;
  std::uint64_t begin;
  std::uint64_t end;
  std::vector<std::string> fields;
  std::string reason;

  bool operator==(const Item& o) const {
    return status == o.status && line == o.line && begin == o.begin && end == o.end &&
           fields == o.fields && reason == o.reason;
  }
};

std::vector<Item> read_all(const std::string& text, const CsvOptions& options,
                           std::uint64_t start_offset = 0, std::uint64_t start_line = 1) {
  std::istringstream in(text);
  in.seekg(static_cast<std::streamoff>(start_offset));
  CsvReader reader(in, options, start_offset, start_line);
  std::vector<Item> items;
  CsvRecord r;
  std::string reason;
  for (CsvStatus s; (s = reader.next(r, reason)) != CsvStatus::kEnd;) {
    Item item{s, r.line, r.begin_offset, r.end_offset, {}, s == CsvStatus::kRecord ? "" : reason};
    for (std::string_view f : r.fields) item.fields.emplace_back(f);
    items.push_back(std::move(item));
    // Every record holds at least one byte: more records than bytes is a loop.
    require(items.size() <= text.size() + 1);
  }
  require(reader.offset() == text.size());
  return items;
}

// line_at[i]: the line byte i is on (CR, LF and CRLF each end a line).
std::vector<std::uint64_t> lines_of(const std::string& text) {
  std::vector<std::uint64_t> line_at(text.size() + 1);
  std::uint64_t line = 1;
  for (std::size_t i = 0; i < text.size(); ++i) {
    line_at[i] = line;
    if (text[i] == '\r' || (text[i] == '\n' && (i == 0 || text[i - 1] != '\r'))) ++line;
  }
  line_at[text.size()] = line;
  return line_at;
}

std::string as_csv(const std::vector<std::string>& fields, char delimiter) {
  std::string out;
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) out.push_back(delimiter);
    out.push_back('"');
    for (char c : fields[i]) {
      if (c == '"') out.push_back('"');
      out.push_back(c);
    }
    out.push_back('"');
  }
  out.push_back('\n');
  return out;
}

// The promises that hold for any text.
void check_any_text(const std::string& text, const CsvOptions& o) {
  const std::vector<Item> items = read_all(text, o);
  const std::vector<std::uint64_t> line_at = lines_of(text);
  const auto only_line_ends = [&](std::uint64_t from, std::uint64_t to) {
    for (std::uint64_t i = from; i < to; ++i) {
      if (text[i] != '\r' && text[i] != '\n') return false;
    }
    return true;
  };
  std::uint64_t at = text.compare(0, 3, "\xEF\xBB\xBF") == 0 ? 3 : 0;
  for (const Item& item : items) {
    require(at <= item.begin && item.begin < item.end && item.end <= text.size());
    require(only_line_ends(at, item.begin));
    require(item.line == line_at[item.begin]);
    at = item.end;
    if (item.status == CsvStatus::kBadRecord) {
      require(!item.reason.empty());
      continue;
    }
    std::size_t bytes = 0;
    for (const std::string& f : item.fields) {
      require(f.size() <= o.max_field_bytes);
      require(f.find('\0') == std::string::npos && is_valid_utf8(f));
      bytes += f.size();
    }
    require(bytes + item.fields.size() - 1 <= o.max_record_bytes);
    require(bytes <= item.end - item.begin);
    const std::vector<Item> again = read_all(as_csv(item.fields, o.delimiter), o);
    require(again.size() == 1 && again[0].status == CsvStatus::kRecord &&
            again[0].fields == item.fields);
  }
  require(only_line_ends(at, text.size()));
  if (!items.empty()) {
    const std::size_t k = items.size() / 2;
    const std::vector<Item> resumed = read_all(text, o, items[k].begin, items[k].line);
    require(std::equal(resumed.begin(), resumed.end(), items.begin() + k, items.end()));
    require(resumed.size() == items.size() - k);
  }
  std::istringstream in(text);
  CsvReader header_reader(in, o);
  try {
    read_csv_header(header_reader, "f.csv");
  } catch (const CsvFileError&) {
  }
}

// The text inside a closed quoted field, between a header and a last row.
void check_inside_quotes(const std::string& text, const CsvOptions& o) {
  const char d = o.delimiter;
  const std::string head = std::string("h1") + d + "h2\n";
  std::string record = std::string("a") + d + '"';
  for (char c : text) {
    if (c == '"') record.push_back('"');
    record.push_back(c);
  }
  record += "\"\n";
  const std::string tail = std::string("last") + d + "row\n";
  const std::string file = head + record + tail;
  const std::vector<Item> items = read_all(file, o);
  require(items.size() == 3);
  require(items[0].status == CsvStatus::kRecord);
  require(items[1].begin == head.size() && items[1].end == head.size() + record.size());
  require(items[1].line == 2);
  if (items[1].status == CsvStatus::kRecord) {
    require(items[1].fields.size() == 2 && items[1].fields[1] == text);
  }
  require(items[2].status == CsvStatus::kRecord);
  require(items[2].fields == std::vector<std::string>({"last", "row"}));
  require(items[2].line == lines_of(file)[head.size() + record.size()]);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3 || size > 64 * 1024) return 0;
  CsvOptions o;
  o.buffer_bytes = 1 + data[0] % 64;
  // Limits big enough for the frame of check_inside_quotes ("h1,h2").
  if (data[1] != 0) o.max_field_bytes = 4 + data[1];
  if (data[2] != 0) o.max_record_bytes = 16 + data[2] * 4u;
  static constexpr char kDelimiters[] = {',', ';', '\t', '|'};
  o.delimiter = kDelimiters[(data[0] / 64) % 4];
  const std::string text(reinterpret_cast<const char*>(data) + 3, size - 3);
  check_any_text(text, o);
  check_inside_quotes(text, o);
  return 0;
}
