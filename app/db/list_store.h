// ListStore: the recipient lists themselves (create, find, enumerate, member
// counts). Membership is written by ListImporter.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "app/db/database.h"

namespace mailer::db {

struct ListInfo {
  std::int64_t id = 0;
  std::string name;
  std::string created_at;
  std::int64_t members = 0;
  // Members whose address is suppressed (they are never sent to); only
  // filled by find().
  std::int64_t suppressed = 0;
};

// A list name that is empty, longer than 200 characters, or already taken.
class ListNameError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ListStore {
 public:
  explicit ListStore(Database& db);

  // Creates the list; throws ListNameError when the name is empty, too long
  // or taken. Returns its id.
  std::int64_t create(const std::string& name);
  std::optional<ListInfo> find(const std::string& name);
  std::vector<ListInfo> all();

 private:
  Database& db_;
};

}  // namespace mailer::db
