#include "lists/list_importer.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

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

#include "lists/copy_text.h"
#include "lists/email_address.h"

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

// The rejects file: rows not added, as CSV (line,reason,detail,email), a
// chunk's rows at a time. A chunk's rows are written, and handed to the
// system, before the chunk commits, so a chunk whose rows cannot be written
// is not committed and a rerun redoes it. Until a chunk commits its rows can
// be taken back: a regular file is cut back to where the chunk began, so a
// chunk written again (run again, or by a rerun) appears once. Other files
// (a pipe, a device) are only appended to.
class RejectsFile {
 public:
  RejectsFile() = default;
  RejectsFile(const RejectsFile&) = delete;
  RejectsFile& operator=(const RejectsFile&) = delete;
  ~RejectsFile() {
    if (fd_ >= 0) ::close(fd_);
  }

  bool is_open() const { return fd_ >= 0; }

  // Opens `path`, emptied unless `append`; the header row goes with the
  // first chunk unless the file has rows already. Throws ImportInputError.
  // When appending, `committed` is the file's length once the committed
  // chunks' rows were in it (recorded with each commit): rows past it are of
  // a chunk whose process was killed before the chunk committed, and are cut
  // off, since the chunk is done again.
  void open(const std::string& path, bool append,
            std::optional<std::uint64_t> committed = std::nullopt) {
    path_ = path;
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (append ? 0 : O_TRUNC),
                 0644);
    struct stat st {};
    if (fd_ < 0 || ::fstat(fd_, &st) != 0) {
      throw ImportInputError(
          fmt::format("{}: cannot write rejects file: {}", path, std::strerror(errno)));
    }
    regular_ = S_ISREG(st.st_mode);
    committed_size_ = regular_ ? st.st_size : 0;
    if (append && committed && regular_) cut_back(*committed);
    header_pending_ = committed_size_ == 0;
  }

  // Writes the rows of the chunk being committed (text of whole CSV lines),
  // in place of any written for it before. Throws std::runtime_error naming
  // the file when they cannot all be written.
  void write_chunk(std::string_view rows) {
    take_back();
    std::string text;
    if (header_pending_) text = "line,reason,detail,email\n";
    text += rows;
    uncommitted_ = static_cast<off_t>(text.size());
    for (std::string_view left = text; !left.empty();) {
      const ssize_t n = ::write(fd_, left.data(), left.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int error = n < 0 ? errno : EIO;
        take_back();
        throw std::runtime_error(
            fmt::format("{}: cannot write rejects file: {}; the chunk was not committed, running "
                        "the import again redoes it",
                        path_, std::strerror(error)));
      }
      left.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  // The file's length with the rows of the chunk being committed, to commit
  // with it; nullopt when the file is not open or not a regular file.
  std::optional<std::uint64_t> length() const {
    if (!is_open() || !regular_) return std::nullopt;
    return static_cast<std::uint64_t>(committed_size_ + uncommitted_);
  }

  // The chunk written last committed: its rows stay.
  void chunk_committed() {
    if (uncommitted_ > 0) header_pending_ = false;
    committed_size_ += uncommitted_;
    uncommitted_ = 0;
  }

  // The chunk written last did not commit: its rows are taken back (from a
  // regular file; best effort, the error is the chunk's).
  void take_back() {
    if (regular_ && uncommitted_ > 0 && ::ftruncate(fd_, committed_size_) != 0) {
      spdlog::warn("{}: cannot take back rows of a chunk not committed: {}", path_,
                   std::strerror(errno));
    }
    uncommitted_ = 0;
  }

  // Writes the header if no chunk has yet (an import without data rows).
  void finish() {
    if (!is_open() || !header_pending_) return;
    write_chunk({});
    chunk_committed();
  }

 private:
  // Cuts the file (committed_size_ long) back to `committed` bytes.
  void cut_back(std::uint64_t committed) {
    const auto size = static_cast<std::uint64_t>(committed_size_);
    if (size < committed) {
      spdlog::warn(
          "{}: {} bytes, shorter than the {} bytes of rows the import committed; it was "
          "changed since the interrupted run, so rows of committed chunks may be missing from it",
          path_, size, committed);
    } else if (size > committed) {
      if (::ftruncate(fd_, static_cast<off_t>(committed)) != 0) {
        throw ImportInputError(
            fmt::format("{}: cannot cut back rows of a chunk that did not commit: {}", path_,
                        std::strerror(errno)));
      }
      spdlog::info("{}: cut back {} bytes of rows of a chunk that did not commit", path_,
                   size - committed);
      committed_size_ = static_cast<off_t>(committed);
    }
  }

  std::string path_;
  int fd_ = -1;
  bool regular_ = false;
  bool header_pending_ = true;
  // The file's size with the committed chunks' rows (regular files;
  // otherwise counted from 0), and the bytes of the chunk being committed
  // (some may be written when a write failed).
  off_t committed_size_ = 0;
  off_t uncommitted_ = 0;
};

// One run of an import: the open file, the chunk being built, the caches.
class ImportRun {
 public:
  ImportRun(ImportStore& store, const HygieneRules& rules,
            const throttle::ProviderClassifier& classifier, const ImportOptions& options,
            const std::function<void(const ImportProgress&)>& progress)
      : store_(store), rules_(rules), classifier_(classifier), o_(options), progress_(progress) {}

  ImportCounts run() {
    open_input();
    if (o_.mx_check) {
      if (o_.mx_lookup == nullptr) throw ImportInputError("MX check without a DNS lookup");
      mx_ = std::make_unique<MxChecker>(*o_.mx_lookup, o_.mx);
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
    rejects_.finish();
    store_.finish(import_.import_id, counts_.to_json().dump());
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
    auto list_id = store_.find_list(o_.list_name);
    if (!list_id) {
      throw ImportInputError(
          fmt::format("list \"{}\" does not exist (create it with: mailer lists create {})",
                      o_.list_name, o_.list_name));
    }
    auto running = store_.find_running(*list_id, identity_);
    bool resume = running.has_value();
    std::optional<std::uint64_t> rejects_committed;
    if (resume) {
      rejects_committed = running->rejects_bytes;
      // No chunk committed yet: nothing in the file is this import's.
      if (!rejects_committed && running->offset == data_offset_) rejects_committed = 0;
    }
    open_rejects(resume, rejects_committed);
    if (resume) {
      import_ = std::move(*running);
      data_offset_ = import_.offset;
      data_line_ = import_.line;
      counts_ = ImportCounts::from_json(nlohmann::json::parse(import_.counts_json));
      in_.clear();
      in_.seekg(static_cast<std::streamoff>(data_offset_));
      reader_ = std::make_unique<CsvReader>(in_, o_.csv, data_offset_, data_line_);
      spdlog::info("import: resuming import #{} of {} at line {} ({} rows done)", import_.import_id,
                   o_.file, data_line_, counts_.rows);
    } else {
      import_ = store_.start(*list_id, o_.file, identity_, data_offset_, data_line_);
    }
    import_.file = o_.file;
    resumed_ = resume;
    if (!store_.lock(import_.import_id)) {
      throw std::runtime_error(
          fmt::format("import #{} of {} into list \"{}\" is running in another process",
                      import_.import_id, o_.file, o_.list_name));
    }
  }

  void open_rejects(bool append, std::optional<std::uint64_t> committed) {
    if (!o_.rejects_file.empty()) rejects_.open(o_.rejects_file, append, committed);
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
        append_copy_field(fields, f);
      }
      const bool plain = attributes.find_first_of("\\\t\n\r") == std::string::npos;
      const std::size_t attributes_at = fields.size();
      append_copy_field(fields, attributes);
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
    for (const CachedDomain& c : store_.cached_domains(domains)) {
      mx_cache_[c.domain] = MxVerdict{mx_status_from_string(c.status),
                                      c.hosts.substr(0, c.hosts.find(' ')), "cached answer"};
    }
    std::vector<std::string> ask;
    for (auto& d : domains) {
      if (mx_cache_.count(d) == 0) ask.push_back(std::move(d));
    }
    if (ask.empty()) return;
    auto answers = mx_->check(ask);
    std::vector<DomainAnswer> store;
    store.reserve(answers.size());
    for (const auto& [domain, a] : answers) {
      std::string first = a.hosts.empty() ? std::string() : a.hosts.front();
      std::string provider = classifier_.classify(domain, a.status == MxStatus::kOk ? first : "");
      // Temporary failures are recorded but expire at once: never cached.
      long long ttl =
          a.status == MxStatus::kError ? 0 : std::max(a.ttl, o_.mx_cache_ttl_floor).count();
      store.push_back({domain, std::move(provider), fmt::format("{}", fmt::join(a.hosts, " ")),
                       std::string(to_string(a.status)), ttl});
    }
    store_.store_domains(store);
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
    // Before the chunk commits: its rejects are written (a chunk whose
    // rejects cannot be written does not commit), and the import's counts
    // once the chunk is in are committed with it.
    const auto before_commit = [&](const ChunkOutcome& out) {
      write_rejects(out.not_added);
      ImportCounts total = after;
      add_statuses(total, out.statuses);
      return ChunkProgress{total.to_json().dump(), rejects_.length()};
    };
    const ChunkToWrite chunk{.rows = writing_.staged,
                             .new_domains = new_domains,
                             .new_providers = new_providers,
                             .want_rows = keep_rejects_,
                             .end_offset = writing_.end_offset,
                             .end_line = writing_.end_line};
    ChunkOutcome outcome;
    try {
      outcome = store_.write_chunk(import_, chunk, before_commit);
    } catch (...) {
      rejects_.take_back();
      throw;
    }
    rejects_.chunk_committed();
    for (auto& d : new_domains) domains_written_.insert(std::move(*d));
    spdlog::debug("import: chunk of {} rows merged in {} ms", writing_.staged.size(),
                  std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - started)
                      .count());
    add_statuses(after, outcome.statuses);
    counts_ = after;
    report(writing_.end_offset);
  }

  void report(std::uint64_t offset) {
    if (progress_) progress_(ImportProgress{counts_.rows, offset, total_bytes_, resumed_});
  }

  // Writes the chunk's rejected rows and the store's rows not added, in line
  // order, to the rejects file (in place of any written for the chunk
  // before: this runs again when the chunk does).
  void write_rejects(const std::vector<RejectedRow>& not_added) {
    if (!rejects_.is_open()) return;
    std::vector<const RejectedRow*> rows;
    rows.reserve(writing_.rejected.size() + not_added.size());
    for (const auto& r : writing_.rejected) rows.push_back(&r);
    for (const auto& r : not_added) rows.push_back(&r);
    std::stable_sort(rows.begin(), rows.end(),
                     [](const RejectedRow* a, const RejectedRow* b) { return a->line < b->line; });
    std::string out;
    for (const RejectedRow* r : rows) {
      out += std::to_string(r->line);
      out.push_back(',');
      append_csv_field(out, r->reason);
      out.push_back(',');
      append_csv_field(out, r->detail);
      out.push_back(',');
      append_csv_field(out, r->email);
      out.push_back('\n');
    }
    rejects_.write_chunk(out);
  }

  ImportStore& store_;
  const HygieneRules& rules_;
  const throttle::ProviderClassifier& classifier_;
  const ImportOptions& o_;
  const std::function<void(const ImportProgress&)>& progress_;

  std::ifstream in_;
  std::unique_ptr<CsvReader> reader_;
  RejectsFile rejects_;
  std::vector<std::string> header_;
  std::vector<std::string> attribute_keys_;
  int email_col_ = -1;
  std::uint64_t total_bytes_ = 0;
  std::string identity_;
  std::uint64_t data_offset_ = 0;
  std::uint64_t data_line_ = 1;
  ImportRecord import_;
  bool resumed_ = false;

  std::unique_ptr<MxChecker> mx_;
  std::unordered_map<std::string, MxVerdict> mx_cache_;
  std::unordered_map<std::string, std::string> provider_cache_;
  std::unordered_set<std::string> domains_written_;

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

ListImporter::ListImporter(ImportStore& store, const HygieneRules& rules,
                           const throttle::ProviderClassifier& classifier, ImportOptions options)
    : store_(store), rules_(rules), classifier_(classifier), options_(std::move(options)) {}

ImportCounts ListImporter::run(const std::function<void(const ImportProgress&)>& progress) {
  ImportRun run(store_, rules_, classifier_, options_, progress);
  return run.run();
}

}  // namespace mailer::lists
