// `mailer import --list NAME FILE [--mx-check] [--rejects FILE]
// [--delimiter C] [--json]`: list-hygiene import of a CSV file into a list
// (see lists/list_importer.h for what happens to each row).
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "app/base/bounded_file.h"
#include "app/base/errors.h"
#include "app/cli/commands.h"
#include "app/cli/import_mx_lookup.h"
#include "app/db/list_import_store.h"
#include "lists/list_importer.h"

namespace mailer::app {
namespace {

// How often the terminal progress line is redrawn, and how often a progress
// log line is written when stderr is not a terminal.
constexpr auto kTerminalRefresh = std::chrono::milliseconds(250);
constexpr auto kLogEvery = std::chrono::seconds(5);

struct ImportCliOptions {
  std::string list;
  std::string file;
  bool mx_check = false;
  std::string rejects;
  std::string delimiter = ",";
  bool json = false;
};

std::string read_table(const std::string& path, const char* what) {
  try {
    return read_bounded_file(path, kMaxTableFileBytes);
  } catch (const FileReadError& e) {
    throw UsageError(fmt::format("{}: cannot read {} file: {}", path, what, e.reason()));
  }
}

lists::HygieneSources hygiene_sources(const ImportSettings& s) {
  lists::HygieneSources h = lists::builtin_hygiene_sources();
  if (!s.role_accounts_file.empty())
    h.role_accounts = read_table(s.role_accounts_file, "role accounts");
  if (!s.disposable_domains_file.empty()) {
    h.disposable_domains = read_table(s.disposable_domains_file, "disposable domains");
  }
  if (!s.typo_domains_file.empty())
    h.typo_domains = read_table(s.typo_domains_file, "typo domains");
  std::stringstream extra(s.extra_role_accounts);
  for (std::string item; std::getline(extra, item, ',');) {
    std::string_view t = lists::trim_blanks(item);
    if (!t.empty()) h.extra_role_accounts.emplace_back(t);
  }
  h.reject_role_accounts = s.reject_role_accounts;
  h.reject_disposable = s.reject_disposable;
  h.reject_typos = s.reject_typos;
  return h;
}

char parse_delimiter(const std::string& d) {
  if (d == "\\t" || d == "tab" || d == "\t") return '\t';
  if (d.size() != 1 || d == "\"" || d == "\n" || d == "\r") {
    throw UsageError(fmt::format(
        "import: --delimiter \"{}\": expected one character other than a quote or newline "
        "(\"tab\" for a tab)",
        d));
  }
  return d[0];
}

// The rejects file is truncated (or appended to, on resume) while the input
// is read: refuse a rejects path that names the input itself, under any name
// (the same path, a symlink to it, a hard link). Paths that do not exist yet
// cannot be the input.
void refuse_rejects_over_input(const std::string& input, const std::string& rejects) {
  struct stat in {};
  struct stat out {};
  if (rejects.empty() || ::stat(input.c_str(), &in) != 0 || ::stat(rejects.c_str(), &out) != 0) {
    return;
  }
  if (in.st_dev == out.st_dev && in.st_ino == out.st_ino) {
    throw UsageError(fmt::format(
        "import: --rejects {}: is the input file {}; writing rejects there would destroy it",
        rejects, input));
  }
}

// Progress on stderr: an in-place line on a terminal, a log line every few
// seconds otherwise.
class ProgressReporter {
 public:
  ProgressReporter() : tty_(::isatty(STDERR_FILENO) == 1), start_(Clock::now()), last_(start_) {}

  void operator()(const lists::ImportProgress& p) {
    auto now = Clock::now();
    if (!base_) {
      // Rates count from the first report: a resumed import starts mid-file.
      base_ = std::make_pair(p.rows, p.bytes);
      start_ = now;
      return;
    }
    if (now - last_ < (tty_ ? kTerminalRefresh : kLogEvery)) return;
    last_ = now;
    double secs = std::chrono::duration<double>(now - start_).count();
    double rate = secs > 0 ? static_cast<double>(p.rows - base_->first) / secs : 0;
    double fraction = p.total_bytes > 0 ? static_cast<double>(p.bytes) / p.total_bytes : 1;
    double done = static_cast<double>(p.bytes - base_->second);
    double eta = done > 0 ? secs * (static_cast<double>(p.total_bytes - p.bytes) / done) : 0;
    std::string line = fmt::format("{} rows, {:.0f} rows/s, {:.1f}% of bytes, ETA {:.0f}s", p.rows,
                                   rate, fraction * 100, eta);
    if (tty_) {
      std::cerr << "\r\033[K" << line << std::flush;
      drawn_ = true;
    } else {
      spdlog::info("import: {}", line);
    }
  }

