// `mailer inbound [--listen ADDR:PORT]`: the SMTP server bounces and
// feedback-loop reports are sent to. Every message goes through the same
// BounceIngester as `mailer bounces ingest`; the reply to the final dot is
// 250 only once what it says is committed, 451 while the database is away.
// SIGTERM/SIGINT drain (see InboundServer) and exit 0.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cstdlib>
#include <functional>
#include <optional>
#include <thread>

#include "app/base/bounded_file.h"
#include "app/base/errors.h"
#include "app/base/fd_limit.h"
#include "app/base/logging.h"
#include "app/cli/bounce_poller.h"
#include "app/cli/commands.h"
#include "app/config/unsubscribe_secret.h"
#include "app/http/http_server.h"
#include "app/inbound/bounce_ingest.h"
#include "app/inbound/inbound_server.h"

namespace mailer::app {
namespace {

namespace asio = boost::asio;

// How long applying one message waits for the database to come back before
// the message is answered 451 (the sender retries it later). Well inside the
// 10 minutes RFC 5321 4.5.3.2.6 lets a client wait for that reply.
constexpr std::chrono::seconds kDatabaseWait{5};
// libpq waits for the operating system's TCP timeout on a database host that
// does not answer; unless the environment says otherwise, a connection
// attempt gives up after this many seconds.
constexpr const char* kConnectTimeoutSeconds = "5";

struct InboundOptions {
  std::string listen;
};

std::vector<std::string> accepted_domains(const Config& config) {
  std::vector<std::string> domains = config.inbound.domains;
  if (domains.empty() && !config.sender.verp_domain.empty()) {
    domains.push_back(config.sender.verp_domain);
  }
  if (domains.empty()) {
    throw UsageError(
        "[inbound] domains: not set, and no [sender] verp_domain to default to: mailer inbound "
        "would accept mail for no domain");
  }
  return domains;
}

std::shared_ptr<asio::ssl::context> tls_context(const InboundSettings& in) {
  if (in.tls_cert_file.empty()) return nullptr;
  auto tls = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                   asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                   asio::ssl::context::no_tlsv1_1);
  // Read with a size limit first, so that a path to a device or a directory
  // is refused by name instead of being read without end.
  auto read = [](const char* key, const std::string& path, std::size_t max) {
    try {
      return read_bounded_file(path, max);
    } catch (const FileReadError& e) {
      throw UsageError(fmt::format("[inbound] {}: {}", key, e.what()));
    }
  };
  const std::string chain = read("tls_cert_file", in.tls_cert_file, kMaxCertificateFileBytes);
  const std::string key = read("tls_key_file", in.tls_key_file, kMaxSecretFileBytes);
  boost::system::error_code ec;
  tls->use_certificate_chain(asio::buffer(chain), ec);
  if (ec) {
    throw UsageError(fmt::format("[inbound] tls_cert_file: {}: cannot load: {}", in.tls_cert_file,
                                 ec.message()));
  }
  tls->use_private_key(asio::buffer(key), asio::ssl::context::pem, ec);
  if (ec) {
    throw UsageError(
        fmt::format("[inbound] tls_key_file: {}: cannot load: {}", in.tls_key_file, ec.message()));
  }
  return tls;
}

// Applies one message on the applier's thread; what to answer.
SmtpDelivery apply_message(BounceIngester& ingester, const InboundMessage& m) {
  const std::string name = fmt::format("message from <{}> via {}", log_escape(m.sender), m.client);
  const IngestSummary before = ingester.summary();
  try {
    ingester.apply(m.data, name, m.recipients);
    ingester.run_guard();
  } catch (const std::exception& e) {
    spdlog::warn("inbound: {}: not applied, answered 451: {}", name,
                 log_escape(redact_secrets(e.what()), 400));
    return SmtpDelivery::kTransient;
  }
  const IngestSummary& s = ingester.summary();
  if (s.not_reports > before.not_reports) {
    spdlog::debug("inbound: {}: accepted, not a report", name);
  } else {
    spdlog::info(
        "inbound: {}: applied: hard {} soft {} complaints {} auto_replies {} delivered {} "
        "unmatched {} already applied {}",
        name, s.hard - before.hard, s.soft - before.soft, s.complaints - before.complaints,
        s.auto_replies - before.auto_replies, s.delivered - before.delivered,
        s.unmatched - before.unmatched, s.duplicates - before.duplicates);
  }
  return SmtpDelivery::kAccepted;
}

int run_inbound(Context& ctx, const InboundOptions& o) {
  const Config& config = ctx.config();
  asio::ip::tcp::endpoint endpoint;
  try {
    endpoint = parse_listen_address(o.listen.empty() ? config.inbound.listen : o.listen);
  } catch (const std::invalid_argument& e) {
    throw UsageError(
        fmt::format("{}: {}", o.listen.empty() ? "[inbound] listen" : "--listen", e.what()));
  }
  InboundServerOptions options;
  options.session.domains = accepted_domains(config);
  options.session.hostname =
      config.inbound.hostname.empty() ? config.sender.helo_name : config.inbound.hostname;
  options.session.max_message_size = static_cast<std::size_t>(config.inbound.max_message_size);
  options.command_timeout = config.inbound.command_timeout;
  options.data_timeout = config.inbound.data_timeout;
  options.max_connections = static_cast<std::size_t>(config.inbound.max_connections);
  options.tls = tls_context(config.inbound);
  std::string secret = load_unsubscribe_secret(config);
  // [bounces] imap_url: checked before listening, polled on a thread of its
  // own beside the server.
  std::optional<PollerSettings> poller_settings_opt;
  std::string poller_secret;
  if (!config.bounces.imap_url.empty()) {
    poller_settings_opt = poller_settings(config);
    poller_secret = secret;
  }

  db::DatabaseOptions db_options = ctx.database_options();
  db_options.application_name = "mailer inbound";
  db_options.reconnect_for = kDatabaseWait;
  db_options.dead_peer_timeout = kDatabaseWait;
  // A connect_timeout in the URL still wins over this default.
  setenv("PGCONNECT_TIMEOUT", kConnectTimeoutSeconds, /*overwrite=*/0);
  // Used on the applier's thread only.
  db::Database database(db_options);
  BounceIngester ingester(database, config, std::move(secret));

  asio::io_context io;
  // One thread applies messages in arrival order, so the io_context never
  // waits on PostgreSQL.
  asio::thread_pool applier(1);
  Deliver deliver = [&](InboundMessage message, DeliverDone done) {
    asio::post(applier, [&io, &ingester, message = std::move(message), done = std::move(done)] {
      const SmtpDelivery outcome = apply_message(ingester, message);
      asio::post(io, [done, outcome] { done(outcome); });
    });
  };

  std::unique_ptr<InboundServer> server;
  try {
    server = std::make_unique<InboundServer>(io, endpoint, std::move(options), deliver);
  } catch (const boost::system::system_error& e) {
    throw OperationalError(fmt::format("mailer inbound: cannot listen on {}:{}: {}",
                                       endpoint.address().to_string(), endpoint.port(),
                                       e.code().message()));
  }
  const auto bound = server->local_endpoint();
  raise_open_file_limit_for("mailer inbound",
                            static_cast<std::uint64_t>(config.inbound.max_connections) + 64);
  spdlog::info("mailer inbound: listening on {}:{} for {} (database {}{})",
               bound.address().to_string(), bound.port(), fmt::join(accepted_domains(config), ", "),
               db::describe_conninfo(db_options.url),
               config.inbound.tls_cert_file.empty() ? "" : ", STARTTLS");

  // Pollers run alongside the server: this is where the IMAP poller of
  // [bounces] imap_url starts (on a thread and Database of its own, with a
  // BounceIngester of its own) and where the drain below stops it.
  std::atomic<bool> poll_stop{false};
  std::thread poll_thread;
  if (poller_settings_opt) {
    poll_thread = std::thread([&config, &ctx, &poll_stop, &poller_secret,
                               settings = std::move(*poller_settings_opt)]() mutable {
      try {
        db::DatabaseOptions poll_db_options = ctx.database_options();
        poll_db_options.application_name = "mailer inbound (imap)";
        db::Database poll_db(poll_db_options);
        BouncePoller poller(poll_db, config, std::move(poller_secret), std::move(settings));
        spdlog::info(
            "mailer inbound: polling {} every {}s", poller.settings().mailbox.display,
            std::chrono::duration_cast<std::chrono::seconds>(config.bounces.poll_every).count());
        poller.run(poll_stop);
      } catch (const std::exception& e) {
        // The SMTP side keeps serving; the operator sees why polling stopped.
        spdlog::error("mailer inbound: IMAP polling stopped: {}", e.what());
      }
    });
  }
  struct PollJoin {
    std::atomic<bool>& stop;
    std::thread& thread;
    ~PollJoin() {
      stop = true;
      if (thread.joinable()) thread.join();
    }
  } poll_join{poll_stop, poll_thread};

  asio::steady_timer drain_deadline(io);
  asio::signal_set signals(io, SIGINT, SIGTERM);
  bool draining = false;
  std::function<void(boost::system::error_code, int)> on_signal = [&](boost::system::error_code ec,
                                                                      int) {
    if (ec) return;
    if (draining) {
      spdlog::warn("mailer inbound: second signal, stopping now");
      server->close_all();
      io.stop();
      return;
    }
    draining = true;
    spdlog::info("mailer inbound: draining ({} connections, up to {} ms)",
                 server->active_connections(), config.inbound.drain_timeout.count());
    server->shutdown([&] {
      drain_deadline.cancel();
      signals.cancel();
      io.stop();
    });
    drain_deadline.expires_after(config.inbound.drain_timeout);
    drain_deadline.async_wait([&](boost::system::error_code wait_ec) {
      if (wait_ec) return;
      spdlog::warn("mailer inbound: drain_timeout passed with {} connections; closing them",
                   server->active_connections());
      server->close_all();
      io.stop();
    });
    signals.async_wait(on_signal);
  };
  signals.async_wait(on_signal);
  io.run();
  applier.join();

  const InboundCounters& c = server->counters();
  spdlog::info(
      "mailer inbound: stopped: {} connections ({} refused), {} messages accepted, {} answered "
      "451, {} timed out",
      c.connections, c.refused_connections, c.messages, c.deferred, c.timed_out);
  server.reset();
  return kExitOk;
}

}  // namespace

void register_inbound(CLI::App& root, Context& ctx, Action& action) {
  auto o = std::make_shared<InboundOptions>();
  CLI::App* sub = root.add_subcommand(
      "inbound",
      "SMTP server for bounce and feedback-loop reports to [inbound] domains: applies each "
      "report before answering 250 (451 while the database is away); SIGTERM/SIGINT drain "
      "and exit 0");
  sub->add_option("--listen", o->listen,
                  "ADDR:PORT to listen on (default [inbound] listen, 0.0.0.0:25; port 0 picks a "
                  "free one)");
  sub->callback([o, &ctx, &action] { action = [o, &ctx] { return run_inbound(ctx, *o); }; });
}

}  // namespace mailer::app
