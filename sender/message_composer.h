// Composes the complete RFC 5322 message for one delivery: rendered subject,
// text and HTML parts (multipart/alternative when both exist), the headers
// bulk senders need (List-Unsubscribe one-click, Feedback-ID, a deterministic
// Message-ID) and the VERP envelope sender. The campaign's templates are
// compiled once, when the composer is built; Compose() only renders.
//
// No input can add a header or a MIME part: header values go through
// mime.h's encoders (line breaks become spaces, folding is ours), bodies are
// quoted-printable or base64, and the boundary contains "=_", which neither
// encoding can produce.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "sender/mime.h"
#include "sender/template.h"
#include "sender/unsubscribe_token.h"
#include "sender/verp.h"

namespace mailer::sender {

// What a campaign says; template sources use {{field}} merge fields.
struct CampaignContent {
  std::int64_t campaign_id = 0;
  // Names the list in Feedback-ID (id or name; characters other than
  // letters, digits, '.', '_' and '-' become '-').
  std::string list_id;
  std::string from;                     // "Name <addr@domain>" or "addr@domain"
  std::optional<std::string> reply_to;  // same forms
  std::string subject;                  // template
  std::optional<std::string> text;      // template for text/plain
  std::optional<std::string> html;      // template for text/html
};

// Installation-wide settings ([unsubscribe] and [sender] configuration).
struct ComposerSettings {
  // Prefix of the one-click URL: BASE/u/TOKEN. Must be https:// (http:// is
  // accepted for loopback rehearsals); a trailing '/' is ignored.
  std::string unsubscribe_base_url;
  // Optional mailbox for the mailto: List-Unsubscribe variant.
  std::optional<std::string> unsubscribe_mailto;
  // Signs unsubscribe tokens and builds VERP return paths.
  std::shared_ptr<const UnsubscribeTokenCodec> tokens;
  std::shared_ptr<const VerpCodec> verp;
  // Last Feedback-ID field: identifies this sending platform to providers'
  // feedback loops.
  std::string feedback_sender_id = "mailer";
  // Right-hand side of Message-IDs; empty means the From domain.
  std::string message_id_domain;
};

// One recipient of one delivery.
struct DeliveryRecipient {
  std::int64_t delivery_id = 0;
  std::int64_t recipient_id = 0;
  std::string email;
  // The recipient's attributes; `email` and `unsubscribe_url` are set by
  // Compose().
  MergeFields fields;
};

// A message ready for SMTP.
struct ComposedMessage {
  MailAddress envelope_from;  // VERP return path (MAIL FROM)
  MailAddress envelope_to;    // RCPT TO
  std::string message_id;     // with angle brackets
  std::string unsubscribe_url;
  std::string data;  // headers, blank line, body; CRLF line ends
};

// Builds messages for one campaign. Immutable after construction; Compose()
// may run on several threads at once.
class MessageComposer {
 public:
  // Compiles the templates and checks the campaign's addresses and settings.
  // Throws TemplateSyntaxError for a malformed template, MimeError for a bad
  // address or URL, std::invalid_argument when no body template is given or
  // a codec is missing.
  MessageComposer(const CampaignContent& campaign, ComposerSettings settings);

  // Every unknown merge field in subject, text and HTML, given the list's
  // attribute names. Campaign creation rejects a campaign when non-empty.
  std::vector<UnknownField> UnknownFields(const std::set<std::string, std::less<>>& known) const;

  // The message for `recipient`, dated `now`. Throws MimeError when the
  // recipient's address is unusable (the caller fails that delivery).
  // Takes the recipient by value: move it in to avoid copying its fields.
  ComposedMessage Compose(DeliveryRecipient recipient,
                          std::chrono::system_clock::time_point now) const;

 private:
  std::string Body(const MergeFields& fields, std::int64_t delivery_id, std::string& headers) const;

  std::int64_t campaign_id_;
  Mailbox from_;
  std::optional<Mailbox> reply_to_;
  std::string from_header_;
  std::string reply_to_header_;
  std::string feedback_id_;
  std::string message_id_domain_;
  std::string unsubscribe_base_;  // ".../u/"
  std::optional<MailAddress> unsubscribe_mailto_;
  ComposerSettings settings_;
  CompiledTemplate subject_;
  std::optional<CompiledTemplate> text_;
  std::optional<CompiledTemplate> html_;
};

// Compiles the campaign's subject, text and HTML templates and lists every
// unknown merge field, for campaign creation (no settings or secrets needed).
// Throws TemplateSyntaxError for a malformed template; an empty result means
// the campaign's templates are acceptable for a list with attributes `known`.
std::vector<UnknownField> CheckCampaignTemplates(const CampaignContent& campaign,
                                                 const std::set<std::string, std::less<>>& known);

// RFC 5322 date-time in UTC, e.g. "Tue, 01 Jul 2025 09:30:00 +0000".
std::string FormatRfc5322Date(std::chrono::system_clock::time_point when);

}  // namespace mailer::sender