  void finish() {
    if (drawn_) std::cerr << "\r\033[K" << std::flush;
  }

 private:
  using Clock = std::chrono::steady_clock;

  bool tty_;
  Clock::time_point start_;
  Clock::time_point last_;
  bool drawn_ = false;
  std::optional<std::pair<std::uint64_t, std::uint64_t>> base_;
};

int run_import(Context& ctx, const ImportCliOptions& o) {
  const ImportSettings& s = ctx.config().imports;
  std::unique_ptr<lists::HygieneRules> rules;
  try {
    rules = std::make_unique<lists::HygieneRules>(hygiene_sources(s));
  } catch (const std::invalid_argument& e) {
    throw UsageError(fmt::format("{}: [import] tables: {}", ctx.config().source, e.what()));
  }
  refuse_rejects_over_input(o.file, o.rejects);
  throttle::ProviderClassifier classifier(ctx.config().throttle.provider_rules);
  lists::ImportOptions options;
  options.list_name = o.list;
  options.file = o.file;
  options.rejects_file = o.rejects;
  options.csv.delimiter = parse_delimiter(o.delimiter);
  options.csv.max_field_bytes = static_cast<std::size_t>(s.max_field_bytes);
  options.mx_check = o.mx_check;
  std::unique_ptr<ImportMxLookup> mx_lookup;
  if (o.mx_check) {
    sender::DnsResolverOptions dns;
    dns.dns_server = s.dns_server;
    dns.timeout = s.mx_timeout;
    try {
      mx_lookup = std::make_unique<ImportMxLookup>(dns);
    } catch (const std::exception& e) {
      throw UsageError(fmt::format("import: MX check: {}", e.what()));
    }
    options.mx_lookup = mx_lookup.get();
  }
  options.mx.concurrency = static_cast<std::size_t>(s.mx_concurrency);
  options.mx_cache_ttl_floor = std::chrono::duration_cast<std::chrono::seconds>(s.mx_cache_ttl_min);
  options.chunk_rows = static_cast<std::size_t>(s.chunk_rows);

  ProgressReporter progress;
  db::ListImportStore store(ctx.database());
  lists::ListImporter importer(store, *rules, classifier, options);
  lists::ImportCounts counts;
  try {
    counts = importer.run([&](const lists::ImportProgress& p) { progress(p); });
  } catch (const lists::ImportInputError& e) {
    progress.finish();
    throw UsageError(fmt::format("import: {}", e.what()));
  }
  progress.finish();
  if (o.json) {
    print_json(counts.to_json());
    return kExitOk;
  }
  std::string rejected;
  for (const auto& [reason, n] : counts.rejected) {
    if (n > 0) rejected += fmt::format(" {} {},", reason, n);
  }
  if (!rejected.empty()) rejected.pop_back();
  std::cout << fmt::format(
      "{}: {} rows: {} imported, {} updated, {} duplicates, {} suppressed, {} rejected{}\n", o.file,
      counts.rows, counts.imported, counts.updated, counts.duplicates, counts.suppressed,
      counts.rejected_total(), rejected.empty() ? "" : " (" + rejected.substr(1) + ")");
  if (counts.mx_unverified > 0) {
    std::cout << fmt::format("{} rows kept although their MX lookup failed temporarily\n",
                             counts.mx_unverified);
  }
  return kExitOk;
}

}  // namespace

void register_import(CLI::App& root, Context& ctx, Action& action) {
  auto o = std::make_shared<ImportCliOptions>();
  CLI::App* sub = root.add_subcommand(
      "import",
      "list-hygiene import of a CSV file with an email column into a list; every other column "
      "becomes a recipient attribute. Running it again on an interrupted import resumes it.");
  sub->add_option("--list", o->list, "the list to add recipients to (see `mailer lists create`)")
      ->required();
  sub->add_option("FILE", o->file, "CSV file (RFC 4180, UTF-8, header row)")->required();
  sub->add_flag("--mx-check", o->mx_check,
                "reject addresses whose domain has no mail host (null MX, NXDOMAIN, no address)");
  sub->add_option("--rejects", o->rejects,
                  "write rejected, duplicate and suppressed rows here as CSV "
                  "(line,reason,detail,email)");
  sub->add_option("--delimiter", o->delimiter, "field delimiter (one character, or \"tab\")")
      ->capture_default_str();
  sub->add_flag("--json", o->json, "print one JSON object on stdout");
  sub->callback([&ctx, &action, o] { action = [&ctx, o] { return run_import(ctx, *o); }; });
}

}  // namespace mailer::app
