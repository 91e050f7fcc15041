#include "app/cli/bounce_poller.h"

#include <curl/curl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <pqxx/except>
#include <sstream>
#include <thread>

#include "app/base/bounded_file.h"
#include "app/base/errors.h"

namespace mailer::app {
namespace {

// The keyword that marks a message left in the mailbox as no report.
constexpr const char* kNotReportKeyword = "$MailerNotReport";
// Largest answer to a command other than a FETCH (the SEARCH result).
constexpr std::size_t kMaxCommandAnswer = 16 << 20;

void init_curl_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct UrlHandle {
  CURLU* h = curl_url();
  ~UrlHandle() { curl_url_cleanup(h); }
  // The decoded part, or nullopt when absent.
  std::optional<std::string> get(CURLUPart part, unsigned flags = CURLU_URLDECODE) const {
    char* value = nullptr;
    if (curl_url_get(h, part, &value, flags) != CURLUE_OK || value == nullptr) return std::nullopt;
    std::string out(value);
    curl_free(value);
    return out;
  }
};

// `url` with the password of its userinfo, if any, replaced by "***".
std::string redact_userinfo(const std::string& url) {
  const std::size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return url;
  const std::size_t start = scheme_end + 3;
  const std::size_t at = url.find('@', start);
  const std::size_t slash = url.find('/', start);
  if (at == std::string::npos || (slash != std::string::npos && slash < at)) return url;
  const std::size_t colon = url.find(':', start);
  if (colon == std::string::npos || colon > at) return url;
  return url.substr(0, colon + 1) + "***" + url.substr(at);
}

[[noreturn]] void bad_url(const std::string& url, const std::string& why) {
  throw UsageError(fmt::format("[bounces] imap_url \"{}\": {}", redact_userinfo(url), why));
}

std::string trim_line_ends(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

struct Sink {
  std::string text;
  std::size_t limit = 0;
  bool overflow = false;
};

size_t append_bounded(char* data, size_t size, size_t n, void* userp) {
  auto* sink = static_cast<Sink*>(userp);
  const std::size_t bytes = size * n;
  if (sink->text.size() + bytes > sink->limit) {
    sink->overflow = true;
    return 0;  // aborts the transfer (CURLE_WRITE_ERROR)
  }
  sink->text.append(data, bytes);
  return bytes;
}

}  // namespace

ImapMailbox parse_imap_url(const std::string& url) {
  init_curl_once();
  UrlHandle u;
  if (u.h == nullptr) throw std::bad_alloc();
  const CURLUcode rc = curl_url_set(u.h, CURLUPART_URL, url.c_str(), CURLU_NON_SUPPORT_SCHEME);
  if (rc != CURLUE_OK) bad_url(url, fmt::format("not a URL ({})", curl_url_strerror(rc)));
  ImapMailbox m;
  const std::string scheme = u.get(CURLUPART_SCHEME, 0).value_or("");
  if (scheme != "imaps" && scheme != "imap") {
    bad_url(url,
            "expected imaps://USER@HOST/MAILBOX (or imap:// for a server on a trusted network)");
  }
  m.tls = scheme == "imaps";
  if (u.get(CURLUPART_PASSWORD)) {
    bad_url(url,
            "holds a password; put it in [bounces] imap_password_file or $MAILER_IMAP_PASSWORD "
            "instead");
  }
  if (u.get(CURLUPART_OPTIONS)) bad_url(url, "login options (;AUTH=...) are not supported");
  m.user = u.get(CURLUPART_USER).value_or("");
  if (m.user.empty()) bad_url(url, "names no user (imaps://USER@HOST/MAILBOX)");
  m.host = u.get(CURLUPART_HOST, 0).value_or("");
  if (m.host.empty()) bad_url(url, "names no host");
  m.port = u.get(CURLUPART_PORT, 0).value_or("");
  if (u.get(CURLUPART_QUERY, 0)) bad_url(url, "a search query (?...) is not supported");
  if (u.get(CURLUPART_FRAGMENT, 0)) bad_url(url, "a fragment (#...) is not supported");
  const std::string raw_path = u.get(CURLUPART_PATH, 0).value_or("/");
  if (raw_path.find(';') != std::string::npos) {
    bad_url(url, "the path must be a mailbox only (no ;UID= or other parameters)");
  }
  std::string path = u.get(CURLUPART_PATH).value_or("/");
  if (!path.empty() && path.front() == '/') path.erase(0, 1);
  if (path.empty()) bad_url(url, "names no mailbox (imaps://USER@HOST/INBOX)");
  for (const char c : path) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '"' || c == '\\' ||
        static_cast<unsigned char>(c) >= 0x80) {
      bad_url(url, "the mailbox name must be printable ASCII without '\"' or '\\'");
    }
  }
  m.mailbox = path;
  curl_url_set(u.h, CURLUPART_USER, nullptr, 0);
  m.url = u.get(CURLUPART_URL, 0).value_or("");
  m.display = url;
  return m;
}

