// Polling an IMAP mailbox for bounces, complaints and auto-replies
// ([bounces] imap_url) with libcurl, applying each message through the same
// BounceIngester as `mailer bounces ingest`. Used by `mailer bounces poll`
// and by any long-running command that polls on a timer.
//
// What happens to a message:
//  - a report (bounce, complaint, auto-reply) is removed from the mailbox
//    (\Deleted, then UID EXPUNGE) only after everything it says has been
//    committed; when applying it fails (the database is down) it stays, and
//    the next poll applies it (applying is idempotent);
//  - a message that is no report is moved (UID MOVE) to
//    [bounces] imap_not_report_folder, created when missing; with that
//    setting empty it stays in the mailbox, flagged \Seen and
//    $MailerNotReport, and later polls skip it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "app/config/config.h"
#include "app/db/database.h"
#include "app/inbound/bounce_ingest.h"

namespace mailer::app {

// [bounces] imap_url, checked: scheme, user, host, optional port, mailbox.
struct ImapMailbox {
  bool tls = true;  // imaps://
  std::string user;
  std::string host;
  std::string port;     // "" for the scheme's default
  std::string mailbox;  // decoded, e.g. "INBOX"
  std::string url;      // the URL libcurl is given: no user, no password
  // scheme://user@host[:port]/mailbox, as the operator wrote it (never a
  // password: parse_imap_url refuses one).
  std::string display;
};

// Throws UsageError naming [bounces] imap_url and what is wrong.
ImapMailbox parse_imap_url(const std::string& url);

// The IMAP server could not be reached, refused a command, or answered
// something unreadable. what() never holds the password.
class ImapError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The server refused the user and password: retrying will not help until
// the configuration changes.
class ImapLoginError : public ImapError {
 public:
  using ImapError::ImapError;
};

struct PollerSettings {
  ImapMailbox mailbox;
  std::string password;
  std::string ca_file;            // "" : the system's CA certificates
  std::string not_report_folder;  // "" : flag non-reports and leave them
  std::size_t max_message_bytes = 10 << 20;
  long timeout_seconds = 60;  // per IMAP command
};

// Settings from [bounces]; the password from imap_password_file or
// $MAILER_IMAP_PASSWORD. Throws UsageError (exit 2) when imap_url is unset
// or invalid or no password can be read.
PollerSettings poller_settings(const Config& config);

// What one poll did.
struct PollSummary {
  std::int64_t found = 0;        // messages the search returned
  std::int64_t applied = 0;      // reports applied and removed
  std::int64_t not_reports = 0;  // messages that were no report (moved or flagged)
  std::int64_t left = 0;         // left in the mailbox for the next poll
  std::int64_t failed = 0;       // messages whose apply failed
  std::string error;             // why the first failure happened; "" when none
  IngestSummary ingest;          // what applying found, as `bounces ingest` reports it
};

class ImapSession;

class BouncePoller {
 public:
  // `secret` keys VERP tags and unsubscribe tokens ([unsubscribe] secret).
  BouncePoller(db::Database& db, const Config& config, std::string secret, PollerSettings settings);
  ~BouncePoller();
  BouncePoller(const BouncePoller&) = delete;
  BouncePoller& operator=(const BouncePoller&) = delete;

  // One poll: search, then fetch, apply and remove each message in UID
  // order. A failed apply is logged and counted (the message stays); the
  // rest of that poll is left when the database is unreachable. Throws
  // ImapLoginError on refused credentials and ImapError when the mailbox
  // cannot be searched; messages already handled stay handled.
  PollSummary poll_once();

  // Polls every [bounces] poll_every until `stop` is set (checked at least
  // every 200 ms). IMAP and database failures are logged and retried at the
  // next poll; ImapLoginError ends the loop (rethrown).
  void run(const std::atomic<bool>& stop);

  const PollerSettings& settings() const { return settings_; }

 private:
  void handle_not_report(std::uint64_t uid);

  const Config& config_;
  PollerSettings settings_;
  BounceIngester ingester_;
  std::unique_ptr<ImapSession> session_;
  bool folder_created_ = false;
};

}  // namespace mailer::app
