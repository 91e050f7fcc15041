#include "lists/list_importer.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "app/db/delivery_queue.h"
#include "lists/copy_stream.h"
#include "lists/email_address.h"
#include "lists/list_store.h"
#include "lists/statements.h"

namespace mailer::lists {
namespace {

// Per-import caches of domain answers are cleared beyond this many domains,
// so memory stays bounded on files with millions of distinct domains.
constexpr std::size_t kDomainCacheLimit = 200'000;
// Bytes of the file's head hashed into its identity (with size and mtime).
constexpr std::size_t kIdentityHeadBytes = 64 * 1024;
// Bytes of a malformed record's text in the rejects file: enough to find the
// row, not a copy of a runaway field.
constexpr std::size_t kMalformedTextBytes = 256;

// A chunk's row text, in a few large blocks: rows hold views into them, so a
// chunk of 25,000 rows costs a few dozen allocations instead of six per row
// (freeing those, and the allocator's consolidating after them, was a fifth
// of an import's CPU). Views stay valid while the arena lives, moves included.
class TextArena {
 public:
  TextArena() = default;
  TextArena(TextArena&& o) noexcept
      : blocks_(std::move(o.blocks_)),
        next_(std::exchange(o.next_, nullptr)),
        left_(std::exchange(o.left_, 0)) {}
  TextArena& operator=(TextArena&& o) noexcept {
    blocks_ = std::move(o.blocks_);
    next_ = std::exchange(o.next_, nullptr);
    left_ = std::exchange(o.left_, 0);
    return *this;
  }

  std::string_view put(std::string_view text) {
    if (text.empty()) return {};
    if (text.size() > left_) {
      const std::size_t size = std::max(text.size(), kBlockBytes);
      blocks_.emplace_back(new char[size]);
      next_ = blocks_.back().get();
      left_ = size;
    }
    char* at = next_;
    std::memcpy(at, text.data(), text.size());
    next_ += text.size();
    left_ -= text.size();
    return {at, text.size()};
  }

 private:
  static constexpr std::size_t kBlockBytes = 1 << 20;
  std::vector<std::unique_ptr<char[]>> blocks_;
  char* next_ = nullptr;
  std::size_t left_ = 0;
};

// The keys seen in the chunk being read: open addressing over views into the
// chunk's arena, sized for a chunk once (a node-based set allocated per row).
class KeySet {
 public:
  void reset(std::size_t expected) {
    std::size_t size = 16;
    while (size < expected * 2) size *= 2;
    if (slots_.size() != size) {
      slots_.assign(size, std::string_view());
    } else {
      std::fill(slots_.begin(), slots_.end(), std::string_view());
    }
    used_ = 0;
  }

  // Adds a non-empty key; false when it was there already.
  bool insert(std::string_view key) {
    if ((used_ + 1) * 2 > slots_.size()) grow();
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t i = std::hash<std::string_view>()(key) & mask;; i = (i + 1) & mask) {
      if (slots_[i].empty()) {
        slots_[i] = key;
        ++used_;
        return true;
      }
      if (slots_[i] == key) return false;
    }
  }

 private:
  void grow() {
    std::vector<std::string_view> old = std::move(slots_);
    reset(std::max<std::size_t>(old.size(), 8));
    for (std::string_view k : old) {
      if (!k.empty()) insert(k);
    }
  }

  std::vector<std::string_view> slots_;
  std::size_t used_ = 0;
};

// A row past the checks; its text lives in its chunk's arena.
struct StagedRow {
  std::int64_t line;
  std::string_view email;
  std::string_view key;
  std::string_view domain;
  std::string_view attributes;
  // First row of its address in the chunk (later ones are duplicates).
  bool first = true;
  // email, key, domain and attributes encoded for COPY into recipients, by
  // the reader thread (first rows only).
  std::string_view copy_fields;
};

struct RejectedRow {
  std::uint64_t line;
  std::string reason;
  std::string detail;
  std::string email;
};

// A chunk of the file: its rows past the checks, its rejected rows and
// counts, and where the file continues after it.
struct Chunk {
  TextArena text;
  std::vector<StagedRow> staged;
  std::vector<RejectedRow> rejected;
  ImportCounts counts;
  std::uint64_t end_offset = 0;
  std::uint64_t end_line = 0;
};

// The chunk's plain COPY of new addresses met one the database has: its
// transaction is rolled back and the chunk runs again with a lookup.
struct KnownAddressesInChunk : std::exception {
  const char* what() const noexcept override { return "address already known"; }
};

// Attempts of a chunk whose new addresses keep being added by another import
// at the same time (a unique violation rolls the chunk back; the next
// attempt's snapshot sees the other import's rows).
constexpr int kConcurrentRetries = 5;

struct MxVerdict {
  MxStatus status;
  std::string first_host;
  std::string error;
};

void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          out += fmt::format("\\u{:04x}", c);
        } else {
          out.push_back(ch);
        }
    }
  }
  out.push_back('"');
}