PollerSettings poller_settings(const Config& config) {
  const BouncesSettings& b = config.bounces;
  if (b.imap_url.empty()) {
    throw UsageError(fmt::format(
        "{}: [bounces] imap_url is not set (e.g. \"imaps://bounces@imap.example.com/INBOX\")",
        config.source));
  }
  PollerSettings s;
  s.mailbox = parse_imap_url(b.imap_url);
  if (!b.imap_password_file.empty()) {
    try {
      s.password = read_bounded_file(b.imap_password_file, kMaxSecretFileBytes);
    } catch (const FileReadError& e) {
      throw UsageError(fmt::format("[bounces] imap_password_file {}", e.what()));
    }
    const std::size_t eol = s.password.find_first_of("\r\n");
    if (eol != std::string::npos) s.password.erase(eol);
    if (s.password.empty()) {
      throw UsageError(fmt::format("[bounces] imap_password_file {}: is empty on its first line",
                                   b.imap_password_file));
    }
  } else if (const char* env = std::getenv("MAILER_IMAP_PASSWORD"); env != nullptr && *env) {
    s.password = env;
  } else {
    throw UsageError("no IMAP password: set [bounces] imap_password_file or $MAILER_IMAP_PASSWORD");
  }
  s.ca_file = b.imap_ca_file;
  if (!s.ca_file.empty()) {
    // Read here (bounded, and refused when it is a directory) so that a bad
    // path is a configuration error rather than a TLS failure at each poll.
    try {
      (void)read_bounded_file(s.ca_file, kMaxCertificateFileBytes);
    } catch (const FileReadError& e) {
      throw UsageError(fmt::format("[bounces] imap_ca_file {}", e.what()));
    }
  }
  s.not_report_folder = b.imap_not_report_folder;
  s.max_message_bytes = static_cast<std::size_t>(b.max_message_bytes);
  return s;
}

// One libcurl easy handle kept across commands, so that one connection (one
// login, one SELECT) serves a whole poll.
class ImapSession {
 public:
  explicit ImapSession(const PollerSettings& s) : s_(s) {
    init_curl_once();
    curl_ = curl_easy_init();
    if (curl_ == nullptr) throw std::bad_alloc();
  }
  ~ImapSession() { curl_easy_cleanup(curl_); }
  ImapSession(const ImapSession&) = delete;
  ImapSession& operator=(const ImapSession&) = delete;

  // Runs `command` in the mailbox (libcurl SELECTs it first when needed);
  // returns the untagged answers.
  std::string command(const std::string& command) {
    return perform(mailbox_url(), command, kMaxCommandAnswer, nullptr);
  }

  // The whole message with UID `uid`. Sets `too_large` (and returns "")
  // when it is larger than `limit` bytes.
  std::string fetch(std::uint64_t uid, std::size_t limit, bool& too_large) {
    too_large = false;
    return perform(fmt::format("{};UID={}", mailbox_url(), uid), "", limit, &too_large);
  }

 private:
  const std::string& mailbox_url() const { return s_.mailbox.url; }

