// `mailer sink --listen ADDR:PORT [--profile gmail|yahoo|outlook|generic]
// [--capacity N] [--latency DUR] [--maildir DIR] [--tls-cert FILE --tls-key FILE]
// [--json]` plus fault
// injection flags: the rehearsal SMTP server. Runs until SIGINT/SIGTERM,
// prints counters to stderr every few seconds and at the end (with --json,
// one JSON object on stdout at the end).
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <iostream>

#include "app/base/duration.h"
#include "app/base/errors.h"
#include "app/base/fd_limit.h"
#include "app/cli/commands.h"
#include "sender/smtp_sink.h"
#include "throttle/duration.h"

namespace mailer::app {
namespace {

namespace asio = boost::asio;

struct SinkCommandOptions {
  std::string listen;
  std::string profile = "generic";
  double capacity = 0;
  std::string latency = "0ms";
  std::string maildir;
  bool json = false;
  std::string report_every = "5s";
  std::string idle_timeout = "60s";
  std::string penalty_box;
  std::size_t max_size = 35 * 1024 * 1024;
  std::string hostname = "mailer-sink";
  std::string fail_rcpt_matching;
  std::uint64_t drop_mid_data_every = 0;
  std::string stall_after;
  bool greeting_421 = false;
  std::string tls_cert;
  std::string tls_key;
};

Duration duration_option(const std::string& flag, const std::string& text) {
  auto d = throttle::parse_duration(text);
  if (!d) throw UsageError(flag + ": not a duration (like 500ms, 30s, 5m): \"" + text + "\"");
  return std::chrono::duration_cast<Duration>(*d);
}

// "127.0.0.1:2525", "[::1]:2525", ":2525" (all IPv4 interfaces).
asio::ip::tcp::endpoint listen_endpoint(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos)
    throw UsageError("--listen: expected ADDR:PORT, got \"" + text + "\"");
  std::string host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host.empty()) host = "0.0.0.0";
  boost::system::error_code ec;
  auto address = asio::ip::make_address(host, ec);
  if (ec) throw UsageError("--listen: not an IP address: \"" + host + "\"");
  unsigned long port = 0;
  try {
    std::size_t used = 0;
    port = std::stoul(text.substr(colon + 1), &used);
    if (used != text.size() - colon - 1 || port > 65535) throw std::out_of_range("port");
  } catch (const std::exception&) {
    throw UsageError("--listen: bad port in \"" + text + "\"");
  }
  return {address, static_cast<unsigned short>(port)};
}

sender::SinkOptions sink_options(const SinkCommandOptions& o) {
  sender::SinkOptions s;
  auto profile = sender::sink_profile(o.profile);
  if (!profile) throw UsageError("--profile: unknown profile \"" + o.profile + "\"");
  s.profile = *profile;
  if (!o.penalty_box.empty()) {
    if (!s.profile.penalty_for)
      throw UsageError("--penalty-box: profile " + o.profile + " has no penalty box");
    s.profile.penalty_for = duration_option("--penalty-box", o.penalty_box);
  }
  if (o.capacity < 0) throw UsageError("--capacity: must be 0 (no limit) or more");
  s.capacity = o.capacity;
  s.latency = duration_option("--latency", o.latency);
  s.idle_timeout = duration_option("--idle-timeout", o.idle_timeout);
  if (!o.maildir.empty()) s.maildir = o.maildir;
  s.max_message_size = o.max_size;
  s.hostname = o.hostname;
  if (!o.fail_rcpt_matching.empty()) {
    try {
      s.fail_rcpt_matching =
          std::regex(o.fail_rcpt_matching, std::regex::ECMAScript | std::regex::icase);
    } catch (const std::regex_error& e) {
      throw UsageError("--fail-rcpt-matching: bad regular expression: " + std::string(e.what()));
    }
  }
  s.drop_mid_data_every = o.drop_mid_data_every;
  if (!o.stall_after.empty()) {
    s.stall_after = sender::parse_sink_stage(o.stall_after);
    if (!s.stall_after) {
      throw UsageError("--stall-after: expected greeting, helo, mail, rcpt, data or dot, got \"" +
                       o.stall_after + "\"");
    }
  }
  s.greeting_421 = o.greeting_421;
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    throw UsageError(o.tls_cert.empty() ? "--tls-key: needs --tls-cert as well"
                                        : "--tls-cert: needs --tls-key as well");
  }
  if (!o.tls_cert.empty()) {
    try {
      s.tls = sender::sink_tls_context(o.tls_cert, o.tls_key);
    } catch (const std::exception& e) {
      throw UsageError("--tls-cert/--tls-key: " + std::string(e.what()));
    }
  }
  return s;
}

