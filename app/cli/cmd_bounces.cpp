// `mailer bounces parse [--json] FILE...` (no database) and
// `mailer bounces ingest [FILE|DIR|-]`: read bounce, complaint and
// auto-reply messages; ingest applies them (see bounce_ingest.h).
// `mailer bounces poll [--once]` polls [bounces] imap_url (bounce_poller.h).
#include <fmt/format.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <vector>

#include "app/base/bounded_file.h"
#include "app/base/errors.h"
#include "app/cli/bounce_poller.h"
#include "app/cli/commands.h"
#include "app/config/unsubscribe_secret.h"
#include "app/inbound/bounce_ingest.h"
#include "lists/bounce_parser.h"

namespace mailer::app {
namespace {

struct BouncesOptions {
  std::vector<std::string> files;
  std::string source = "-";
  bool json = false;
  bool once = false;
};

std::atomic<bool> g_poll_stop{false};

extern "C" void request_poll_stop(int) {
  g_poll_stop.store(true);
}

// One message on stdin, at most `max_bytes`.
std::string read_stdin(std::size_t max_bytes) {
  std::string text;
  char buf[65536];
  while (std::cin.read(buf, sizeof buf) || std::cin.gcount() > 0) {
    text.append(buf, static_cast<std::size_t>(std::cin.gcount()));
    if (text.size() > max_bytes) {
      throw UsageError(
          fmt::format("-: standard input: larger than {} bytes "
                      "([bounces] max_message_bytes)",
                      max_bytes));
    }
  }
  return text;
}

int run_parse(Context& ctx, const BouncesOptions& o) {
  const auto max = static_cast<std::size_t>(ctx.config().bounces.max_message_bytes);
  lists::BounceParserLimits limits;
  limits.max_message_bytes = max;
  int rc = kExitOk;
  for (const std::string& file : o.files) {
    std::string text;
    try {
      text = read_bounded_file(file, max);
    } catch (const FileReadError& e) {
      std::cerr << "mailer bounces parse: " << e.what() << '\n';
      rc = kExitUsage;
      continue;
    }
    const lists::BounceReport report = lists::parse_bounce(text, limits);
    const std::vector<lists::BounceRecipient> recipients = report_recipients(report);
    if (recipients.empty()) {
      if (o.json) {
        std::cout << nlohmann::json{{"file", file}, {"kind", "not_a_report"}}.dump() << '\n';
      } else {
        std::cout << fmt::format("{}: not a report\n", file);
      }
      continue;
    }
    for (const lists::BounceRecipient& r : recipients) {
      if (o.json) {
        const nlohmann::json line = {{"file", file},
                                     {"recipient", r.address},
                                     {"kind", lists::to_string(r.kind)},
                                     {"status", r.status},
                                     {"diagnostic", r.diagnostic},
                                     {"format", lists::to_string(report.format)}};
        std::cout << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
      } else {
        std::cout << fmt::format("{}: {} {} {} {}\n", file, r.address, lists::to_string(r.kind),
                                 r.status.empty() ? "-" : r.status, r.diagnostic);
      }
    }
  }
  std::cout.flush();
  return rc;
}

// The message files of a maildir (new/ and cur/), in name order.
std::vector<std::string> maildir_files(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::vector<std::string> files;
  bool any = false;
  for (const char* sub : {"new", "cur"}) {
    std::error_code ec;
    if (!fs::is_directory(dir / sub, ec)) continue;
    any = true;
    std::vector<std::string> here;
    for (fs::directory_iterator it(dir / sub, ec), end; !ec && it != end; it.increment(ec)) {
      if (it->is_regular_file(ec)) here.push_back(it->path().string());
    }
    if (ec) throw UsageError(fmt::format("{}: {}", (dir / sub).string(), ec.message()));
    std::sort(here.begin(), here.end());
    files.insert(files.end(), here.begin(), here.end());
  }
  if (!any) {
    throw UsageError(
        fmt::format("{}: a directory but not a maildir (no new/ or cur/)", dir.string()));
  }
  return files;
}

int run_ingest(Context& ctx, const BouncesOptions& o) {
  const Config& config = ctx.config();
  const auto max = static_cast<std::size_t>(config.bounces.max_message_bytes);
  std::string secret = load_unsubscribe_secret(config);

  // Everything readable is checked before anything is applied.
  std::vector<std::string> files;
  std::string stdin_text;
  std::error_code ec;
  if (o.source == "-") {
    stdin_text = read_stdin(max);
  } else if (std::filesystem::is_directory(o.source, ec)) {
    files = maildir_files(o.source);
  } else {
    files.push_back(o.source);
  }

  BounceIngester ingester(ctx.database(), config, std::move(secret));
  int rc = kExitOk;
  if (o.source == "-") {
    ingester.apply(stdin_text, "-");
  } else {
    for (const std::string& file : files) {
      std::string text;
      try {
        text = read_bounded_file(file, max);
      } catch (const FileReadError& e) {
        std::cerr << "mailer bounces ingest: " << e.what() << '\n';
        rc = kExitUsage;
        continue;
      }
      ingester.apply(text, file);
    }
  }
  ingester.run_guard();

  const IngestSummary& s = ingester.summary();
  if (o.json) {
    print_json({{"messages", s.messages},
                {"not_reports", s.not_reports},
                {"hard", s.hard},
                {"soft", s.soft},
                {"complaints", s.complaints},
                {"auto_replies", s.auto_replies},
                {"delivered", s.delivered},
                {"unmatched", s.unmatched},
                {"duplicates", s.duplicates},
                {"bounced", s.bounced},
                {"suppressed", s.suppressed},
                {"paused", s.paused}});
  } else {
    std::cout << fmt::format(
        "{} messages ({} not reports): hard {} soft {} complaints {} auto_replies {} "
        "delivered {} unmatched {} already applied {}; {} deliveries bounced, {} addresses "
        "suppressed, {} campaigns paused\n",
        s.messages, s.not_reports, s.hard, s.soft, s.complaints, s.auto_replies, s.delivered,
        s.unmatched, s.duplicates, s.bounced, s.suppressed, s.paused);
  }
  return rc;
}

nlohmann::json poll_json(const PollSummary& p) {
  const IngestSummary& s = p.ingest;
  return {
      {"found", p.found},         {"applied", p.applied},       {"not_reports", p.not_reports},
      {"left", p.left},           {"failed", p.failed},         {"hard", s.hard},
      {"soft", s.soft},           {"complaints", s.complaints}, {"auto_replies", s.auto_replies},
      {"delivered", s.delivered}, {"unmatched", s.unmatched},   {"duplicates", s.duplicates},
      {"bounced", s.bounced},     {"suppressed", s.suppressed}, {"paused", s.paused}};
}

int run_poll(Context& ctx, const BouncesOptions& o) {
  const Config& config = ctx.config();
  // Everything the configuration says is checked before connecting.
  PollerSettings settings = poller_settings(config);
  std::string secret = load_unsubscribe_secret(config);
  BouncePoller poller(ctx.database(), config, std::move(secret), std::move(settings));
  if (!o.once) {
    struct sigaction sa {};
    sa.sa_handler = request_poll_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    spdlog::info(
        "bounces poll: polling {} every {}s until SIGTERM", poller.settings().mailbox.display,
        std::chrono::duration_cast<std::chrono::seconds>(config.bounces.poll_every).count());
    try {
      poller.run(g_poll_stop);
    } catch (const ImapLoginError& e) {
      std::cerr << "mailer bounces poll: " << e.what() << '\n';
      return kExitOperational;
    }
    return kExitOk;
  }
  PollSummary p;
  try {
    p = poller.poll_once();
  } catch (const ImapError& e) {
    std::cerr << "mailer bounces poll: " << e.what() << '\n';
    return kExitOperational;
  }
  if (o.json) {
    print_json(poll_json(p));
  } else {
    const IngestSummary& s = p.ingest;
    std::cout << fmt::format(
        "{} messages: {} applied and removed, {} not reports, {} left for the next poll; "
        "hard {} soft {} complaints {} auto_replies {} delivered {} unmatched {} already "
        "applied {}; {} deliveries bounced, {} addresses suppressed, {} campaigns paused\n",
        p.found, p.applied, p.not_reports, p.left, s.hard, s.soft, s.complaints, s.auto_replies,
        s.delivered, s.unmatched, s.duplicates, s.bounced, s.suppressed, s.paused);
  }
  if (p.failed > 0 || !p.error.empty()) {
    std::cerr << "mailer bounces poll: " << p.error << '\n';
    return kExitOperational;
  }
  return kExitOk;
}

}  // namespace

void register_bounces(CLI::App& root, Context& ctx, Action& action) {
  auto opts = std::make_shared<BouncesOptions>();
  CLI::App* bounces =
      root.add_subcommand("bounces", "parse bounce, complaint and auto-reply reports; apply them");
  bounces->require_subcommand(1);

  CLI::App* parse = bounces->add_subcommand(
      "parse",
      "read bounce (DSN and common MTA formats), ARF complaint and auto-reply messages; "
      "no database");
  parse->add_option("files", opts->files, "message files")->required();
  parse->add_flag("--json", opts->json, "one JSON object a line per (file, recipient)");
  parse->callback(
      [opts, &ctx, &action] { action = [opts, &ctx] { return run_parse(ctx, *opts); }; });

  CLI::App* ingest = bounces->add_subcommand(
      "ingest",
      "apply messages from a file, a maildir (new/ and cur/), or one message on stdin "
      "(-, the default; a Postfix pipe transport)");
  ingest->add_option("source", opts->source, "FILE, DIR or - (standard input)");
  ingest->add_flag("--json", opts->json, "print the summary as one JSON object");
  ingest->callback(
      [opts, &ctx, &action] { action = [opts, &ctx] { return run_ingest(ctx, *opts); }; });

  CLI::App* poll = bounces->add_subcommand(
      "poll",
      "poll [bounces] imap_url every poll_every and apply what it finds; a report leaves the "
      "mailbox once applied, a failed one stays for the next poll, a message that is no report "
      "moves to imap_not_report_folder; SIGTERM/SIGINT stop it");
  poll->add_flag("--once", opts->once, "poll once and exit (1 when anything was left unapplied)");
  poll->add_flag("--json", opts->json, "with --once: print the summary as one JSON object");
  poll->callback([opts, &ctx, &action] { action = [opts, &ctx] { return run_poll(ctx, *opts); }; });
}

}  // namespace mailer::app