  std::string perform(const std::string& url, const std::string& custom, std::size_t limit,
                      bool* too_large) {
    Sink sink;
    sink.limit = limit;
    char errbuf[CURL_ERROR_SIZE] = {};
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl_, CURLOPT_PROTOCOLS_STR, "imap,imaps");
    curl_easy_setopt(curl_, CURLOPT_USERNAME, s_.mailbox.user.c_str());
    curl_easy_setopt(curl_, CURLOPT_PASSWORD, s_.password.c_str());
    curl_easy_setopt(curl_, CURLOPT_CUSTOMREQUEST, custom.empty() ? nullptr : custom.c_str());
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, append_bounded);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(curl_, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl_, CURLOPT_CONNECTTIMEOUT, 15L);
    curl_easy_setopt(curl_, CURLOPT_TIMEOUT, s_.timeout_seconds);
    curl_easy_setopt(curl_, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(curl_, CURLOPT_SSL_VERIFYHOST, 2L);
    if (!s_.ca_file.empty()) curl_easy_setopt(curl_, CURLOPT_CAINFO, s_.ca_file.c_str());
    const CURLcode rc = curl_easy_perform(curl_);
    if (rc == CURLE_OK) return std::move(sink.text);
    if (sink.overflow && too_large != nullptr) {
      *too_large = true;
      return {};
    }
    const std::string detail = errbuf[0] != '\0' ? trim_line_ends(errbuf) : curl_easy_strerror(rc);
    const std::string what = custom.empty() ? "FETCH" : custom.substr(0, custom.find(' ', 4));
    if (rc == CURLE_LOGIN_DENIED) {
      throw ImapLoginError(fmt::format(
          "IMAP login as \"{}\" to {} refused: wrong user or password ([bounces] imap_url, "
          "imap_password_file or $MAILER_IMAP_PASSWORD)",
          s_.mailbox.user, s_.mailbox.display));
    }
    if (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE) {
      throw ImapError(fmt::format(
          "IMAP {}: the server's TLS certificate does not verify ({}); [bounces] imap_ca_file "
          "names the CA certificates to trust",
          s_.mailbox.display, detail));
    }
    throw ImapError(fmt::format("IMAP {}: {} failed: {}", s_.mailbox.display, what, detail));
  }

  const PollerSettings& s_;
  CURL* curl_ = nullptr;
};

namespace {

// The UIDs of "* SEARCH 1 2 3" answers, ascending.
std::vector<std::uint64_t> search_uids(const std::string& answer) {
  std::vector<std::uint64_t> uids;
  std::istringstream lines(answer);
  std::string line;
  while (std::getline(lines, line)) {
    line = trim_line_ends(line);
    if (line.rfind("* SEARCH", 0) != 0) continue;
    std::istringstream words(line.substr(8));
    std::string word;
    while (words >> word) {
      if (word.empty() || word.find_first_not_of("0123456789") != std::string::npos ||
          word.size() > 19) {
        throw ImapError(
            fmt::format("IMAP SEARCH answered an unreadable UID \"{}\"", word.substr(0, 40)));
      }
      uids.push_back(std::stoull(word));
    }
  }
  std::sort(uids.begin(), uids.end());
  uids.erase(std::unique(uids.begin(), uids.end()), uids.end());
  return uids;
}

bool is_database_down(const std::exception& e) {
  return dynamic_cast<const db::ConnectionError*>(&e) != nullptr ||
         dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr;
}

}  // namespace

BouncePoller::BouncePoller(db::Database& db, const Config& config, std::string secret,
                           PollerSettings settings)
    : config_(config),
      settings_(std::move(settings)),
      ingester_(db, config, std::move(secret)),
      session_(std::make_unique<ImapSession>(settings_)) {}

BouncePoller::~BouncePoller() = default;

void BouncePoller::handle_not_report(std::uint64_t uid) {
  const std::string& folder = settings_.not_report_folder;
  if (!folder.empty()) {
    if (!folder_created_) {
      try {
        session_->command(fmt::format("CREATE \"{}\"", folder));
      } catch (const ImapLoginError&) {
        throw;
      } catch (const ImapError&) {
        // Already there (or not creatable: then the MOVE below says so).
      }
      folder_created_ = true;
    }
    try {
      session_->command(fmt::format("UID MOVE {} \"{}\"", uid, folder));
      return;
    } catch (const ImapLoginError&) {
      throw;
    } catch (const ImapError& e) {
      spdlog::warn("bounces poll: cannot move message {} to \"{}\" ({}); flagging it {} instead",
                   uid, folder, e.what(), kNotReportKeyword);
    }
  }
  session_->command(fmt::format("UID STORE {} +FLAGS.SILENT (\\Seen {})", uid, kNotReportKeyword));
}

