#include "lists/csv_reader.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <stdexcept>
#include <unordered_set>

namespace mailer::lists {
namespace {

constexpr int kEof = -1;

// The smallest read buffer: a UTF-8 byte order mark fits in it.
constexpr std::size_t kMinBufferBytes = 4;
// Bytes at the start of a file looked at to tell UTF-16 from UTF-8.
constexpr std::size_t kUtf16SniffBytes = 512;

}  // namespace

bool is_valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    int n = 0;
    std::uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (end - p <= n) return false;
    for (int i = 1; i <= n; ++i) {
      if ((p[i] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    p += n + 1;
  }
  return true;
}

CsvReader::CsvReader(std::istream& in, CsvOptions options, std::uint64_t start_offset,
                     std::uint64_t start_line)
    : in_(in),
      options_(options),
      consumed_(start_offset),
      line_(start_line),
      start_offset_(start_offset) {
  // Room for a byte order mark at least.
  buffer_.resize(std::max<std::size_t>(options_.buffer_bytes, kMinBufferBytes));
  const std::ios::iostate state = in_.rdstate();
  stream_base_ = static_cast<std::streamoff>(in_.tellg());
  if (stream_base_ < 0) in_.clear(state);  // a pipe: reading still works
  if (start_offset != 0) return;
  detect_utf16();
  if (peek() == 0xEF) {
    if (end_ - pos_ < 3) refill();
    if (end_ - pos_ >= 3 && std::memcmp(buffer_.data() + pos_, "\xEF\xBB\xBF", 3) == 0) {
      pos_ += 3;
      consumed_ += 3;
    }
  }
}

void CsvReader::detect_utf16() {
  if (peek() == kEof) return;
  const auto* b = reinterpret_cast<const unsigned char*>(buffer_.data() + pos_);
  const std::size_t n = std::min(end_ - pos_, kUtf16SniffBytes) & ~std::size_t{1};
  if (n >= 2 && b[0] == 0xFF && b[1] == 0xFE) {
    utf16_ = "UTF-16LE";
    return;
  }
  if (n >= 2 && b[0] == 0xFE && b[1] == 0xFF) {
    utf16_ = "UTF-16BE";
    return;
  }
  std::size_t even_nuls = 0;
  std::size_t odd_nuls = 0;
  for (std::size_t i = 0; i < n; i += 2) {
    even_nuls += b[i] == 0;
    odd_nuls += b[i + 1] == 0;
  }
  const std::size_t pairs = n / 2;
  if (pairs < 2) return;
  // ASCII text in UTF-16 has a NUL in every other byte; allow a few
  // characters beyond ASCII.
  if (odd_nuls * 4 >= pairs * 3 && even_nuls * 4 < pairs) utf16_ = "UTF-16LE";
  if (even_nuls * 4 >= pairs * 3 && odd_nuls * 4 < pairs) utf16_ = "UTF-16BE";
}

bool CsvReader::refill() {
  if (eof_) return false;
  if (pos_ > 0) {
    std::memmove(buffer_.data(), buffer_.data() + pos_, end_ - pos_);
    end_ -= pos_;
    pos_ = 0;
  }
  in_.read(buffer_.data() + end_, static_cast<std::streamsize>(buffer_.size() - end_));
  std::streamsize got = in_.gcount();
  if (in_.bad()) throw std::runtime_error("read error");
  if (got == 0) {
    eof_ = true;
    return false;
  }
  end_ += static_cast<std::size_t>(got);
  return true;
}

int CsvReader::peek() {
  if (pos_ == end_ && !refill()) return kEof;
  return static_cast<unsigned char>(buffer_[pos_]);
}

int CsvReader::get() {
  if (pos_ == end_ && !refill()) return kEof;
  ++consumed_;
  unsigned char c = static_cast<unsigned char>(buffer_[pos_++]);
  if (c <= '\r') {
    // CR, LF and CRLF each end one line.
    if (c == '\n') {
      if (consumed_ - 1 != cr_end_) ++line_;
    } else if (c == '\r') {
      ++line_;
      cr_end_ = consumed_;
    }
  }
  return c;
}

bool CsvReader::rewind(std::uint64_t offset, std::uint64_t line) {
  const std::uint64_t buffered_from = consumed_ - pos_;
  if (offset >= buffered_from) {
    pos_ = static_cast<std::size_t>(offset - buffered_from);
  } else {
    if (stream_base_ < 0) return false;
    in_.clear();
    in_.seekg(stream_base_ + static_cast<std::streamoff>(offset - start_offset_));
    if (!in_) {
      in_.clear();
      return false;
    }
    pos_ = end_ = 0;
    eof_ = false;
  }
  consumed_ = offset;
  line_ = line;
  cr_end_ = std::numeric_limits<std::uint64_t>::max();
  return true;
}

bool CsvReader::append(char c) {
  if (data_.size() >= field_limit_) return false;
  data_.push_back(c);
  return true;
}

CsvStatus CsvReader::next(CsvRecord& record, std::string& reason) {
  for (;;) {
    CsvStatus s = read_record(record, reason);
    if (s != CsvStatus::kRecord) return s;
    // An empty line is one empty unquoted field: skip it. (Two bytes that
    // end no line are "" at the end of the file: an empty quoted field.)
    if (record.fields.size() == 1 && record.fields[0].empty() &&
        record.end_offset - record.begin_offset <= 2 && line_ != record.line) {
      continue;
    }
    for (std::size_t i = 0; i < record.fields.size(); ++i) {
      std::string_view f = record.fields[i];
      if (f.find('\0') != std::string_view::npos) {
        reason = fmt::format("NUL byte in field {}", i + 1);
        return CsvStatus::kBadRecord;
      }
      if (!is_valid_utf8(f)) {
        reason = fmt::format("invalid UTF-8 in field {}", i + 1);
        return CsvStatus::kBadRecord;
      }
    }
    return CsvStatus::kRecord;
  }
}

CsvStatus CsvReader::read_record(CsvRecord& record, std::string& reason) {
  data_.clear();
  ends_.clear();
  record.fields.clear();
  record.line = line_;
  record.begin_offset = consumed_;
  if (peek() == kEof) return CsvStatus::kEnd;
  const int delim = static_cast<unsigned char>(options_.delimiter);
  const auto too_long = [&](At at, QuoteStart quote) {
    std::string why = data_.size() + ends_.size() >= options_.max_record_bytes
                          ? fmt::format("record longer than {} bytes", options_.max_record_bytes)
                          : fmt::format("field {} longer than {} bytes", ends_.size() + 1,
                                        options_.max_field_bytes);
    return bad_record(record, reason, std::move(why), at, quote);
  };
  for (;;) {
    field_start_ = data_.size();
    // Every delimiter counts as a byte of the record (checked below), so this
    // never underflows.
    field_limit_ =
        std::min(field_start_ + options_.max_field_bytes, options_.max_record_bytes - ends_.size());
    int c = get();
    if (c == '"') {
      const QuoteStart quote{consumed_ - 1, line_};
      for (;;) {
        c = get();
        if (c == kEof) {
          reason = fmt::format("unterminated quoted field {}", ends_.size() + 1);
          // The record ends with the quote's line: so does its last field.
          const std::size_t cut = data_.find_first_of("\r\n", field_start_);
          if (cut != std::string::npos) data_.resize(cut);
          ends_.push_back(data_.size());
          end_at_line_of(record, reason, quote);
          return CsvStatus::kBadRecord;
        }
        if (c == '"') {
          if (peek() != '"') break;
          get();
        }
        if (!append(static_cast<char>(c))) return too_long(At::kQuoted, quote);
      }
      c = get();
      if (c != delim && c != '\n' && c != '\r' && c != kEof) {
        return bad_record(record, reason,
                          fmt::format("text after closing quote in field {}", ends_.size() + 1),
                          At::kUnquoted, {});
      }
    } else {
      while (c != delim && c != '\n' && c != '\r' && c != kEof) {
        if (c == '"') {
          return bad_record(record, reason,
                            fmt::format("quote inside unquoted field {}", ends_.size() + 1),
                            At::kUnquoted, {});
        }
        if (!append(static_cast<char>(c))) return too_long(At::kUnquoted, {});
        c = get();
      }
    }
    ends_.push_back(data_.size());
    if (c == delim) {
      if (data_.size() + ends_.size() >= options_.max_record_bytes) {
        return too_long(At::kFieldStart, {});
      }
      continue;
    }
    if (c == '\r' && peek() == '\n') get();
    break;
  }
  record.end_offset = consumed_;
  fill_fields(record);
  return CsvStatus::kRecord;
}

CsvStatus CsvReader::bad_record(CsvRecord& record, std::string& reason, std::string why, At at,
                                QuoteStart quote) {
  reason = std::move(why);
  const bool in_kept_field = at != At::kFieldStart;
  if (in_kept_field) ends_.push_back(data_.size());
  // Still inside the quoted field whose text was kept as the last field.
  bool same_quote = at == At::kQuoted;
  const int delim = static_cast<unsigned char>(options_.delimiter);
  for (;;) {
    const int c = get();
    if (c == kEof) {
      if (at != At::kQuoted) break;
      if (same_quote) {
        // The record ends with the quote's line: so does its last field.
        const std::size_t cut = data_.find_first_of("\r\n", field_start_);
        if (cut != std::string::npos) {
          data_.resize(cut);
          ends_.back() = cut;
        }
      }
      end_at_line_of(record, reason, quote);
      return CsvStatus::kBadRecord;
    }
    if (at == At::kQuoted) {
      if (c == '"') {
        if (peek() == '"') {
          get();
        } else {
          at = At::kUnquoted;
          same_quote = false;
        }
      }
      continue;
    }
    if (c == '\n') break;
    if (c == '\r') {
      if (peek() == '\n') get();
      break;
    }
    if (c == delim) {
      at = At::kFieldStart;
    } else if (c == '"' && at == At::kFieldStart) {
      at = At::kQuoted;
      quote = QuoteStart{consumed_ - 1, line_};
    } else {
      at = At::kUnquoted;
    }
  }
  record.end_offset = consumed_;
  fill_fields(record);
  return CsvStatus::kBadRecord;
}

void CsvReader::end_at_line_of(CsvRecord& record, std::string& reason, QuoteStart quote) {
  if (!rewind(quote.offset, quote.line)) {
    reason += " (the rest of the file is part of it: the input cannot be read again)";
  } else {
    for (int c = get(); c != kEof; c = get()) {
      if (c == '\n') break;
      if (c == '\r') {
        if (peek() == '\n') get();
        break;
      }
    }
  }
  record.end_offset = consumed_;
  fill_fields(record);
}

void CsvReader::fill_fields(CsvRecord& record) const {
  record.fields.clear();
  std::size_t begin = 0;
  for (std::size_t e : ends_) {
    record.fields.emplace_back(data_.data() + begin, e - begin);
    begin = e;
  }
}

}  // namespace mailer::lists

namespace mailer::lists {

std::string_view trim_blanks(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

namespace {
bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}
}  // namespace

int find_column(const std::vector<std::string>& header, std::string_view name) {
  for (std::size_t i = 0; i < header.size(); ++i) {
    if (iequals(header[i], name)) return static_cast<int>(i);
  }
  return -1;
}

std::vector<std::string> read_csv_header(CsvReader& reader, const std::string& file) {
  if (const char* encoding = reader.utf16_encoding()) {
    throw CsvFileError(
        fmt::format("{}: file is UTF-16 ({}); convert it to UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)",
                    file, encoding));
  }
  CsvRecord record;
  std::string reason;
  CsvStatus s = reader.next(record, reason);
  if (s == CsvStatus::kEnd) throw CsvFileError(fmt::format("{}: empty file, no header row", file));
  if (s == CsvStatus::kBadRecord) {
    throw CsvFileError(fmt::format("{}: not a CSV text file: header row (line {}): {}", file,
                                   record.line, reason));
  }
  std::vector<std::string> names;
  names.reserve(record.fields.size());
  // Lower-cased names seen so far: a set, as a header may have many columns.
  std::unordered_set<std::string> seen;
  for (std::string_view f : record.fields) {
    const std::string& name = names.emplace_back(trim_blanks(f));
    if (name.empty()) continue;
    std::string key(name);
    for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!seen.insert(std::move(key)).second) {
      throw CsvFileError(fmt::format("{}: line {}: column \"{}\" appears twice in the header", file,
                                     record.line, name));
    }
  }
  return names;
}

}  // namespace mailer::lists