int run_sink(const SinkCommandOptions& o) {
  auto endpoint = listen_endpoint(o.listen);
  auto options = sink_options(o);
  raise_open_file_limit_for("mailer sink", 0);
  auto report_every = duration_option("--report-every", o.report_every);
  asio::io_context io;
  std::unique_ptr<sender::SmtpSink> sink;
  try {
    sink = std::make_unique<sender::SmtpSink>(io, endpoint, std::move(options));
  } catch (const boost::system::system_error& e) {
    throw OperationalError("mailer sink: cannot listen on " + o.listen + ": " + e.what());
  } catch (const std::filesystem::filesystem_error& e) {
    throw OperationalError("mailer sink: maildir: " + std::string(e.what()));
  }
  auto bound = sink->local_endpoint();
  std::cerr << "mailer sink: listening on " << bound.address().to_string() << ":" << bound.port()
            << " profile=" << o.profile << " capacity=" << o.capacity
            << (o.tls_cert.empty() ? "" : " starttls=on") << std::endl;

  asio::steady_timer report(io);
  std::function<void()> schedule = [&] {
    if (report_every.count() <= 0) return;
    report.expires_after(report_every);
    report.async_wait([&](boost::system::error_code ec) {
      if (ec) return;
      std::cerr << "mailer sink: " << sender::to_text(sink->counters()) << std::endl;
      schedule();
    });
  };
  schedule();

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code, int) {
    sink->stop();
    report.cancel();
    io.stop();
  });
  io.run();

  std::cerr << "mailer sink: " << sender::to_text(sink->counters()) << std::endl;
  if (o.json) std::cout << sender::to_json(sink->counters()) << std::endl;
  return kExitOk;
}

}  // namespace

void register_sink(CLI::App& root, Context&, Action& action) {
  auto o = std::make_shared<SinkCommandOptions>();
  CLI::App* sub = root.add_subcommand(
      "sink", "rehearsal SMTP server with provider-like throttling (runs until SIGINT/SIGTERM)");
  sub->add_option("--listen", o->listen, "ADDR:PORT to listen on (port 0 picks a free one)")
      ->required();
  sub->add_option("--profile", o->profile, "provider whose deferrals to imitate")
      ->check(CLI::IsMember({"gmail", "yahoo", "outlook", "generic"}))
      ->capture_default_str();
  sub->add_option("--capacity", o->capacity, "messages/s accepted before deferring (0 = no limit)")
      ->capture_default_str();
  sub->add_option("--latency", o->latency, "delay before the reply to the final dot")
      ->capture_default_str();
  sub->add_option("--maildir", o->maildir, "store accepted messages in this maildir");
  sub->add_option(
      "--tls-cert", o->tls_cert,
      "PEM certificate chain: advertise STARTTLS and upgrade with it (needs --tls-key)");
  sub->add_option("--tls-key", o->tls_key, "PEM private key of --tls-cert");
  sub->add_flag("--json", o->json, "print the final counters as one JSON object on stdout");
  sub->add_option("--report-every", o->report_every,
                  "counter report interval on stderr (0ms = off)")
      ->capture_default_str();
  sub->add_option("--idle-timeout", o->idle_timeout, "drop a client silent for this long")
      ->capture_default_str();
  sub->add_option("--penalty-box", o->penalty_box, "how long a yahoo penalty lasts (default 60s)");
  sub->add_option("--max-size", o->max_size, "largest message accepted, in bytes (SIZE)")
      ->capture_default_str();
  sub->add_option("--hostname", o->hostname, "name in the greeting and EHLO reply")
      ->capture_default_str();
  sub->add_option("--fail-rcpt-matching", o->fail_rcpt_matching,
                  "answer RCPT addresses matching this regex with 550 5.1.1");
  sub->add_option("--drop-mid-data-every", o->drop_mid_data_every,
                  "close the connection in the middle of every Nth message");
  sub->add_option("--stall-after", o->stall_after,
                  "stop answering at greeting|helo|mail|rcpt|data|dot");
  sub->add_flag("--greeting-421", o->greeting_421,
                "refuse every connection with the profile's 421 greeting");
  sub->callback([&action, o] { action = [o] { return run_sink(*o); }; });
}

}  // namespace mailer::app
