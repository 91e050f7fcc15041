#include "app/worker/dispatcher_setup.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ssl/context.hpp>
#include <cstdlib>

#include "app/base/bounded_file.h"
#include "app/base/errors.h"
#include "app/config/unsubscribe_secret.h"
#include "sender/dkim_signer.h"

namespace mailer::app {
namespace {

std::chrono::milliseconds ms(Duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d);
}

// The relay password: $MAILER_SMTP_PASSWORD, else the file's first line.
std::optional<sender::SmtpLogin> relay_credentials(const Config& config) {
  const SenderSettings& s = config.sender;
  if (s.auth_user.empty()) return std::nullopt;
  sender::SmtpLogin c;
  c.user = s.auth_user;
  if (const char* env = std::getenv("MAILER_SMTP_PASSWORD"); env != nullptr && *env != '\0') {
    c.password = env;
  } else if (!s.auth_password_file.empty()) {
    c.password = read_configured_file(config.source, "sender.auth_password_file",
                                      s.auth_password_file, kMaxSecretFileBytes);
    c.password.resize(std::min(c.password.find('\n'), c.password.size()));
    if (!c.password.empty() && c.password.back() == '\r') c.password.pop_back();
  } else {
    throw UsageError(fmt::format(
        "{}: key \"sender.auth_user\" is set but no password: set sender.auth_password_file or "
        "$MAILER_SMTP_PASSWORD",
        config.source));
  }
  return c;
}

}  // namespace

sender::DispatcherSettings dispatcher_settings(const Config& config) {
  const SenderSettings& s = config.sender;
  sender::DispatcherSettings d;
  d.egress = s.egress;
  d.helo_name = s.helo_name;
  d.source_address = s.source_address;
  d.default_route = s.default_route;
  d.routes = config.routes;
  d.starttls = s.starttls == "required" ? sender::StartTls::kRequired
               : s.starttls == "none"   ? sender::StartTls::kNone
                                        : sender::StartTls::kOpportunistic;
  d.verify_peer = s.verify_certificates;
  if (!s.ca_file.empty()) {
    d.ca_pem =
        read_configured_file(config.source, "sender.ca_file", s.ca_file, kMaxCertificateFileBytes);
    // Refused here, with the key named, rather than on the sending thread.
    boost::asio::ssl::context probe(boost::asio::ssl::context::tls_client);
    boost::system::error_code ec;
    probe.add_certificate_authority(boost::asio::buffer(d.ca_pem), ec);
    if (ec) {
      throw UsageError(
          fmt::format("{}: key \"sender.ca_file\": {}: not a PEM certificate bundle ({})",
                      config.source, s.ca_file, ec.message()));
    }
  }
  d.relay_auth = relay_credentials(config);
  // Connection set-up steps under connect_timeout, each reply under
  // reply_timeout, the reply to the end of DATA under transaction_timeout.
  const auto setup = ms(s.connect_timeout);
  const auto reply = ms(s.reply_timeout);
  d.timeouts.connect = d.timeouts.greeting = d.timeouts.ehlo = d.timeouts.tls = d.timeouts.auth =
      setup;
  d.timeouts.mail = d.timeouts.rcpt = d.timeouts.data_initiation = d.timeouts.data_block =
      d.timeouts.rset = d.timeouts.quit = reply;
  d.timeouts.data_termination = std::max(reply, ms(s.transaction_timeout));
  d.messages_per_connection = static_cast<std::size_t>(s.messages_per_connection);
  d.idle_timeout = ms(s.idle_timeout);
  d.mx.dns_server = s.dns_server;
  d.mx_port = static_cast<unsigned short>(s.mx_port);
  d.policies = config.throttle.providers;
  d.retry = throttle::RetrySchedule(config.throttle.retry, config.throttle.retry_by_signal);
  d.reply_rules = config.throttle.reply_rules;
  d.lookahead = ms(s.lookahead);
  d.history_interval = ms(s.history_interval);

  d.secret = load_unsubscribe_secret(config);
  d.composer.tokens = std::make_shared<const sender::UnsubscribeTokenCodec>(d.secret);
  d.composer.unsubscribe_base_url = config.unsubscribe.base_url.empty()
                                        ? "http://" + config.http.listen
                                        : config.unsubscribe.base_url;
  if (!config.unsubscribe.mailto.empty()) d.composer.unsubscribe_mailto = config.unsubscribe.mailto;
  d.composer.feedback_sender_id = s.feedback_id;
  d.composer.message_id_domain = s.message_id_domain;
  d.verp_domain = s.verp_domain;

  for (std::size_t i = 0; i < config.dkim.size(); ++i) {
    const DkimSettings& k = config.dkim[i];
    const auto algorithm = sender::ParseDkimAlgorithm(k.algorithm);
    const std::string key = fmt::format("dkim[{}].key_file", i);
    const std::string pem =
        read_configured_file(config.source, key, k.key_file, kMaxSecretFileBytes);
    try {
      d.dkim.push_back(sender::DkimSigner::FromPem(k.domain, k.selector, *algorithm, pem,
                                                   fmt::format("DKIM key file {}", k.key_file)));
    } catch (const std::exception& e) {
      throw UsageError(fmt::format("{}: [[dkim]] #{} (key_file {}): {}", config.source, i + 1,
                                   k.key_file, e.what()));
    }
  }
  return d;
}

}  // namespace mailer::app
