// mailer's configuration: the TOML file of the CLI contract, its lookup order
// (--config, $MAILER_CONFIG, ./mailer.toml, built-in defaults), environment
// overrides, and the documented default of every key.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "app/base/duration.h"
#include "app/config/config_throttle.h"

namespace mailer::app {

// [database]
struct DatabaseSettings {
  // libpq URL or key=value string. Empty: the private cluster of
  // deploy/pg-local.sh, when it runs. $MAILER_DATABASE_URL overrides.
  std::string url;
  // First and longest wait between reconnection attempts when the server is gone.
  Duration reconnect_min = std::chrono::milliseconds(200);
  Duration reconnect_max = std::chrono::seconds(10);
  // How long one piece of work keeps reconnecting before it fails (a command
  // exits 1; `bounces poll` leaves the message for its next poll).
  Duration reconnect_for = std::chrono::seconds(60);
};

// [sender]
struct SenderSettings {
  // Name this worker announces in EHLO.
  std::string helo_name = "localhost";
  // Name of this worker's sending IP or pool; part of the throttle key.
  std::string egress = "default";
  // Local IP address SMTP connections are made from (one of this host's);
  // empty: the system's choice. One worker per sending IP sets both.
  std::string source_address;
  // "mx" delivers to the recipient domain's MX; or "smtp://host:port".
  std::string default_route = "mx";
  // STARTTLS on plain smtp:// routes: "opportunistic" (when offered),
  // "required" (fail the send without it) or "none".
  std::string starttls = "opportunistic";
  // Verify server certificates and host names when TLS is used.
  bool verify_certificates = true;
  // PEM file of certificate authorities trusted in addition to the system's
  // (a private relay's CA, a rehearsal sink's test CA); empty: the system's only.
  std::string ca_file;
  // SMTP AUTH for relay routes (smtp:// or smtps:// URLs, never "mx"). The
  // password comes from auth_password_file or $MAILER_SMTP_PASSWORD, never
  // from this file itself, and is never logged.
  std::string auth_user;
  std::string auth_password_file;
  // Return-path domain of VERP bounces (bounce+ID-TAG@verp_domain); empty:
  // the campaign's From domain.
  std::string verp_domain;
  // Last field of Feedback-ID (identifies this platform to feedback loops).
  std::string feedback_id = "mailer";
  // Right-hand side of Message-IDs; empty: the campaign's From domain.
  std::string message_id_domain;
  // Time limits: connection set-up (connect, greeting, EHLO, STARTTLS,
  // AUTH), any one reply, and a whole transaction.
  Duration connect_timeout = std::chrono::seconds(30);
  Duration reply_timeout = std::chrono::seconds(60);
  Duration transaction_timeout = std::chrono::minutes(5);
  // Messages one connection carries before it is closed and a fresh one
  // opened, and how long an unused connection stays open.
  int messages_per_connection = 100;
  Duration idle_timeout = std::chrono::seconds(10);
  // DNS server for MX lookups as "host:port"; empty: /etc/resolv.conf.
  std::string dns_server;
  // SMTP port of MX hosts: 25 (a rehearsal may point it at a local sink).
  int mx_port = 25;
  // Deliveries claimed ahead of sending, as sending time at the current rate.
  Duration lookahead = std::chrono::seconds(2);
  // How often a rate sample per provider goes to throttle_history (the
  // dashboard's chart) and reply counts to reply_counters (/metrics).
  Duration history_interval = std::chrono::seconds(5);
};

// [[dkim]] (one table or several)
struct DkimSettings {
  std::string domain;
  std::string selector;
  // "rsa-sha256" or "ed25519-sha256".
  std::string algorithm = "rsa-sha256";
  std::string key_file;
};

// [unsubscribe]
struct UnsubscribeSettings {
  // Prefix of the https one-click URL in List-Unsubscribe.
  std::string base_url;
  // Optional mailto: address offered beside the URL.
  std::string mailto;
  // File holding the HMAC secret for unsubscribe tokens and VERP tags.
  std::string secret_file;
};

// [import]: list-hygiene rules and MX checking of `mailer import`.
struct ImportSettings {
  // Reject role accounts (postmaster@, info@, noreply@ ...).
  bool reject_role_accounts = true;
  // Role local parts added to the table, comma-separated ("billing, hr").
  std::string extra_role_accounts;
  // Reject addresses at disposable-mailbox domains.
  bool reject_disposable = true;
  // Reject misspelt popular domains (gmial.com), suggesting the correction.
  bool reject_typos = true;
  // Replacement tables (format of lists/data/*.txt); empty: the built-in ones.
  std::string role_accounts_file;
  std::string disposable_domains_file;
  std::string typo_domains_file;
  // DNS server for --mx-check as "host:port"; empty: /etc/resolv.conf.
  std::string dns_server;
  // MX lookups in flight at once.
  int mx_concurrency = 64;
  // Per-try DNS timeout.
  Duration mx_timeout = std::chrono::seconds(2);
  // Shortest time an MX answer stays cached in `domains`, whatever its TTL.
  Duration mx_cache_ttl_min = std::chrono::hours(1);
  // Rows per committed chunk (each commit is a resume point).
  int chunk_rows = 25000;
  // Longest accepted CSV field in bytes.
  int max_field_bytes = 65536;
};

// [doctor]: what `mailer doctor` checks beyond the domain's own records.
struct DoctorSettings {
  // DNS blocklist zones queried with the sending IP (reversed octets).
  std::vector<std::string> ip_blocklists = {"zen.spamhaus.org", "bl.spamcop.net",
                                            "b.barracudacentral.org"};
  // Domain blocklist zones queried with the sending domain.
  std::vector<std::string> domain_blocklists = {"dbl.spamhaus.org"};
  // DNS server as "host:port"; empty: /etc/resolv.conf. --dns overrides.
  std::string dns_server;
};

// [http]
struct HttpSettings {
  // Address `mailer serve` listens on: /u/TOKEN and /healthz.
  std::string listen = "127.0.0.1:8080";
  // Address of the operator pages (/, /metrics, /healthz), which show
  // campaign names and throttle state: loopback unless a trusted network
  // needs them.
  std::string admin_listen = "127.0.0.1:8081";
};

// [worker]: how `mailer run` uses the delivery queue and runs the scheduler.
struct WorkerSettings {
  // How long a claimed delivery stays leased to a worker; renewed while the
  // worker lives, so this is how soon a dead worker's deliveries return.
  Duration lease = std::chrono::minutes(5);
  // Deliveries per claim statement (one provider at a time).
  int claim_batch = 500;
  // Most deliveries one worker holds at once (claimed, in flight or awaiting
  // the outcome flush): bounds what a crash can send twice.
  int max_leased = 5000;
  // Outcomes are written at least this often...
  Duration flush_interval = std::chrono::milliseconds(200);
  // ...or as soon as this many are waiting.
  int flush_batch = 1000;
  // Scheduler tick: due campaigns, windows, expired leases, completion.
  Duration tick = std::chrono::seconds(1);
  // A scheduled campaign found due later than this after its --at still
  // starts, with a warning naming it (see `mailer campaign create --help`).
  Duration past_due_warning = std::chrono::hours(1);
};

// [bounces]: reading what comes back (`mailer bounces`, `mailer inbound`).
struct BouncesSettings {
  // Mailbox polled for bounces ("imaps://user@host/INBOX"); empty: none.
  std::string imap_url;
  // File holding the IMAP password; $MAILER_IMAP_PASSWORD otherwise.
  std::string imap_password_file;
  // CA certificates (PEM) that imaps:// servers are verified against;
  // empty: the system's. Verification is never turned off.
  std::string imap_ca_file;
  // Where messages that are no report (no bounce, complaint or auto-reply)
  // are moved; empty: they stay in the mailbox, flagged \Seen and
  // $MailerNotReport, and later polls skip them.
  std::string imap_not_report_folder = "mailer-not-reports";
  // How often the mailbox is polled.
  Duration poll_every = std::chrono::minutes(1);
  // Soft bounces of one address within soft_window that suppress it.
  int soft_limit = 3;
  Duration soft_window = std::chrono::hours(24 * 30);
  // Largest message file `bounces parse` and `bounces ingest` read.
  int max_message_bytes = 10 << 20;
};

// [inbound]: `mailer inbound`, the SMTP server for bounces and feedback-loop
// reports.
struct InboundSettings {
  // Address the server listens on (--listen overrides).
  std::string listen = "0.0.0.0:25";
  // Recipient domains accepted at RCPT (case-insensitive); empty: [sender]
  // verp_domain. Any other recipient gets 550: never an open relay.
  std::vector<std::string> domains;
  // Largest message accepted (advertised with SIZE; 552 beyond it).
  int max_message_size = 10 << 20;
  // STARTTLS with this certificate chain and key (PEM); both or neither.
  std::string tls_cert_file;
  std::string tls_key_file;
  // Name in the greeting and the EHLO reply; empty: [sender] helo_name.
  std::string hostname;
  // Connections served at once; more get 421 and are closed.
  int max_connections = 100;
  // Longest wait for a command (RFC 5321 4.5.3.2: at least 5 minutes) and
  // for the next bytes of a message during DATA.
  Duration command_timeout = std::chrono::minutes(5);
  Duration data_timeout = std::chrono::minutes(3);
  // On SIGTERM/SIGINT, how long transactions in flight may take to finish.
  Duration drain_timeout = std::chrono::seconds(30);
};

// [guard]: a running campaign pauses itself when what comes back says its
// mail is unwanted.
struct GuardSettings {
  // Sends a campaign needs before its rates are judged.
  int min_sent = 1000;
  // Complaints per sent message above which it pauses (Gmail's and Yahoo's
  // published limit).
  double max_complaint_rate = 0.003;
  // Hard bounces per sent message above which it pauses.
  double max_bounce_rate = 0.05;
};

struct Config {
  // Where the configuration came from: a path, or "(built-in defaults)".
  std::string source = "(built-in defaults)";
  DatabaseSettings database;
  SenderSettings sender;
  // [routes]: provider name (gmail, outlook, yahoo, other) -> "mx" or URL.
  std::map<std::string, std::string> routes;
  ThrottleSettings throttle;
  std::vector<DkimSettings> dkim;
  UnsubscribeSettings unsubscribe;
  ImportSettings imports;
  HttpSettings http;
  WorkerSettings worker;
  DoctorSettings doctor;
  BouncesSettings bounces;
  InboundSettings inbound;
  GuardSettings guard;
};

// Parses TOML text; `file` names it in errors. Throws UsageError naming the
// file, line, key and what was expected; unknown keys are errors.
Config parse_config(const std::string& text, const std::string& file);

// Finds and loads the configuration: `explicit_path` (from --config) if not
// empty, else $MAILER_CONFIG, else ./mailer.toml if present, else defaults.
// Applies environment overrides ($MAILER_DATABASE_URL). A named file that
// cannot be read is a UsageError.
Config load_config(const std::string& explicit_path);

}  // namespace mailer::app