void append_csv_field(std::string& out, std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos) {
    out += s;
    return;
  }
  out.push_back('"');
  for (char c : s) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
}

// What the rejects file shows of a malformed record in its email column:
// the email field when the record got that far, else the record's fields as
// read; at most kMalformedTextBytes, with NUL, other control characters but
// tab, CR and LF, and invalid UTF-8 shown as U+FFFD, so the file stays text.
std::string malformed_text(const CsvRecord& record, int email_col, char delimiter) {
  std::string raw;
  if (email_col >= 0 && static_cast<std::size_t>(email_col) < record.fields.size()) {
    raw = trim_blanks(record.fields[static_cast<std::size_t>(email_col)])
              .substr(0, kMalformedTextBytes);
  } else {
    for (std::size_t i = 0; i < record.fields.size() && raw.size() < kMalformedTextBytes; ++i) {
      if (i > 0) raw.push_back(delimiter);
      raw += record.fields[i].substr(0, kMalformedTextBytes);
    }
  }
  std::string out;
  for (std::size_t i = 0; i < raw.size() && out.size() < kMalformedTextBytes;) {
    const auto c = static_cast<unsigned char>(raw[i]);
    const std::size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    const std::string_view one = std::string_view(raw).substr(i, n);
    const bool control = n == 1 && (c < 0x20 || c == 0x7f) && c != '\t' && c != '\r' && c != '\n';
    if (one.size() == n && !control && is_valid_utf8(one)) {
      out += one;
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

std::string file_identity(const std::string& path, const struct stat& st) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> head(kIdentityHeadBytes);
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  std::uint64_t hash = 14695981039346656037ull;  // FNV-1a
  for (std::streamsize i = 0; i < in.gcount(); ++i) {
    hash = (hash ^ static_cast<unsigned char>(head[i])) * 1099511628211ull;
  }
  return fmt::format("{}:{}.{:09}:{:016x}", st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
                     hash);
}

// A failure caused by another import writing the same addresses at the same
// time (the chunk is run again).
bool is_concurrent_conflict(const pqxx::sql_error& e) {
  return dynamic_cast<const pqxx::unique_violation*>(&e) != nullptr ||
         dynamic_cast<const pqxx::deadlock_detected*>(&e) != nullptr;
}

// One run of an import: the open file, the chunk being built, the caches.
class ImportRun {
 public:
  ImportRun(db::Database& db, const HygieneRules& rules,
            const throttle::ProviderClassifier& classifier, const ImportOptions& options,
            const std::function<void(const ImportProgress&)>& progress)
      : db_(db), rules_(rules), classifier_(classifier), o_(options), progress_(progress) {}

  ImportCounts run() {
    open_input();
    if (o_.mx_check) {
      try {
        mx_ = std::make_unique<MxChecker>(o_.mx);
      } catch (const std::runtime_error& e) {
        throw ImportInputError(e.what());
      }
    }
    open_import();
    keep_rejects_ = rejects_.is_open();
    // The file is read and checked on a thread of its own while the chunk
    // before is written: parsing and the database's work overlap.
    std::thread reader([this] { read_chunks(); });
    struct Join {
      ImportRun& run;
      std::thread& thread;
      ~Join() {
        {
          std::lock_guard<std::mutex> lock(run.mu_);
          run.stop_ = true;
        }
        run.cv_.notify_all();
        thread.join();
      }
    } join{*this, reader};
    for (;;) {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return ready_.has_value() || done_; });
      if (!ready_) break;
      writing_ = std::move(*ready_);
      ready_.reset();
      lock.unlock();
      cv_.notify_all();
      flush();
      // Freeing a chunk's hundred thousand strings is the reader's job: it
      // has time to spare, this thread is what the database waits for.
      lock.lock();
      if (!spent_) spent_ = std::move(writing_);
    }
    if (read_error_) std::rethrow_exception(read_error_);
    db_.transact([&](pqxx::work& w) {
      w.exec_prepared(sql::kFinishImport, import_id_, counts_.to_json().dump());
      w.exec_prepared(sql::kUnlockImport, import_id_);
    });
    report(total_bytes_);
    return counts_;
  }

 private:
  // The reader thread: records into chunks, each handed to the writer (the
  // caller's thread) once full; at most one waits while another is written.
  void read_chunks() {
    try {
      start_chunk();
      CsvRecord record;
      std::string why;
      for (;;) {
        CsvStatus s = reader_->next(record, why);
        if (s == CsvStatus::kEnd) break;
        ++reading_.counts.rows;
        if (s == CsvStatus::kBadRecord) {
          reject(reading_, record.line, "malformed", why,
                 keep_rejects_ ? malformed_text(record, email_col_, o_.csv.delimiter) : "");
        } else {
          take(record);
        }
        if (reading_.staged.size() + reading_.rejected.size() >= o_.chunk_rows && !hand_off())
          return;
        if ((reading_.counts.rows & 1023) == 0) free_spent();
      }
      hand_off();
    } catch (...) {
      read_error_ = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
  }

  // Frees the chunk the writer is done with, if any (outside the lock).
  void free_spent() {
    std::optional<Chunk> spent;
    {
      std::lock_guard<std::mutex> lock(mu_);
      spent.swap(spent_);
    }
  }

  // Passes the chunk being read to the writer; false when the import stops.
  bool hand_off() {
    // In key order, which is the order the writer COPYs new rows in; the
    // rejects file is written in line order whatever the order here.
    std::sort(reading_.staged.begin(), reading_.staged.end(),
              [](const StagedRow& a, const StagedRow& b) { return a.key < b.key; });
    reading_.end_offset = reader_->offset();
    reading_.end_line = reader_->line();
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return !ready_.has_value() || stop_; });
      if (stop_) return false;
      ready_ = std::move(reading_);
    }
    cv_.notify_all();
    reading_ = Chunk();
    start_chunk();
    return true;
  }

  // Sizes the chunk being read, and the set of its keys, for a whole chunk
  // up front (growing them row by row moved every row a dozen times).
  void start_chunk() {
    reading_.staged.reserve(o_.chunk_rows);
    read_keys_.reset(o_.chunk_rows);
  }

  void open_input() {
    struct stat st {};
    if (::stat(o_.file.c_str(), &st) != 0) {
      throw ImportInputError(fmt::format("{}: cannot read: {}", o_.file, std::strerror(errno)));
    }
    if (!S_ISREG(st.st_mode))
      throw ImportInputError(fmt::format("{}: not a regular file", o_.file));
    in_.open(o_.file, std::ios::binary);
    if (!in_)
      throw ImportInputError(fmt::format("{}: cannot read: {}", o_.file, std::strerror(errno)));
    total_bytes_ = static_cast<std::uint64_t>(st.st_size);
    identity_ = file_identity(o_.file, st);
    reader_ = std::make_unique<CsvReader>(in_, o_.csv);
    try {
      header_ = read_csv_header(*reader_, o_.file);
    } catch (const CsvFileError& e) {
      throw ImportInputError(e.what());
    }
    email_col_ = find_column(header_, "email");
    if (email_col_ < 0) {
      throw ImportInputError(
          fmt::format("{}: line 1: no \"email\" column in the header (columns: {}); is the "
                      "delimiter '{}' right?",
                      o_.file, fmt::join(header_, ", "), o_.csv.delimiter));
    }
    for (std::size_t i = 0; i < header_.size(); ++i) {
      std::string key;
      if (static_cast<int>(i) != email_col_ && !header_[i].empty()) {
        append_json_string(key, header_[i]);
        key.push_back(':');
      }
      attribute_keys_.push_back(std::move(key));
    }
    data_offset_ = reader_->offset();
    data_line_ = reader_->line();
  }

  void open_import() {
    prepare_list_statements(db_);
    auto list = ListStore(db_).find(o_.list_name);
    if (!list) {
      throw ImportInputError(
          fmt::format("list \"{}\" does not exist (create it with: mailer lists create {})",
                      o_.list_name, o_.list_name));
    }
    list_id_ = list->id;
    auto running = db_.transact([&](pqxx::work& w) {
      return w.exec_prepared(sql::kFindRunningImport, list_id_, identity_);
    });
    bool resume = !running.empty();
    open_rejects(resume);
    if (resume) {
      import_id_ = running[0][0].as<std::int64_t>();
      data_offset_ = running[0][1].as<std::uint64_t>();
      data_line_ = running[0][2].as<std::uint64_t>();
      counts_ = ImportCounts::from_json(nlohmann::json::parse(running[0][3].as<std::string>()));
      started_at_ = running[0][4].as<std::string>();
      in_.clear();
      in_.seekg(static_cast<std::streamoff>(data_offset_));
      reader_ = std::make_unique<CsvReader>(in_, o_.csv, data_offset_, data_line_);
      spdlog::info("import: resuming import #{} of {} at line {} ({} rows done)", import_id_,
                   o_.file, data_line_, counts_.rows);
    } else {
      auto r = db_.transact([&](pqxx::work& w) {
        return w.exec_prepared(sql::kStartImport, list_id_, o_.file, identity_, data_offset_,
                               data_line_);
      });
      import_id_ = r[0][0].as<std::int64_t>();
      started_at_ = r[0][1].as<std::string>();
    }
    resumed_ = resume;
    bool locked = db_.transact([&](pqxx::work& w) {
      return w.exec_prepared(sql::kLockImport, import_id_)[0][0].as<bool>();
    });
    if (!locked) {
      throw std::runtime_error(
          fmt::format("import #{} of {} into list \"{}\" is running in another process", import_id_,
                      o_.file, o_.list_name));
    }
  }

  void open_rejects(bool append) {
    if (o_.rejects_file.empty()) return;
    struct stat st {};
    bool has_content = append && ::stat(o_.rejects_file.c_str(), &st) == 0 && st.st_size > 0;
    rejects_.open(o_.rejects_file, append ? std::ios::app | std::ios::binary : std::ios::binary);
    if (!rejects_) {
      throw ImportInputError(
          fmt::format("{}: cannot write rejects file: {}", o_.rejects_file, std::strerror(errno)));
    }
    if (!has_content) rejects_ << "line,reason,detail,email\n";
  }

  void reject(Chunk& chunk, std::uint64_t line, const std::string& reason, std::string detail,
              std::string email) {
    ++chunk.counts.rejected[reason];
    if (keep_rejects_)
      chunk.rejected.push_back({line, reason, std::move(detail), std::move(email)});
    else
      chunk.rejected.push_back({line, reason, {}, {}});
  }

  void take(const CsvRecord& record) {
    if (record.fields.size() != header_.size()) {
      reject(reading_, record.line, "malformed",
             fmt::format("expected {} fields, found {}", header_.size(), record.fields.size()),
             keep_rejects_ ? malformed_text(record, email_col_, o_.csv.delimiter) : "");
      return;
    }
    std::string_view raw = trim_blanks(record.fields[email_col_]);
    auto parsed = EmailAddress::parse(raw);
    if (auto* e = std::get_if<AddressError>(&parsed)) {
      reject(reading_, record.line, "syntax", e->reason, std::string(raw));
      return;
    }
    const EmailAddress& address = std::get<EmailAddress>(parsed);
    if (auto verdict = rules_.check(address)) {
      reject(reading_, record.line, verdict->reason, verdict->detail, std::string(raw));
      return;
    }
    TextArena& text = reading_.text;
    StagedRow row{static_cast<std::int64_t>(record.line),
                  text.put(address.address()),
                  text.put(address.key()),
                  {},
                  {},
                  true,
                  {}};
    row.domain = row.email.substr(row.email.size() - address.domain().size());
    row.first = read_keys_.insert(row.key);
    std::string& attributes = scratch_;
    attributes.assign(1, '{');
    for (std::size_t i = 0; i < record.fields.size(); ++i) {
      if (attribute_keys_[i].empty() || record.fields[i].empty()) continue;
      if (attributes.size() > 1) attributes.push_back(',');
      attributes += attribute_keys_[i];
      append_json_string(attributes, record.fields[i]);
    }
    attributes.push_back('}');
    if (row.first) {
      // The COPY fields hold the attributes; the row's own view is into them.
      std::string& fields = copy_scratch_;
      fields.clear();
      for (std::string_view f : {row.email, row.key, row.domain}) {
        CopyStream::append_field(fields, f);
      }
      const bool plain = attributes.find_first_of("\\\t\n\r") == std::string::npos;
      const std::size_t attributes_at = fields.size();
      CopyStream::append_field(fields, attributes);
      row.copy_fields = text.put(fields);
      row.attributes =
          plain ? row.copy_fields.substr(attributes_at, attributes.size()) : text.put(attributes);
    } else {
      row.attributes = text.put(attributes);
    }
    reading_.staged.push_back(row);
  }

  // Drops rows whose domain cannot receive mail; notes each domain's MX host.
  void check_mx() {
    std::unordered_set<std::string> unknown;
    for (const auto& r : writing_.staged) {
      if (mx_cache_.count(std::string(r.domain)) == 0) unknown.emplace(r.domain);
    }
    if (!unknown.empty()) resolve(std::vector<std::string>(unknown.begin(), unknown.end()));
    std::vector<StagedRow> kept;
    kept.reserve(writing_.staged.size());
    for (auto& r : writing_.staged) {
      const MxVerdict& v = mx_cache_.at(std::string(r.domain));
      if (v.status == MxStatus::kNullMx || v.status == MxStatus::kNxDomain ||
          v.status == MxStatus::kNoAddress) {
        reject(writing_, static_cast<std::uint64_t>(r.line), "no_mx",
               fmt::format("{}: {}", to_string(v.status), v.error), std::string(r.email));
        continue;
      }
      if (v.status == MxStatus::kError) ++writing_.counts.mx_unverified;
      kept.push_back(std::move(r));
    }
    writing_.staged = std::move(kept);
  }

  void resolve(std::vector<std::string> domains) {
    if (mx_cache_.size() + domains.size() > kDomainCacheLimit) mx_cache_.clear();
    std::string joined = fmt::format("{}", fmt::join(domains, " "));
    auto cached =
        db_.transact([&](pqxx::work& w) { return w.exec_prepared(sql::kCachedDomains, joined); });
    for (const auto& row : cached) {
      std::string hosts = row[2].as<std::string>();
      mx_cache_[row[0].as<std::string>()] =
          MxVerdict{mx_status_from_string(row[1].as<std::string>()),
                    hosts.substr(0, hosts.find(' ')), "cached answer"};
    }
    std::vector<std::string> ask;
    for (auto& d : domains) {
      if (mx_cache_.count(d) == 0) ask.push_back(std::move(d));
    }
    if (ask.empty()) return;
    auto answers = mx_->check(ask);
    db_.transact([&](pqxx::work& w) {
      for (const auto& [domain, a] : answers) {
        std::string first = a.hosts.empty() ? std::string() : a.hosts.front();
        std::string provider = classifier_.classify(domain, a.status == MxStatus::kOk ? first : "");
        // Temporary failures are recorded but expire at once: never cached.
        long long ttl =
            a.status == MxStatus::kError ? 0 : std::max(a.ttl, o_.mx_cache_ttl_floor).count();
        w.exec_prepared(sql::kStoreDomainAnswer, domain, provider,
                        fmt::format("{}", fmt::join(a.hosts, " ")),
                        std::string(to_string(a.status)), ttl);
      }
    });
    for (const auto& [domain, a] : answers) {
      mx_cache_[domain] =
          MxVerdict{a.status, a.hosts.empty() ? std::string() : a.hosts.front(), a.error};
    }
  }

  const std::string& provider_of(const std::string& domain) {
    auto it = provider_cache_.find(domain);
    if (it != provider_cache_.end()) return it->second;
    if (provider_cache_.size() >= kDomainCacheLimit) provider_cache_.clear();
    std::string mx_host;
    if (auto m = mx_cache_.find(domain);
        m != mx_cache_.end() && m->second.status == MxStatus::kOk) {
      mx_host = m->second.first_host;
    }
    return provider_cache_.emplace(domain, classifier_.classify(domain, mx_host)).first->second;
  }

  struct ChunkOutcome {
    std::map<std::string, std::uint64_t> statuses;
    std::vector<RejectedRow> not_added;
  };

  ChunkOutcome merge(pqxx::work& w, const ImportCounts& after,
                     const std::vector<std::optional<std::string>>& new_domains,
                     const std::vector<std::optional<std::string>>& new_providers) {
    ChunkOutcome out;
    w.exec("SET LOCAL synchronous_commit = off");
    w.exec("SET LOCAL client_min_messages = warning");
    // The merge keeps the chunk's verdicts in memory rather than in a
    // temporary file.
    w.exec("SET LOCAL work_mem = '64MB'");
    // Compiling the chunk's statements costs more than it saves.
    w.exec("SET LOCAL jit = off");
    if (!writing_.staged.empty()) {
      auto t0 = std::chrono::steady_clock::now();
      // Addresses the database knows (a recipient or a suppression) need the
      // merge statement; the others are new, and the first row of each is
      // COPYed straight into recipients and list_members.
      if (!expect_known_) {
        // Most chunks of a new list hold only new addresses: COPY them
        // without looking each one up first. The unique key index still
        // checks every address; one that exists fails the COPY and with it
        // the chunk's transaction (nothing else is written before it), and
        // the chunk is run again with the lookup. Not a savepoint: a COPY
        // inside one took half as long again. Suppressed addresses are
        // found among the added rows and taken back.
        try {
          out = write_rows(w, {});
        } catch (const pqxx::unique_violation&) {
          throw KnownAddressesInChunk();
        }
      } else {
        std::vector<std::optional<std::string>> keys;
        for (const auto& r : writing_.staged) {
          if (r.first) keys.emplace_back(std::string(r.key));
        }
        const auto known = keys_found(w, sql::kKnownKeys, db::pg_text_array(keys));
        out = write_rows(w, known);
        expect_known_ = !known.empty();
      }
      if (!new_domains.empty()) {
        w.exec_params(sql::kInsertDomains, db::pg_text_array(new_domains),
                      db::pg_text_array(new_providers));
      }
      spdlog::debug("import: {} rows written in {} ms", writing_.staged.size(),
                    std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - t0)
                        .count());
    }
    ImportCounts total = after;
    add_statuses(total, out.statuses);
    w.exec_prepared(sql::kImportProgress, import_id_, writing_.end_offset, writing_.end_line,
                    total.to_json().dump());
    return out;
  }

  // The keys of `key_array` that `statement` finds (known or suppressed).
  static std::unordered_set<std::string> keys_found(pqxx::work& w, const char* statement,
                                                    const std::string& key_array) {
    std::unordered_set<std::string> found;
    for (const auto& row : w.exec_params(statement, key_array)) {
      found.insert(row[0].as<std::string>());
    }
    return found;
  }

  // Writes the chunk: rows whose key is in `known` through the merge
  // statement, the others as new.
  ChunkOutcome write_rows(pqxx::work& w, const std::unordered_set<std::string>& known) {
    std::vector<const StagedRow*> fresh, merged;
    for (const auto& r : writing_.staged)
      (known.count(std::string(r.key)) ? merged : fresh).push_back(&r);
    ChunkOutcome out;
    if (!fresh.empty()) insert_new(w, fresh, out);
    if (!merged.empty()) merge_known(w, merged, out);
    return out;
  }

  // Rows whose address the database knows: staged, then one merge statement.
  void merge_known(pqxx::transaction_base& w, const std::vector<const StagedRow*>& rows,
                   ChunkOutcome& out) {
    w.exec(sql::kCreateStaging);
    CopyStream copy(w, sql::kStageTable,
                    {"line", "email", "email_key", "domain", "attributes", "first"});
    for (const StagedRow* r : rows) {
      copy.field(r->line).field(r->email).field(r->key).field(r->domain).field(r->attributes);
      copy.field(r->first).end_row();
    }
    copy.complete();
    for (const auto& row : w.exec_params(sql::kMergeChunk, list_id_, started_at_, keep_rejects_)) {
      const std::string kind = row[0].as<std::string>();
      if (kind == "count") {
        out.statuses[row[1].as<std::string>()] += row[2].as<std::uint64_t>();
      } else {
        out.not_added.push_back({row[2].as<std::uint64_t>(), row[1].as<std::string>(),
                                 row[3].is_null() ? "" : row[3].as<std::string>(),
                                 row[4].as<std::string>()});
      }
    }
  }

  // Rows whose address is new to the database: the first of each becomes a
  // recipient (ids drawn from the sequence, by COPY) and a member (made by
  // the server from the id ranges); repeats are duplicates, suppressed
  // addresses are taken back. An address another import adds at the same
  // time fails the COPY with a unique violation and the chunk runs again.
  void insert_new(pqxx::transaction_base& w, const std::vector<const StagedRow*>& rows,
                  ChunkOutcome& out) {
    std::vector<const StagedRow*> firsts;
    for (const StagedRow* r : rows) {
      if (r->first) {
        firsts.push_back(r);
        continue;
      }
      ++out.statuses["duplicate"];
      if (keep_rejects_) {
        out.not_added.push_back({static_cast<std::uint64_t>(r->line), "duplicate",
                                 "repeated in file", std::string(r->email)});
      }
    }
    if (firsts.empty()) return;
    // Key order: two imports adding the same addresses take their index
    // locks in one order (no deadlock between them), and the key index is
    // filled from left to right.
    // The reader hands chunks over in that order already (sorted there, off
    // the path the database waits on); rows the MX check kept stay in it.
    const auto by_key = [](const StagedRow* a, const StagedRow* b) { return a->key < b->key; };
    if (!std::is_sorted(firsts.begin(), firsts.end(), by_key)) {
      std::sort(firsts.begin(), firsts.end(), by_key);
    }
    std::vector<std::int64_t> lo, hi, ids;
    ids.reserve(firsts.size());
    const auto wanted = static_cast<std::int64_t>(firsts.size());
    const auto drawn = w.exec_prepared(sql::kNextRecipientIds, wanted);
    if (drawn[0][1].as<std::int64_t>() - drawn[0][0].as<std::int64_t>() + 1 == wanted) {
      lo.push_back(drawn[0][0].as<std::int64_t>());
      hi.push_back(drawn[0][1].as<std::int64_t>());
    } else {
      // Interleaved with another session's ids: those drawn are left unused.
      for (const auto& row : w.exec_prepared(sql::kNextRecipientIdRuns, wanted)) {
        lo.push_back(row[0].as<std::int64_t>());
        hi.push_back(row[1].as<std::int64_t>());
      }
    }
    for (std::size_t r = 0; r < lo.size(); ++r) {
      for (std::int64_t id = lo[r]; id <= hi[r]; ++id) ids.push_back(id);
    }
    if (ids.size() != firsts.size()) {
      throw std::runtime_error(
          fmt::format("import: asked the sequence for {} ids, got {}", firsts.size(), ids.size()));
    }
    {
      CopyStream copy(w, "recipients", {"email", "email_key", "domain", "attributes", "id"});
      for (std::size_t i = 0; i < firsts.size(); ++i) {
        copy.encoded(firsts[i]->copy_fields).field(ids[i]).end_row();
      }
      copy.complete();
    }
    const std::string lo_array = db::pg_int_array(lo), hi_array = db::pg_int_array(hi);
    // Suppressed addresses were added with the others (no lookup before the
    // COPY): take them back, and keep them out of the list.
    std::vector<std::int64_t> dropped;
    for (const auto& row : w.exec_params(sql::kSuppressedNewRecipients, lo_array, hi_array,
                                         static_cast<std::int64_t>(firsts.size()))) {
      const auto id = row[0].as<std::int64_t>();
      const auto at = std::lower_bound(ids.begin(), ids.end(), id);
      if (at == ids.end() || *at != id) continue;
      const StagedRow* r = firsts[static_cast<std::size_t>(at - ids.begin())];
      dropped.push_back(id);
      ++out.statuses["suppressed"];
      if (keep_rejects_) {
        out.not_added.push_back({static_cast<std::uint64_t>(r->line), "suppressed",
                                 "suppressed: " + row[1].as<std::string>(), std::string(r->email)});
      }
    }
    const std::string dropped_array = db::pg_int_array(dropped);
    if (!dropped.empty()) w.exec_params(sql::kDropNewRecipients, dropped_array);
    w.exec_params(sql::kAddNewMembers, list_id_, lo_array, hi_array, dropped_array);
    out.statuses["new"] += firsts.size() - dropped.size();
  }

  static void add_statuses(ImportCounts& c, const std::map<std::string, std::uint64_t>& statuses) {
    for (const auto& [status, n] : statuses) {
      if (status == "new" || status == "join") c.imported += n;
      if (status == "update") c.updated += n;
      if (status == "duplicate") c.duplicates += n;
      if (status == "suppressed") c.suppressed += n;
    }
  }

  static void add_counts(ImportCounts& into, const ImportCounts& c) {
    into.rows += c.rows;
    into.imported += c.imported;
    into.updated += c.updated;
    into.duplicates += c.duplicates;
    into.suppressed += c.suppressed;
    into.mx_unverified += c.mx_unverified;
    for (const auto& [k, v] : c.rejected) into.rejected[k] += v;
  }

  void flush() {
    if (writing_.counts.rows == 0) return;
    if (mx_) check_mx();
    // Domains this import has not written yet, with their provider.
    std::vector<std::optional<std::string>> new_domains, new_providers;
    if (domains_written_.size() >= kDomainCacheLimit) domains_written_.clear();
    std::unordered_set<std::string_view> chunk_domains;
    for (auto& r : writing_.staged) {
      if (chunk_domains.insert(r.domain).second &&
          domains_written_.count(std::string(r.domain)) == 0) {
        new_domains.emplace_back(std::string(r.domain));
        new_providers.emplace_back(provider_of(*new_domains.back()));
      }
    }
    ImportCounts after = counts_;
    add_counts(after, writing_.counts);
    auto started = std::chrono::steady_clock::now();
    ChunkOutcome outcome;
    for (int attempt = 1;; ++attempt) {
      try {
        outcome = db_.transact(
            [&](pqxx::work& w) { return merge(w, after, new_domains, new_providers); });
        break;
      } catch (const KnownAddressesInChunk&) {
        // Rolled back; run again, looking the addresses up first.
        expect_known_ = true;
        --attempt;
      } catch (const pqxx::sql_error& e) {
        // Another import adding the same addresses: a unique violation, or a
        // deadlock the server broke by failing this transaction. Rolled back;
        // the next attempt's snapshot sees the other import's rows.
        if (!is_concurrent_conflict(e)) throw;
        if (attempt == kConcurrentRetries) {
          throw std::runtime_error(fmt::format(
              "import of {}: another import keeps adding the same addresses; run it again",
              o_.file));
        }
      }
    }
    for (auto& d : new_domains) domains_written_.insert(std::move(*d));
    spdlog::debug("import: chunk of {} rows merged in {} ms", writing_.staged.size(),
                  std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - started)
                      .count());
    add_statuses(after, outcome.statuses);
    counts_ = after;
    write_rejects(std::move(outcome.not_added));
    report(writing_.end_offset);
  }

  void report(std::uint64_t offset) {
    if (progress_) progress_(ImportProgress{counts_.rows, offset, total_bytes_, resumed_});
  }

  void write_rejects(std::vector<RejectedRow> more) {
    if (!rejects_.is_open()) return;
    std::vector<RejectedRow>& rejected = writing_.rejected;
    for (auto& r : more) rejected.push_back(std::move(r));
    std::stable_sort(rejected.begin(), rejected.end(),
                     [](const RejectedRow& a, const RejectedRow& b) { return a.line < b.line; });
    std::string out;
    for (const auto& r : rejected) {
      out += std::to_string(r.line);
      out.push_back(',');
      append_csv_field(out, r.reason);
      out.push_back(',');
      append_csv_field(out, r.detail);
      out.push_back(',');
      append_csv_field(out, r.email);
      out.push_back('\n');
    }
    rejects_ << out;
    rejects_.flush();
    if (!rejects_) {
      throw std::runtime_error(
          fmt::format("{}: write failed: {}", o_.rejects_file, std::strerror(errno)));
    }
  }

  db::Database& db_;
  const HygieneRules& rules_;
  const throttle::ProviderClassifier& classifier_;
  const ImportOptions& o_;
  const std::function<void(const ImportProgress&)>& progress_;

  std::ifstream in_;
  std::unique_ptr<CsvReader> reader_;
  std::ofstream rejects_;
  std::vector<std::string> header_;
  std::vector<std::string> attribute_keys_;
  int email_col_ = -1;
  std::uint64_t total_bytes_ = 0;
  std::string identity_;
  std::uint64_t data_offset_ = 0;
  std::uint64_t data_line_ = 1;
  std::int64_t list_id_ = 0;
  std::int64_t import_id_ = 0;
  std::string started_at_;
  bool resumed_ = false;

  std::unique_ptr<MxChecker> mx_;
  std::unordered_map<std::string, MxVerdict> mx_cache_;
  std::unordered_map<std::string, std::string> provider_cache_;
  std::unordered_set<std::string> domains_written_;
  // The last chunk held addresses the database knew: look the next one's up
  // before writing instead of trying a plain COPY first.
  bool expect_known_ = false;

  // Written by the caller's thread: the totals of committed chunks and the
  // chunk being written.
  ImportCounts counts_;
  Chunk writing_;
  // The reader thread's own: the chunk being read, its keys, and buffers
  // reused from row to row.
  Chunk reading_;
  KeySet read_keys_;
  std::string scratch_;
  std::string copy_scratch_;
  bool keep_rejects_ = false;
  // The hand-over between the two: one chunk at most waits in ready_.
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<Chunk> ready_;
  // A chunk the writer is done with, for the reader to free.
  std::optional<Chunk> spent_;
  bool done_ = false;
  bool stop_ = false;
  std::exception_ptr read_error_;
};

}  // namespace