PollSummary BouncePoller::poll_once() {
  PollSummary summary;
  const IngestSummary before = ingester_.summary();
  const std::vector<std::uint64_t> uids = search_uids(
      session_->command(fmt::format("UID SEARCH NOT DELETED NOT KEYWORD {}", kNotReportKeyword)));
  summary.found = static_cast<std::int64_t>(uids.size());
  bool database_down = false;
  for (const std::uint64_t uid : uids) {
    if (database_down) {
      ++summary.left;
      continue;
    }
    const std::string name = fmt::format("{} UID {}", settings_.mailbox.mailbox, uid);
    bool too_large = false;
    const std::string message = session_->fetch(uid, settings_.max_message_bytes, too_large);
    if (too_large) {
      spdlog::warn(
          "bounces poll: {}: larger than {} bytes ([bounces] max_message_bytes); "
          "treated as no report",
          name, settings_.max_message_bytes);
      handle_not_report(uid);
      ++summary.not_reports;
      continue;
    }
    const std::int64_t not_reports_before = ingester_.summary().not_reports;
    try {
      ingester_.apply(message, name);
    } catch (const std::exception& e) {
      ++summary.failed;
      ++summary.left;
      if (summary.error.empty()) summary.error = fmt::format("{}: {}", name, e.what());
      spdlog::warn("bounces poll: {}: not applied, left in the mailbox for the next poll: {}", name,
                   e.what());
      database_down = is_database_down(e);
      continue;
    }
    if (ingester_.summary().not_reports != not_reports_before) {
      handle_not_report(uid);
      ++summary.not_reports;
      continue;
    }
    // Everything the report says is committed: now it may go.
    session_->command(fmt::format("UID STORE {} +FLAGS.SILENT (\\Deleted)", uid));
    try {
      session_->command(fmt::format("UID EXPUNGE {}", uid));
    } catch (const ImapLoginError&) {
      throw;
    } catch (const ImapError&) {
      // A server without UIDPLUS: EXPUNGE removes every \Deleted message,
      // which is what \Deleted asks for anyway.
      session_->command("EXPUNGE");
    }
    ++summary.applied;
  }
  if (!database_down) {
    try {
      ingester_.run_guard();
    } catch (const std::exception& e) {
      if (summary.error.empty()) summary.error = fmt::format("guard: {}", e.what());
      spdlog::warn("bounces poll: guard not run: {}", e.what());
    }
  }
  const IngestSummary& after = ingester_.summary();
  summary.ingest.messages = after.messages - before.messages;
  summary.ingest.not_reports = after.not_reports - before.not_reports;
  summary.ingest.hard = after.hard - before.hard;
  summary.ingest.soft = after.soft - before.soft;
  summary.ingest.complaints = after.complaints - before.complaints;
  summary.ingest.auto_replies = after.auto_replies - before.auto_replies;
  summary.ingest.delivered = after.delivered - before.delivered;
  summary.ingest.unmatched = after.unmatched - before.unmatched;
  summary.ingest.duplicates = after.duplicates - before.duplicates;
  summary.ingest.bounced = after.bounced - before.bounced;
  summary.ingest.suppressed = after.suppressed - before.suppressed;
  summary.ingest.paused = after.paused - before.paused;
  return summary;
}

void BouncePoller::run(const std::atomic<bool>& stop) {
  using clock = std::chrono::steady_clock;
  while (!stop.load()) {
    const auto started = clock::now();
    try {
      const PollSummary s = poll_once();
      if (s.found > 0 || s.failed > 0) {
        spdlog::info(
            "bounces poll: {} messages: {} applied and removed, {} not reports, {} left for "
            "the next poll",
            s.found, s.applied, s.not_reports, s.left);
      }
    } catch (const ImapLoginError&) {
      throw;
    } catch (const std::exception& e) {
      // A fresh connection next time: the old one may be what failed.
      session_ = std::make_unique<ImapSession>(settings_);
      spdlog::warn(
          "bounces poll: {}; next poll in {}s", e.what(),
          std::chrono::duration_cast<std::chrono::seconds>(config_.bounces.poll_every).count());
    }
    const auto next = started + config_.bounces.poll_every;
    while (!stop.load() && clock::now() < next) {
      std::this_thread::sleep_for(
          std::min<clock::duration>(std::chrono::milliseconds(200), next - clock::now()));
    }
  }
}

}  // namespace mailer::app
