// BounceParser: reads what comes back after a send (bounces, delay notices,
// spam complaints, auto-replies) and says, per recipient, what happened to
// the address. Deciding which addresses are dead is list hygiene, so it lives
// here; applying a report (VERP check, suppressions, counts) is the caller's.
//
// Formats read:
//   - RFC 3464 delivery status notifications (multipart/report;
//     report-type=delivery-status, also RFC 6533 message/global-delivery-status);
//   - RFC 5965 ARF feedback reports (report-type=feedback-report);
//   - RFC 3834 auto-replies (Auto-Submitted, X-Autoreply, Precedence, and
//     vacation / out-of-office subjects);
//   - Amazon SES bounce and complaint notifications (JSON);
//   - the plain-text bounces of MTAs and providers that send no DSN, or
//     whose DSN lacks the recipient block: qmail, Exim, Sendmail, Postfix,
//     Courier, OpenSMTPD, Exchange 2003-2019 / Office 365, Gmail,
//     Outlook.com, Yahoo and similar "address: reason" layouts.
// Line ends may be LF, CRLF or bare CR; parts may be quoted-printable or
// base64 and nested.
//
// Pure: no I/O, no clock, no global state; safe to call from many threads.
// Never throws: bad input gives a report of format kNotAReport or fewer
// recipients, and even std::bad_alloc is caught. Work is bounded by
// BounceParserLimits.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mailer::lists {

// What a report says about one recipient address.
enum class FeedbackKind {
  // The address is dead: unknown user, unknown or null-MX domain, moved.
  kHard,
  // Delivery failed or was delayed for a reason the address survives:
  // mailbox full, blocks, policy or spam rejections, timeouts, unknown causes.
  kSoft,
  // The recipient reported the message as spam (ARF, SES complaint).
  kComplaint,
  // An automatic answer (vacation, out of office): the address is alive.
  kAutoReply,
  // A success DSN (Action: delivered, relayed or expanded).
  kDelivered,
};

// "hard", "soft", "complaint", "auto_reply", "delivered".
std::string_view to_string(FeedbackKind kind);

// How the message was read.
enum class ReportFormat {
  kNotAReport,
  kDeliveryStatus,           // RFC 3464 / RFC 6533
  kFeedbackReport,           // RFC 5965 ARF
  kAutoReply,                // RFC 3834 and look-alikes
  kSesNotification,          // Amazon SES JSON
  kMtaText,                  // an MTA's own plain-text layout
  kDispositionNotification,  // RFC 8098 MDN of a refusal (Sieve reject, RFC 5429)
};
std::string_view to_string(ReportFormat format);

struct BounceRecipient {
  // The recipient as the report names it ("user@example.com": no angle
  // brackets, no "rfc822;", domain lower-cased). Never empty.
  std::string address;
  // The address the original message was sent to when the report gives it
  // apart (DSN Original-Recipient); empty otherwise.
  std::string original_address;
  FeedbackKind kind = FeedbackKind::kSoft;
  // Enhanced status code ("5.1.1"), from the report or the diagnostic text;
  // empty when neither has one.
  std::string status;
  // The remote server's or the MTA's explanation, one line, at most
  // kMaxDiagnosticBytes; for complaints the feedback type, for auto-replies
  // the subject.
  std::string diagnostic;
};

// What the report quotes of the message it is about: the keys a later step
// uses to find the delivery when the report's own envelope recipient carries
// no VERP address (Microsoft's redacted complaints, forwarded bounces).
struct OriginalMessage {
  std::string message_id;   // with angle brackets, as written
  std::string to;           // address
  std::string from;         // address
  std::string return_path;  // address: our VERP return path when we sent it
  std::string subject;
  // Headers our composer sets that identify a send: Feedback-ID,
  // List-Unsubscribe and any X-Mailer-* field, as (name, value).
  std::vector<std::pair<std::string, std::string>> mailer_headers;
  bool empty() const {
    return message_id.empty() && to.empty() && return_path.empty() && mailer_headers.empty();
  }
};

struct BounceReport {
  ReportFormat format = ReportFormat::kNotAReport;
  std::vector<BounceRecipient> recipients;
  // The report's own envelope-recipient headers, in order, as (name,
  // address): To, Delivered-To, X-Original-To, Envelope-To, X-Envelope-To.
  // A bounce to a VERP return path names the delivery here.
  std::vector<std::pair<std::string, std::string>> verp_headers;
  OriginalMessage original;
  // The reporting system (DSN Reporting-MTA, ARF User-Agent), when given.
  std::string reporting_mta;
  // True when the input was longer than the limit and only its start was read.
  bool truncated = false;
};

// Bounds on one parse.
struct BounceParserLimits {
  // Bytes of the message read; the rest is ignored (report.truncated). The
  // human-readable parts and the DSN come first in every real report, so
  // 1 MiB keeps every recipient of any real bounce while bounding the work.
  std::size_t max_message_bytes = 1 << 20;
  // Recipients kept per report (a DSN for a huge alias expansion).
  std::size_t max_recipients = 1000;
  // MIME parts and nesting read.
  std::size_t max_parts = 64;
  int max_depth = 8;
};

// Longest diagnostic kept, in bytes.
inline constexpr std::size_t kMaxDiagnosticBytes = 1000;

// Reads one message. Never throws.
BounceReport parse_bounce(std::string_view message, const BounceParserLimits& limits = {});

// The kind a failure or delay with this status code, diagnostic text and DSN
// Action ("failed", "delayed", "delivered"...; may be empty) amounts to.
// `context` is what else the report says about this recipient (its lines in
// the notice), read for the SMTP command the refusal answered. Hard only on
// positive evidence that the address is dead; unknown permanent failures are
// soft, since a wrong hard costs a real subscriber.
FeedbackKind classify_failure(std::string_view status, std::string_view diagnostic,
                              std::string_view action, std::string_view context = {});

}  // namespace mailer::lists
