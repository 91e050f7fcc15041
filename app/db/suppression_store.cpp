#include "app/db/suppression_store.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <tuple>

#include "app/db/copy_stream.h"
#include "app/db/list_statements.h"

namespace mailer::db {
namespace {

using lists::AddressError;
using lists::CsvRecord;
using lists::CsvStatus;
using lists::EmailAddress;
using lists::trim_blanks;

// Rows staged per transaction by import_file: bounds memory and transaction
// size; each chunk is committed on its own (suppressions are idempotent).
constexpr std::size_t kSuppressionChunkRows = 50'000;
// Rows fetched per page by for_each.
constexpr int kListPageRows = 10'000;

}  // namespace

std::string_view to_string(SuppressionReason reason) {
  switch (reason) {
    case SuppressionReason::kUnsubscribe:
      return "unsubscribe";
    case SuppressionReason::kHardBounce:
      return "hard_bounce";
    case SuppressionReason::kComplaint:
      return "complaint";
    case SuppressionReason::kManual:
      return "manual";
  }
  return "manual";
}

std::optional<SuppressionReason> suppression_reason_from_string(std::string_view text) {
  for (auto r : {SuppressionReason::kUnsubscribe, SuppressionReason::kHardBounce,
                 SuppressionReason::kComplaint, SuppressionReason::kManual}) {
    if (to_string(r) == text) return r;
  }
  return std::nullopt;
}

SuppressionStore::SuppressionStore(Database& db) : db_(db) {
  prepare_list_statements(db_);
}

bool SuppressionStore::add(const EmailAddress& address, SuppressionReason reason,
                           std::string_view source, std::string_view detail) {
  return db_.transact([&](pqxx::work& w) {
    return !w.exec_prepared(sql::kAddSuppression, address.key(), std::string(to_string(reason)),
                            std::string(source), std::string(detail))
                .empty();
  });
}

std::optional<Suppression> SuppressionStore::find(const EmailAddress& address) {
  return db_.transact([&](pqxx::work& w) -> std::optional<Suppression> {
    pqxx::result r = w.exec_prepared(sql::kFindSuppression, address.key());
    if (r.empty()) return std::nullopt;
    Suppression s{r[0][0].as<std::string>(), r[0][1].as<std::string>(),
                  r[0][2].as<std::string>(), std::nullopt,
                  r[0][4].as<std::string>(), r[0][5].as<std::string>()};
    if (!r[0][3].is_null()) s.campaign_id = r[0][3].as<std::int64_t>();
    return s;
  });
}

bool SuppressionStore::remove(const EmailAddress& address) {
  return db_.transact([&](pqxx::work& w) {
    return !w.exec_prepared(sql::kRemoveSuppression, address.key()).empty();
  });
}

void SuppressionStore::for_each(const std::function<void(const Suppression&)>& fn) {
  std::string after;
  for (;;) {
    pqxx::result page = db_.transact([&](pqxx::work& w) {
      return w.exec_params(
          "SELECT email_key, reason, source, campaign_id, coalesce(detail, ''), created_at::text "
          "FROM suppressions WHERE email_key > $1 ORDER BY email_key LIMIT $2",
          after, kListPageRows);
    });
    for (const auto& row : page) {
      Suppression s{row[0].as<std::string>(), row[1].as<std::string>(),
                    row[2].as<std::string>(), std::nullopt,
                    row[4].as<std::string>(), row[5].as<std::string>()};
      if (!row[3].is_null()) s.campaign_id = row[3].as<std::int64_t>();
      fn(s);
      after = s.email_key;
    }
    if (page.size() < static_cast<std::size_t>(kListPageRows)) return;
  }
}

SuppressionImportResult SuppressionStore::import_file(
    const std::string& path, SuppressionReason default_reason, std::string_view source,
    const lists::CsvOptions& csv,
    const std::function<void(std::uint64_t line, const std::string& why)>& on_reject) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw SuppressionFileError(fmt::format("{}: cannot read: {}", path, std::strerror(errno)));
  lists::CsvReader reader(in, csv);
  std::vector<std::string> header;
  try {
    header = lists::read_csv_header(reader, path);
  } catch (const lists::CsvFileError& e) {
    throw SuppressionFileError(e.what());
  }
  const int email_col = lists::find_column(header, "email");
  const int reason_col = lists::find_column(header, "reason");
  const int detail_col = lists::find_column(header, "detail");
  if (email_col < 0) {
    throw SuppressionFileError(fmt::format("{}: line 1: no \"email\" column in the header", path));
  }
  SuppressionImportResult result;
  std::vector<std::tuple<std::string, std::string, std::string>> chunk;
  auto flush = [&]() {
    if (chunk.empty()) return;
    std::uint64_t added = db_.transact([&](pqxx::work& w) {
      w.exec("SET LOCAL client_min_messages = warning");
      w.exec(sql::kCreateSuppressionStaging);
      CopyStream copy(w, sql::kSuppressionStageTable, {"email_key", "reason", "detail"});
      for (const auto& [key, reason, detail] : chunk) {
        copy.field(key).field(reason).field(detail).end_row();
      }
      copy.complete();
      return static_cast<std::uint64_t>(
          w.exec_params(sql::kMergeSuppressionStaging, std::string(source)).affected_rows());
    });
    result.added += added;
    result.already += chunk.size() - added;
    chunk.clear();
  };
  CsvRecord record;
  std::string why;
  for (;;) {
    CsvStatus s = reader.next(record, why);
    if (s == CsvStatus::kEnd) break;
    ++result.rows;
    if (s == CsvStatus::kBadRecord) {
      ++result.rejected;
      on_reject(record.line, why);
      continue;
    }
    if (record.fields.size() != header.size()) {
      ++result.rejected;
      on_reject(record.line,
                fmt::format("expected {} fields, found {}", header.size(), record.fields.size()));
      continue;
    }
    auto parsed = EmailAddress::parse(trim_blanks(record.fields[email_col]));
    if (auto* e = std::get_if<AddressError>(&parsed)) {
      ++result.rejected;
      on_reject(record.line, "invalid address: " + e->reason);
      continue;
    }
    SuppressionReason reason = default_reason;
    if (reason_col >= 0 && !trim_blanks(record.fields[reason_col]).empty()) {
      auto r = suppression_reason_from_string(trim_blanks(record.fields[reason_col]));
      if (!r) {
        ++result.rejected;
        on_reject(record.line,
                  fmt::format("unknown reason \"{}\" (expected unsubscribe, hard_bounce, "
                              "complaint or manual)",
                              trim_blanks(record.fields[reason_col])));
        continue;
      }
      reason = *r;
    }
    std::string detail = detail_col >= 0 ? std::string(record.fields[detail_col]) : std::string();
    chunk.emplace_back(std::get<EmailAddress>(parsed).key(), std::string(to_string(reason)),
                       std::move(detail));
    if (chunk.size() >= kSuppressionChunkRows) flush();
  }
  flush();
  return result;
}

}  // namespace mailer::db
