// CopyStream: the one way the database layer bulk-loads rows: COPY into a table
// inside the caller's transaction. Fields are escaped for COPY's text format
// (lists/copy_text.h: backslash, tab, newline and carriage return), so data
// never meets SQL text; rows collect in a buffer that goes to the server in blocks of a
// few hundred kilobytes (libpqxx's per-row tuple path allocated for every
// field and was a tenth of an import's CPU). The block goes through
// pqxx::tablewriter::write_raw_line, the one public way in libpqxx 6.4 to
// send COPY text that is already encoded (stream_to keeps its own private);
// tablewriter's own escaping, which its deprecation is about, is not used.
#pragma once

#include <charconv>
#include <cstdint>
#include <memory>
#include <pqxx/pqxx>
#include <pqxx/tablewriter>
#include <string>
#include <string_view>
#include <vector>

#include "lists/copy_text.h"

namespace mailer::db {

class CopyStream {
 public:
  CopyStream(pqxx::transaction_base& work, const std::string& table,
             const std::vector<std::string>& columns)
      : stream_(open(work, table, columns)) {
    buffer_.reserve(kBlockBytes + 4096);
  }

  // One field of the current row, in column order.
  CopyStream& field(std::string_view text) {
    append_field(buffer_, text);
    return *this;
  }
  CopyStream& field(std::int64_t n) {
    char digits[24];
    auto end = std::to_chars(digits, digits + sizeof digits, n).ptr;
    buffer_.append(digits, end);
    buffer_.push_back('\t');
    return *this;
  }
  CopyStream& field(bool b) { return field(std::string_view(b ? "t" : "f")); }

  // Fields already encoded by append_field or lists::append_copy_field (each
  // with its tab), so that the encoding can be done ahead, on another thread.
  CopyStream& encoded(std::string_view fields) {
    buffer_ += fields;
    return *this;
  }

  // Appends `text` as one field in COPY text format, followed by a tab.
  static void append_field(std::string& out, std::string_view text) {
    lists::append_copy_field(out, text);
  }

  // Ends the current row (at least one field was given).
  void end_row() {
    buffer_.back() = '\n';
    if (buffer_.size() >= kBlockBytes) flush();
  }

  // Sends what is buffered, ends the COPY and reports the server's verdict
  // (throws pqxx errors).
  void complete() {
    flush();
    stream_->complete();
  }

 private:
  static constexpr std::size_t kBlockBytes = 256 * 1024;

  void flush() {
    if (buffer_.empty()) return;
    buffer_.pop_back();  // write_raw_line adds the last row's newline
    stream_->write_raw_line(buffer_);
    buffer_.clear();
  }

  static std::unique_ptr<pqxx::tablewriter> open(pqxx::transaction_base& work,
                                                 const std::string& table,
                                                 const std::vector<std::string>& columns) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    return std::make_unique<pqxx::tablewriter>(work, table, columns.begin(), columns.end());
#pragma GCC diagnostic pop
  }

  std::unique_ptr<pqxx::tablewriter> stream_;
  std::string buffer_;
};

}  // namespace mailer::db
