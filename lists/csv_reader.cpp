#include "lists/csv_reader.h"

#include <fmt/format.h>

#include <cstring>
#include <stdexcept>

namespace mailer::lists {
namespace {

constexpr int kEof = -1;

struct LimitExceeded {};

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
    : in_(in), options_(options), consumed_(start_offset), line_(start_line) {
  buffer_.resize(options_.buffer_bytes);
  if (start_offset == 0 && peek() == 0xEF) {
    if (end_ - pos_ < 3) refill();
    if (end_ - pos_ >= 3 && std::memcmp(buffer_.data() + pos_, "\xEF\xBB\xBF", 3) == 0) {
      pos_ += 3;
      consumed_ += 3;
    }
  }
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
  if (c == '\n') ++line_;
  return c;
}

void CsvReader::skip_to_line_end() {
  for (int c = get(); c != kEof && c != '\n'; c = get()) {
  }
}

bool CsvReader::append(char c) {
  if (data_.size() - field_start_ >= options_.max_field_bytes) return false;
  if (data_.size() >= options_.max_record_bytes) return false;
  data_.push_back(c);
  return true;
}

CsvStatus CsvReader::next(CsvRecord& record, std::string& reason) {
  for (;;) {
    CsvStatus s = read_record(record, reason);
    if (s != CsvStatus::kRecord) return s;
    // An empty line is one empty unquoted field: skip it.
    if (record.fields.size() == 1 && record.fields[0].empty() &&
        record.end_offset - record.begin_offset <= 2) {
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
  auto fail = [&](std::string why, bool skip) {
    if (skip) skip_to_line_end();
    reason = std::move(why);
    record.end_offset = consumed_;
    return CsvStatus::kBadRecord;
  };
  auto too_long = [&]() {
    return fail(data_.size() >= options_.max_record_bytes
                    ? fmt::format("record longer than {} bytes", options_.max_record_bytes)
                    : fmt::format("field {} longer than {} bytes", ends_.size() + 1,
                                  options_.max_field_bytes),
                true);
  };
  for (;;) {
    field_start_ = data_.size();
    int c = get();
    bool end_of_record = false;
    if (c == '"') {
      for (;;) {
        c = get();
        if (c == kEof)
          return fail(fmt::format("unterminated quoted field {}", ends_.size() + 1), false);
        if (c == '"') {
          if (peek() != '"') break;
          get();
        }
        if (!append(static_cast<char>(c))) return too_long();
      }
      c = get();
      if (c != delim && c != '\n' && c != '\r' && c != kEof) {
        return fail(fmt::format("text after closing quote in field {}", ends_.size() + 1),
                    c != kEof);
      }
    } else {
      while (c != delim && c != '\n' && c != '\r' && c != kEof) {
        if (c == '"') {
          return fail(fmt::format("quote inside unquoted field {}", ends_.size() + 1), true);
        }
        if (!append(static_cast<char>(c))) return too_long();
        c = get();
      }
    }
    ends_.push_back(data_.size());
    if (c == '\r') {
      if (peek() == '\n') get();
      end_of_record = true;
    } else if (c == '\n' || c == kEof) {
      end_of_record = true;
    }
    if (end_of_record) break;
  }
  record.end_offset = consumed_;
  std::size_t begin = 0;
  for (std::size_t e : ends_) {
    record.fields.emplace_back(data_.data() + begin, e - begin);
    begin = e;
  }
  return CsvStatus::kRecord;
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
  CsvRecord record;
  std::string reason;
  CsvStatus s = reader.next(record, reason);
  if (s == CsvStatus::kEnd) throw CsvFileError(fmt::format("{}: empty file, no header row", file));
  if (s == CsvStatus::kBadRecord) {
    throw CsvFileError(fmt::format("{}: not a CSV text file: header row (line {}): {}", file,
                                   record.line, reason));
  }
  std::vector<std::string> names;
  for (std::string_view f : record.fields) names.emplace_back(trim_blanks(f));
  for (std::size_t i = 0; i < names.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (!names[i].empty() && iequals(names[i], names[j])) {
        throw CsvFileError(fmt::format("{}: line {}: column \"{}\" appears twice in the header",
                                       file, record.line, names[i]));
      }
    }
  }
  return names;
}

}  // namespace mailer::lists
