// CopyStream: the one way the lists module bulk-loads rows: COPY into a table
// through libpqxx's stream_to, inside the caller's transaction. Every field is
// text; libpqxx escapes it for COPY, so data never meets SQL text.
#pragma once

#include <pqxx/pqxx>
#include <string>
#include <vector>

namespace mailer::lists {

class CopyStream {
 public:
  CopyStream(pqxx::work& work, const std::string& table, const std::vector<std::string>& columns)
      : stream_(work, table, columns) {}

  // Writes one row; `fields` matches the columns given to the constructor.
  template <typename Row>
  void write(const Row& fields) {
    stream_ << fields;
  }

  // Ends the COPY and reports the server's verdict (throws pqxx errors).
  void complete() { stream_.complete(); }

 private:
  pqxx::stream_to stream_;
};

}  // namespace mailer::lists
