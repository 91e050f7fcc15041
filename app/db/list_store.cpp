#include "app/db/list_store.h"

#include <fmt/format.h>

#include "app/db/list_statements.h"

namespace mailer::db {
namespace {
// lists.name's CHECK constraint in migrations/0001_core_schema.sql.
constexpr std::size_t kMaxListName = 200;
}  // namespace

ListStore::ListStore(Database& db) : db_(db) {
  prepare_list_statements(db_);
}

std::int64_t ListStore::create(const std::string& name) {
  if (name.empty()) throw ListNameError("list name must not be empty");
  if (name.size() > kMaxListName) {
    throw ListNameError(fmt::format("list name longer than {} characters", kMaxListName));
  }
  auto id = db_.transact([&](pqxx::work& w) -> std::optional<std::int64_t> {
    pqxx::result r = w.exec_prepared(sql::kCreateList, name);
    if (r.empty()) return std::nullopt;
    return r[0][0].as<std::int64_t>();
  });
  if (!id) throw ListNameError(fmt::format("list \"{}\" already exists", name));
  return *id;
}

std::optional<ListInfo> ListStore::find(const std::string& name) {
  return db_.transact([&](pqxx::work& w) -> std::optional<ListInfo> {
    pqxx::result r = w.exec_prepared(sql::kFindList, name);
    if (r.empty()) return std::nullopt;
    return ListInfo{r[0][0].as<std::int64_t>(), r[0][1].as<std::string>(),
                    r[0][2].as<std::string>(), r[0][3].as<std::int64_t>(),
                    r[0][4].as<std::int64_t>()};
  });
}

std::vector<ListInfo> ListStore::all() {
  return db_.transact([&](pqxx::work& w) {
    std::vector<ListInfo> out;
    for (const auto& row : w.exec_prepared(sql::kAllLists)) {
      out.push_back(ListInfo{row[0].as<std::int64_t>(), row[1].as<std::string>(),
                             row[2].as<std::string>(), row[3].as<std::int64_t>(), 0});
    }
    return out;
  });
}

}  // namespace mailer::db