ImportCounts::ImportCounts() {
  for (const char* r : kRejectReasons) rejected[r] = 0;
}

std::uint64_t ImportCounts::rejected_total() const {
  std::uint64_t n = 0;
  for (const auto& [k, v] : rejected) n += v;
  return n;
}

nlohmann::json ImportCounts::to_json() const {
  nlohmann::json r = nlohmann::json::object();
  for (const auto& [k, v] : rejected) r[k] = v;
  return {{"rows", rows},
          {"imported", imported},
          {"updated", updated},
          {"duplicates", duplicates},
          {"suppressed", suppressed},
          {"rejected", r},
          {"mx_unverified", mx_unverified}};
}

ImportCounts ImportCounts::from_json(const nlohmann::json& j) {
  ImportCounts c;
  c.rows = j.value("rows", 0ull);
  c.imported = j.value("imported", 0ull);
  c.updated = j.value("updated", 0ull);
  c.duplicates = j.value("duplicates", 0ull);
  c.suppressed = j.value("suppressed", 0ull);
  c.mx_unverified = j.value("mx_unverified", 0ull);
  if (j.contains("rejected")) {
    for (const auto& [k, v] : j["rejected"].items()) c.rejected[k] = v.get<std::uint64_t>();
  }
  return c;
}

ListImporter::ListImporter(db::Database& db, const HygieneRules& rules,
                           const throttle::ProviderClassifier& classifier, ImportOptions options)
    : db_(db), rules_(rules), classifier_(classifier), options_(std::move(options)) {}

ImportCounts ListImporter::run(const std::function<void(const ImportProgress&)>& progress) {
  ImportRun run(db_, rules_, classifier_, options_, progress);
  return run.run();
}

}  // namespace mailer::lists
