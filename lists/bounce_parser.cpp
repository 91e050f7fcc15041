// parse_bounce(): the reading order is from the most to the least structured
// evidence. A DSN or ARF part, when present, is authoritative; an Amazon SES
// JSON notification next; then the MTA's own text, for messages that look
// like bounces by sender or subject; the auto-reply markers last, because
// bounces carry Auto-Submitted too.
#include "lists/bounce_parser.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>

#include "lists/mime_reader.h"

namespace mailer::lists {
namespace {

// Longest text between angle brackets tried as an address: the 254 octets
// of RFC 5321 plus room for stray whitespace.
constexpr std::size_t kMaxBracketedAddress = 320;

// Lines of a recipient's explanation gathered in a plain-text bounce: enough
// for Exim's host / SMTP error / reply triple and Exchange's two-line notes.
constexpr std::size_t kMaxReasonLines = 8;

bool is_local_char(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-/=?^_`{|}~.").find(c) != std::string_view::npos;
}

bool is_domain_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.';
}

// "user@example.com" with the domain lower-cased, when `text` is exactly an
// address a report may name; empty otherwise. Redacted local parts ("****",
// "redacted") are not addresses.
std::string normalize_address(std::string_view text) {
  text = trim(text);
  while (!text.empty() && (text.back() == '.' || text.back() == ',' || text.back() == ';')) {
    text.remove_suffix(1);
  }
  std::size_t at = text.rfind('@');
  if (at == std::string_view::npos || at == 0 || at + 1 >= text.size() || text.size() > 254) {
    return {};
  }
  std::string_view local = text.substr(0, at);
  std::string_view domain = text.substr(at + 1);
  if (local.size() > 64 || domain.find('.') == std::string_view::npos) return {};
  if (local.front() == '.' || local.back() == '.' || domain.front() == '.' ||
      domain.front() == '-') {
    return {};
  }
  bool all_stars = true;
  for (char c : local) {
    if (!is_local_char(c)) return {};
    if (c != '*') all_stars = false;
  }
  if (all_stars || iequals(local, "redacted")) return {};
  for (char c : domain) {
    if (!is_domain_char(c)) return {};
  }
  std::string out(local);
  out += '@';
  out += ascii_lower(domain);
  return out;
}

// The first address in `text`: inside angle brackets when there are any,
// otherwise the run of address characters around the first '@'.
std::string find_address(std::string_view text) {
  // The first '>' after each '<' is found once per run of '<' before it, so a
  // line of many '<' costs linear time, not quadratic.
  std::size_t search = 0;
  std::size_t close = 0;
  while (true) {
    std::size_t open = text.find('<', search);
    if (open == std::string_view::npos) break;
    if (close <= open) close = text.find('>', open);
    if (close == std::string_view::npos) break;
    if (close - open - 1 <= kMaxBracketedAddress) {
      std::string inner = normalize_address(text.substr(open + 1, close - open - 1));
      if (!inner.empty()) return inner;
    }
    search = open + 1;
  }
  std::size_t at = text.find('@');
  while (at != std::string_view::npos) {
    std::size_t start = at;
    // Bounded like the parts of an address, so a run of '@' stays linear.
    while (start > 0 && at - start < 64 && is_local_char(text[start - 1])) --start;
    std::size_t end = at + 1;
    while (end < text.size() && end - at <= 255 && is_domain_char(text[end])) ++end;
    std::string address = normalize_address(text.substr(start, end - start));
    if (!address.empty()) return address;
    at = text.find('@', at + 1);
  }
  return {};
}

// An address field of a DSN ("rfc822; user@example.com").
std::string dsn_address(std::string_view value) {
  std::size_t semi = value.find(';');
  if (semi != std::string_view::npos) value = value.substr(semi + 1);
  return find_address(value);
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// The first enhanced status code ("5.1.1", class 2, 4 or 5) in `text`.
std::string find_status(std::string_view text) {
  for (std::size_t i = 0; i + 4 < text.size(); ++i) {
    char c = text[i];
    if (c != '2' && c != '4' && c != '5') continue;
    if (i > 0 && (is_digit(text[i - 1]) || text[i - 1] == '.')) continue;
    if (text[i + 1] != '.') continue;
    std::size_t j = i + 2;
    std::size_t subject = 0;
    while (j < text.size() && is_digit(text[j]) && subject < 4) ++j, ++subject;
    if (subject == 0 || subject > 3 || j >= text.size() || text[j] != '.') continue;
    std::size_t k = j + 1;
    std::size_t detail = 0;
    while (k < text.size() && is_digit(text[k]) && detail < 4) ++k, ++detail;
    if (detail == 0 || detail > 3) continue;
    if (k < text.size() &&
        (is_digit(text[k]) || (text[k] == '.' && k + 1 < text.size() && is_digit(text[k + 1])))) {
      continue;
    }
    return std::string(text.substr(i, k - i));
  }
  return {};
}

// The first SMTP reply code ("550") in `text` as a basic status ("5.0.0").
std::string find_reply_code_status(std::string_view text) {
  for (std::size_t i = 0; i + 3 <= text.size(); ++i) {
    char c = text[i];
    if (c != '4' && c != '5') continue;
    if (i > 0 && (is_digit(text[i - 1]) || text[i - 1] == '.' || text[i - 1] == '#')) continue;
    if (!is_digit(text[i + 1]) || !is_digit(text[i + 2])) continue;
    if (text[i + 1] > '5') continue;
    if (i + 3 < text.size() && text[i + 3] != ' ' && text[i + 3] != '-' && text[i + 3] != '\n') {
      continue;
    }
    return std::string(1, c) + ".0.0";
  }
  return {};
}

// One line of at most kMaxDiagnosticBytes: runs of whitespace become one space.
std::string one_line(std::string_view text) {
  std::string out;
  out.reserve(std::min(text.size(), kMaxDiagnosticBytes));
  bool space = false;
  for (char c : text) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      space = !out.empty();
      continue;
    }
    if (out.size() + (space ? 2 : 1) > kMaxDiagnosticBytes) break;
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

bool contains(std::string_view lower_text, std::string_view needle) {
  return lower_text.find(needle) != std::string_view::npos;
}

// --- the report being built -------------------------------------------------

class ReportBuilder {
 public:
  ReportBuilder(BounceReport& report, const BounceParserLimits& limits)
      : report_(report), limits_(limits) {}

  // Adds or merges a recipient; the address must already be normalised.
  void Add(BounceRecipient recipient) {
    if (recipient.address.empty()) return;
    for (BounceRecipient& r : report_.recipients) {
      if (iequals(r.address, recipient.address)) return;
    }
    if (report_.recipients.size() >= limits_.max_recipients) return;
    report_.recipients.push_back(std::move(recipient));
  }

 private:
  BounceReport& report_;
  const BounceParserLimits& limits_;
};

bool is_original_message_type(std::string_view type) {
  return type == "message/rfc822" || type == "message/global" || type == "text/rfc822-headers" ||
         type == "message/rfc822-headers" || type == "message/global-headers" ||
         type == "text/rfc822-header" || type == "message/partial";
}

void read_original_headers(const HeaderBlock& headers, OriginalMessage& original) {
  if (original.message_id.empty())
    original.message_id = std::string(trim(headers.get("Message-ID")));
  if (original.to.empty()) original.to = find_address(headers.get("To"));
  if (original.from.empty()) original.from = find_address(headers.get("From"));
  if (original.return_path.empty()) original.return_path = find_address(headers.get("Return-Path"));
  if (original.subject.empty()) original.subject = one_line(headers.get("Subject"));
  if (!original.mailer_headers.empty()) return;
  for (const HeaderField& f : headers.fields()) {
    std::string name = ascii_lower(f.name);
    if (name == "feedback-id" || name == "list-unsubscribe" || name.starts_with("x-mailer-")) {
      original.mailer_headers.emplace_back(std::string(f.name), f.value);
    }
  }
}

// Lines that introduce the quoted original message in plain-text bounces.
constexpr std::string_view kOriginalMarkers[] = {
    "this is a copy of the message",  "below this line is a copy of the message",
    "original message follows",       "unsent message follows",
    "undelivered message follows",    "message header follows",
    "original message headers",       "headers of the original message",
    "header of the original message", "----- original message -----",
    "------ original message ------", "original message text follows",
    "returned message follows",       "------- returned message",
    "copy of the original message",   "content-type: message/rfc822",
    "undelivered message attached",   "your message reads",
    "message headers follow",  // dma
};

// Splits `text` at the first original-message marker line: the returned
// view is the human-readable notice, `*quoted` what follows the marker line.
std::string_view split_at_original(std::string_view text, std::string_view* quoted) {
  const std::string lower = ascii_lower(text);
  std::size_t best = std::string::npos;
  for (std::string_view marker : kOriginalMarkers) {
    std::size_t at = lower.find(marker);
    if (at != std::string::npos && at < best) best = at;
  }
  if (best == std::string::npos) {
    *quoted = {};
    return text;
  }
  std::size_t line_start = lower.rfind('\n', best);
  line_start = line_start == std::string::npos ? 0 : line_start + 1;
  std::size_t line_end = lower.find('\n', best);
  *quoted = line_end == std::string::npos ? std::string_view() : text.substr(line_end + 1);
  return text.substr(0, line_start);
}

// --- RFC 3464 ----------------------------------------------------------------

struct DsnRecipient {
  std::string final_address;
  std::string original_address;
  std::string action;
  std::string status;
  std::string diagnostic;
  bool empty() const { return final_address.empty() && original_address.empty(); }
};

// Status from the DSN, made more specific by the diagnostic's when the DSN
// gives only the class (Courier and Exchange write "5.0.0").
std::string effective_status(std::string_view dsn_status, std::string_view diagnostic) {
  std::string status = find_status(dsn_status);
  std::string from_text = find_status(diagnostic);
  if (status.empty()) {
    status = from_text.empty() ? find_reply_code_status(diagnostic) : from_text;
  } else if (status.ends_with(".0.0") && !from_text.empty() && from_text[0] == status[0]) {
    status = from_text;
  }
  return status;
}

// The start of the notice, lower-cased once per report, that
// recipient_context() reads: a notice's words on its recipients come first,
// and the bound keeps a report of many recipients linear.
constexpr std::size_t kContextBytes = 256 * 1024;
std::string context_text(std::string_view notice) {
  return ascii_lower(notice.substr(0, kContextBytes));
}

// What the notice says about one recipient: the lines from each place it
// names the address (from the start of that line) to the end of the
// paragraph, a few places and a bounded length each. E.g. Postfix's "<a@x>:
// host ... said: 550 ... (in reply to RCPT TO command)", or the ">>> RCPT
// TO:<a@x>" of Courier's and Sendmail's session transcripts.
// `lower_notice` is context_text() of the notice.
std::string recipient_context(std::string_view lower_notice, std::string_view address) {
  constexpr std::size_t kPlaces = 4;
  constexpr std::size_t kWindow = 800;
  std::string out;
  if (address.empty()) return out;
  const std::string needle = ascii_lower(address);
  std::size_t at = lower_notice.find(needle);
  for (std::size_t n = 0; n < kPlaces && at != std::string_view::npos; ++n) {
    // From the start of the line: Sendmail's transcript names the command
    // before the address (">>> RCPT To:<a@x>").
    std::size_t start = lower_notice.rfind('\n', at);
    start = start == std::string_view::npos ? 0 : start + 1;
    std::size_t end = lower_notice.find("\n\n", at);
    end = std::min({end, at + kWindow, lower_notice.size()});
    out.append(lower_notice.substr(start, end - start));
    out += '\n';
    at = lower_notice.find(needle, end);
  }
  return out;
}

void add_dsn_recipient(const DsnRecipient& dsn, std::string_view lower_notice, ReportBuilder& out) {
  BounceRecipient r;
  r.address = dsn.final_address.empty() ? dsn.original_address : dsn.final_address;
  if (!dsn.final_address.empty() && !iequals(dsn.original_address, dsn.final_address)) {
    r.original_address = dsn.original_address;
  }
  r.status = effective_status(dsn.status, dsn.diagnostic);
  r.diagnostic = one_line(dsn.diagnostic);
  r.kind = classify_failure(r.status, r.diagnostic, dsn.action,
                            recipient_context(lower_notice, r.address));
  out.Add(std::move(r));
}

// A message disposition notification (RFC 8098) that says the message was
// deleted or refused unread: how Sieve's reject (RFC 5429) and Dovecot's
// refusals answer. The recipient's own filter refused this message, so the
// address is alive: soft, with the notice's words as the diagnostic. Other
// dispositions (displayed, processed: read receipts) are no report.
bool read_disposition_notification(std::string_view body, std::string_view readable,
                                   ReportBuilder& out, BounceReport& report) {
  std::string_view unused;
  const HeaderBlock fields = parse_header_block(body, 64, &unused);
  // "automatic-action/MDN-sent-automatically; deleted"
  const std::string disposition = ascii_lower(fields.get("Disposition"));
  const std::size_t semi = disposition.find(';');
  if (semi == std::string::npos) return false;
  const std::string_view type = trim(std::string_view(disposition).substr(semi + 1));
  if (!type.starts_with("deleted") && !type.starts_with("denied") && !type.starts_with("failed")) {
    return false;
  }
  std::string address = dsn_address(fields.get("Final-Recipient"));
  if (address.empty()) address = dsn_address(fields.get("Original-Recipient"));
  if (address.empty()) return false;
  if (report.original.message_id.empty()) {
    report.original.message_id = std::string(trim(fields.get("Original-Message-ID")));
  }
  if (report.reporting_mta.empty()) {
    std::string_view ua = fields.get("Reporting-UA");
    report.reporting_mta = std::string(trim(ua.substr(0, ua.find(';'))));
  }
  BounceRecipient r;
  r.address = std::move(address);
  r.kind = FeedbackKind::kSoft;
  r.status = find_status(readable);
  // The notice's first paragraph.
  std::string_view text = trim(readable);
  text = text.substr(0, text.find("\n\n"));
  r.diagnostic = one_line(text.empty() ? std::string_view(disposition) : text);
  out.Add(std::move(r));
  return true;
}

// Reads the per-recipient groups of a message/delivery-status body. Groups
// are split at blank lines and, for MTAs that forget those, at a repeated
// Final-Recipient or Original-Recipient.
bool read_delivery_status(std::string_view body, std::string_view lower_notice, ReportBuilder& out,
                          BounceReport& report) {
  bool any = false;
  DsnRecipient current;
  std::string_view rest = body;
  for (int groups = 0; groups < 4096 && !trim(rest).empty(); ++groups) {
    while (rest.starts_with("\n")) rest.remove_prefix(1);
    std::string_view next;
    HeaderBlock group = parse_header_block(rest, 4096, &next);
    if (group.fields().empty()) {
      // A line that is no field: skip it.
      std::size_t eol = rest.find('\n');
      rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 1);
      continue;
    }
    for (const HeaderField& f : group.fields()) {
      if (iequals(f.name, "Original-Recipient")) {
        if (!current.original_address.empty()) {
          add_dsn_recipient(current, lower_notice, out);
          any = true;
          current = {};
        }
        current.original_address = dsn_address(f.value);
      } else if (iequals(f.name, "Final-Recipient")) {
        if (!current.final_address.empty()) {
          add_dsn_recipient(current, lower_notice, out);
          any = true;
          current = {};
        }
        current.final_address = dsn_address(f.value);
      } else if (iequals(f.name, "Action")) {
        current.action = f.value;
      } else if (iequals(f.name, "Status")) {
        current.status = f.value;
      } else if (iequals(f.name, "Diagnostic-Code")) {
        std::string_view v = f.value;
        std::size_t semi = v.find(';');
        current.diagnostic =
            std::string(trim(semi == std::string_view::npos ? v : v.substr(semi + 1)));
      } else if (iequals(f.name, "Reporting-MTA") && report.reporting_mta.empty()) {
        report.reporting_mta = std::string(trim(f.value.substr(f.value.find(';') + 1)));
      }
    }
    if (!current.empty()) {
      add_dsn_recipient(current, lower_notice, out);
      any = true;
      current = {};
    }
    rest = next;
  }
  return any;
}

// --- RFC 5965 ----------------------------------------------------------------

bool read_feedback_report(std::string_view body, const OriginalMessage& original,
                          ReportBuilder& out, BounceReport& report) {
  std::string_view unused;
  HeaderBlock fields = parse_header_block(body, 512, &unused);
  std::string type = ascii_lower(trim(fields.get("Feedback-Type")));
  if (type.empty()) type = "abuse";
  if (type == "not-spam") return true;
  report.reporting_mta = std::string(trim(fields.get("User-Agent")));
  std::string diagnostic = one_line(type);
  bool named = false;
  for (const HeaderField& f : fields.fields()) {
    if (iequals(f.name, "Original-Rcpt-To") || iequals(f.name, "Removal-Recipient")) {
      std::string address = find_address(f.value);
      if (address.empty()) continue;
      out.Add(BounceRecipient{address, {}, FeedbackKind::kComplaint, {}, diagnostic});
      named = true;
    }
  }
  if (!named && !original.to.empty()) {
    out.Add(BounceRecipient{original.to, {}, FeedbackKind::kComplaint, {}, diagnostic});
  }
  return true;
}

// --- Amazon SES --------------------------------------------------------------

std::string json_string(const nlohmann::json& object, const char* key) {
  if (!object.is_object()) return {};
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

const nlohmann::json* json_member(const nlohmann::json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

// The JSON object at the start of `text`: SNS mails append an unsubscribe
// footer after it, and mail systems may fold its long line (a raw line end
// inside a JSON string), so line ends are dropped and the text after the
// last '}' before the footer ("\n--\n") is cut.
std::string ses_json_text(std::string_view text) {
  std::size_t footer = text.find("\n--\n");
  std::string_view json = text.substr(0, footer);
  std::size_t last = json.rfind('}');
  if (last == std::string_view::npos) return {};
  std::string out;
  out.reserve(last + 1);
  for (char c : json.substr(0, last + 1)) {
    if (c != '\n') out += c;
  }
  return out;
}

bool read_ses_notification(std::string_view text, ReportBuilder& out, BounceReport& report) {
  nlohmann::json doc = nlohmann::json::parse(ses_json_text(text), nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return false;
  // An SNS envelope carries the notification as a JSON string in "Message".
  if (std::string inner = json_string(doc, "Message"); !inner.empty()) {
    nlohmann::json unwrapped = nlohmann::json::parse(inner, nullptr, false);
    if (!unwrapped.is_discarded() && unwrapped.is_object()) doc = std::move(unwrapped);
  }
  std::string type = json_string(doc, "notificationType");
  if (type.empty()) type = json_string(doc, "eventType");
  if (const nlohmann::json* mail = json_member(doc, "mail")) {
    if (const nlohmann::json* headers = json_member(*mail, "headers");
        headers && headers->is_array()) {
      HeaderBlock block;
      std::vector<std::string> names;
      for (const nlohmann::json& h : *headers) {
        std::string name = json_string(h, "name");
        if (name.empty()) continue;
        names.push_back(name);
      }
      for (const nlohmann::json& h : *headers) {
        if (json_string(h, "name").empty()) continue;
        block.fields().push_back(HeaderField{{}, json_string(h, "value")});
      }
      // Names are stored in the report builder's lifetime through `names`.
      for (std::size_t k = 0; k < block.fields().size(); ++k) block.fields()[k].name = names[k];
      read_original_headers(block, report.original);
    }
    if (report.original.message_id.empty()) {
      std::string id = json_string(*mail, "messageId");
      if (!id.empty()) report.original.message_id = "<" + id + ">";
    }
    if (report.original.return_path.empty()) {
      report.original.return_path = find_address(json_string(*mail, "source"));
    }
  }
  bool any = false;
  if (type == "Bounce") {
    const nlohmann::json* bounce = json_member(doc, "bounce");
    if (!bounce) return false;
    std::string bounce_type = json_string(*bounce, "bounceType");
    std::string sub_type = json_string(*bounce, "bounceSubType");
    report.reporting_mta = json_string(*bounce, "reportingMTA");
    const nlohmann::json* list = json_member(*bounce, "bouncedRecipients");
    if (!list || !list->is_array()) return false;
    for (const nlohmann::json& r : *list) {
      BounceRecipient out_r;
      out_r.address = find_address(json_string(r, "emailAddress"));
      std::string diagnostic = json_string(r, "diagnosticCode");
      out_r.status = effective_status(json_string(r, "status"), diagnostic);
      out_r.diagnostic = one_line(diagnostic.empty() ? bounce_type + " " + sub_type : diagnostic);
      out_r.kind = bounce_type == "Permanent"
                       ? classify_failure(out_r.status, out_r.diagnostic + " " + sub_type,
                                          json_string(r, "action"))
                       : FeedbackKind::kSoft;
      if (bounce_type == "Permanent" && sub_type == "NoEmail") out_r.kind = FeedbackKind::kHard;
      any = any || !out_r.address.empty();
      out.Add(std::move(out_r));
    }
  } else if (type == "Complaint") {
    const nlohmann::json* complaint = json_member(doc, "complaint");
    if (!complaint) return false;
    std::string feedback = json_string(*complaint, "complaintFeedbackType");
    const nlohmann::json* list = json_member(*complaint, "complainedRecipients");
    if (!list || !list->is_array()) return false;
    for (const nlohmann::json& r : *list) {
      std::string address = find_address(json_string(r, "emailAddress"));
      any = any || !address.empty();
      out.Add(BounceRecipient{
          address, {}, FeedbackKind::kComplaint, {}, feedback.empty() ? "abuse" : feedback});
    }
  } else if (type == "Delivery") {
    const nlohmann::json* delivery = json_member(doc, "delivery");
    const nlohmann::json* list = delivery ? json_member(*delivery, "recipients") : nullptr;
    if (!list || !list->is_array()) return false;
    std::string diagnostic = one_line(json_string(*delivery, "smtpResponse"));
    for (const nlohmann::json& r : *list) {
      std::string address = r.is_string() ? find_address(r.get<std::string>()) : std::string();
      any = any || !address.empty();
      out.Add(BounceRecipient{address, {}, FeedbackKind::kDelivered, "2.0.0", diagnostic});
    }
  }
  return any;
}

// --- plain-text bounces --------------------------------------------------------

// Sender local parts and display names of bounce generators.
bool is_bounce_sender(std::string_view from_lower) {
  constexpr std::string_view kSenders[] = {
      "mailer-daemon", "postmaster",         "mail delivery", "mail administrator",
      "mailer_daemon", "maildelivery",       "mail system",   "mdaemon",
      "bounce",        "microsoftexchange",  "nobody@",       "mail.delivery",
      "smtp gateway",  "delivery subsystem", "post_master"};
  for (std::string_view s : kSenders) {
    if (contains(from_lower, s)) return true;
  }
  return false;
}

bool is_bounce_subject(std::string_view subject_lower) {
  constexpr std::string_view kSubjects[] = {"undeliver",
                                            "delivery status notification",
                                            "failure notice",
                                            "returned mail",
                                            "mail delivery failed",
                                            "delivery failure",
                                            "delivery failed",
                                            "failed delivery",
                                            "non-delivery",
                                            "nondeliverable",
                                            "non deliverable",
                                            "undelivered",
                                            "could not be delivered",
                                            "delivery notification",
                                            "warning: message",
                                            "delayed mail",
                                            "delivery delayed",
                                            "mail system error",
                                            "returned to sender",
                                            "delivery has failed",
                                            "not delivered",
                                            "delivery problem",
                                            "mail could not",
                                            "rejected:",
                                            "message not delivered",
                                            "delivery report",
                                            "error sending message",
                                            "unable to deliver"};
  for (std::string_view s : kSubjects) {
    if (contains(subject_lower, s)) return true;
  }
  return false;
}

// Words of a delay warning: the MTA still tries.
bool is_delay_notice(std::string_view lower_text) {
  constexpr std::string_view kDelay[] = {"has been delayed",
                                         "delivery delayed",
                                         "not yet been delivered",
                                         "will continue trying",
                                         "will retry",
                                         "this is a warning message only",
                                         "still trying",
                                         "temporary failure",
                                         "delivery attempts will continue",
                                         "delay notification",
                                         "not been delivered yet"};
  for (std::string_view s : kDelay) {
    if (contains(lower_text, s)) return true;
  }
  return false;
}

// When `line` names a recipient the way bounce texts do, its address and the
// text after it on the same line:
//   <user@example.com>: reason          (Postfix, qmail, Yahoo)
//   <user@example.com>... reason        (Sendmail)
//   user@example.com: reason            (OpenSMTPD)
//   user@example.com... reason          (Sendmail's transcript)
//   user@example.com                    (Exim, Gmail, Sendmail, Exchange)
//   user@example.com on 1/2/2020 ...    (Exchange 2003)
//   user@example.com (user@example.com)<mailto:...>   (Exchange 2007+)
std::optional<std::pair<std::string, std::string_view>> recipient_line(std::string_view line) {
  std::string_view t = trim(line);
  if (t.empty() || t.size() > 600) return std::nullopt;
  if (t.front() == '<') {
    std::size_t close = t.find('>');
    if (close == std::string_view::npos) return std::nullopt;
    std::string address = normalize_address(t.substr(1, close - 1));
    if (address.empty()) return std::nullopt;
    std::string_view rest = trim(t.substr(close + 1));
    if (rest.starts_with("(expanded from")) {
      std::size_t end = rest.find(')');
      rest = end == std::string_view::npos ? std::string_view() : trim(rest.substr(end + 1));
    }
    if (rest.empty()) return std::make_pair(address, rest);
    if (rest.front() == ':') return std::make_pair(address, trim(rest.substr(1)));
    if (rest.starts_with("...")) return std::make_pair(address, trim(rest.substr(3)));
    return std::nullopt;
  }
  std::size_t end = 0;
  while (end < t.size() && t[end] != ' ' && t[end] != '\t' && t[end] != '<' && t[end] != '(') {
    ++end;
  }
  std::string_view token = t.substr(0, end);
  // Sendmail: "user@example.com... Deferred: 421 4.7.0 Try again later".
  bool colon = token.ends_with(":");
  if (colon) {
    token.remove_suffix(1);
  } else if (token.ends_with("...")) {
    token.remove_suffix(3);
    colon = true;
  }
  std::string address = normalize_address(token);
  if (address.empty()) return std::nullopt;
  std::string_view rest = trim(t.substr(end));
  if (colon) return std::make_pair(address, rest);
  if (rest.empty() || rest.starts_with("on ") || rest.starts_with("(") ||
      rest.starts_with("<mailto:") || rest.starts_with("<")) {
    return std::make_pair(address, std::string_view());
  }
  return std::nullopt;
}

struct TextRecipient {
  std::string address;
  std::string reason;
};

struct SentenceRecipient {
  std::string address;
  bool reason_in_next_paragraph = false;
};

// Notices that name the recipient in a sentence:
//   There was an error delivering your mail to <user@example.com>.
//                          (dma; the reason is the paragraph after it)
//   Your message to <user@example.com> was automatically rejected:
//   Quota exceeded (mailbox for user is full)
//                          (Dovecot; the reason is on the lines after it)
std::optional<SentenceRecipient> sentence_recipient(std::string_view line) {
  struct Lead {
    std::string_view text;
    bool next_paragraph;
  };
  constexpr Lead kLeads[] = {{"there was an error delivering your mail to <", true},
                             {"your message to <", false}};
  std::string_view t = trim(line);
  if (t.size() > 600) return std::nullopt;
  for (const Lead& lead : kLeads) {
    if (t.size() <= lead.text.size() || !iequals(t.substr(0, lead.text.size()), lead.text)) {
      continue;
    }
    std::string_view rest = t.substr(lead.text.size());
    std::size_t close = rest.find('>');
    if (close == std::string_view::npos) return std::nullopt;
    if (!lead.next_paragraph &&
        !iequals(trim(rest.substr(close + 1)), "was automatically rejected:")) {
      return std::nullopt;
    }
    std::string address = normalize_address(rest.substr(0, close));
    if (address.empty()) return std::nullopt;
    return SentenceRecipient{std::move(address), lead.next_paragraph};
  }
  return std::nullopt;
}

// Finds the recipients a plain-text notice names, each with the lines that
// follow it up to a blank line or the next recipient.
std::vector<TextRecipient> scan_text_recipients(std::string_view text,
                                                const std::vector<std::string>& not_recipients,
                                                std::size_t max_recipients) {
  std::vector<TextRecipient> found;
  TextRecipient* open = nullptr;
  std::size_t reason_lines = 0;
  bool reason_in_next_paragraph = false;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t eol = text.find('\n', pos);
    std::string_view line =
        text.substr(pos, (eol == std::string_view::npos ? text.size() : eol) - pos);
    pos = eol == std::string_view::npos ? text.size() : eol + 1;
    if (auto sentence = sentence_recipient(line)) {
      auto same = std::find_if(found.begin(), found.end(), [&](const TextRecipient& r) {
        return iequals(r.address, sentence->address);
      });
      if (same == found.end()) {
        if (found.size() >= max_recipients) break;
        found.push_back(TextRecipient{std::move(sentence->address), {}});
        same = found.end() - 1;
      }
      open = &*same;
      reason_lines = 0;
      reason_in_next_paragraph = sentence->reason_in_next_paragraph;
      continue;
    }
    if (auto hit = recipient_line(line)) {
      bool excluded = false;
      for (const std::string& other : not_recipients)
        excluded = excluded || iequals(other, hit->first);
      std::string_view local = std::string_view(hit->first).substr(0, hit->first.find('@'));
      if (iequals(local, "postmaster") || iequals(local, "mailer-daemon")) excluded = true;
      if (!excluded) {
        auto same = std::find_if(found.begin(), found.end(), [&](const TextRecipient& r) {
          return iequals(r.address, hit->first);
        });
        if (same == found.end()) {
          if (found.size() >= max_recipients) break;
          found.push_back(TextRecipient{hit->first, {}});
          same = found.end() - 1;
        }
        open = &*same;
        reason_lines = 0;
        reason_in_next_paragraph = false;
        if (!hit->second.empty()) {
          if (!open->reason.empty()) open->reason += ' ';
          open->reason += hit->second;
        }
        continue;
      }
    }
    if (!open) continue;
    std::string_view t = trim(line);
    if (t.empty() && reason_in_next_paragraph && reason_lines == 0) {
      reason_in_next_paragraph = false;
      continue;
    }
    if (t.empty() || reason_lines >= kMaxReasonLines) {
      open = nullptr;
      continue;
    }
    if (open->reason.size() < kMaxDiagnosticBytes) {
      if (!open->reason.empty()) open->reason += ' ';
      open->reason += t;
    }
    ++reason_lines;
  }
  return found;
}

// The last resort of a notice that names nobody the usual ways: the address
// of its session transcript's RCPT TO (">>> RCPT To:<user@example.com>",
// Verizon's "RCPT TO: user@example.com").
std::vector<TextRecipient> scan_rcpt_to_lines(std::string_view text,
                                              const std::vector<std::string>& not_recipients) {
  std::vector<TextRecipient> found;
  const std::string lower = ascii_lower(text);
  std::size_t at = lower.find("rcpt to:");
  if (at == std::string::npos) return found;
  std::size_t eol = text.find('\n', at);
  std::string address = find_address(
      text.substr(at + 8, eol == std::string_view::npos ? std::string_view::npos : eol - at - 8));
  for (const std::string& other : not_recipients) {
    if (iequals(other, address)) return found;
  }
  if (!address.empty()) found.push_back(TextRecipient{address, {}});
  return found;
}

// Reads a bounce that has no machine-readable part.
bool read_text_bounce(std::string_view notice, const std::vector<std::string>& not_recipients,
                      ReportBuilder& out, std::size_t max_recipients) {
  std::vector<TextRecipient> found = scan_text_recipients(notice, not_recipients, max_recipients);
  if (found.empty()) found = scan_rcpt_to_lines(notice, not_recipients);
  if (found.empty()) return false;
  const std::string notice_lower = ascii_lower(notice);
  const bool delayed = is_delay_notice(notice_lower);
  const std::string whole = one_line(notice);
  for (TextRecipient& t : found) {
    BounceRecipient r;
    r.address = std::move(t.address);
    std::string status = find_status(t.reason);
    if (status.empty()) status = find_reply_code_status(t.reason);
    std::string evidence = t.reason;
    if (status.empty()) {
      // Gmail and others put the reason paragraphs away from the address.
      status = find_status(notice);
      if (status.empty()) status = find_reply_code_status(notice);
      evidence = whole;
    }
    r.status = status;
    r.diagnostic = one_line(t.reason.empty() ? whole : t.reason);
    r.kind = delayed ? FeedbackKind::kSoft : classify_failure(status, evidence, "");
    out.Add(std::move(r));
  }
  return true;
}

// Recipients from an X-Failed-Recipients header ("a@x, b@y"), with the
// whole notice as the evidence for each.
bool read_failed_recipients_header(std::string_view header, std::string_view notice,
                                   ReportBuilder& out) {
  if (trim(header).empty()) return false;
  const std::string whole = one_line(notice);
  std::string status = find_status(notice);
  if (status.empty()) status = find_reply_code_status(notice);
  const FeedbackKind kind = is_delay_notice(ascii_lower(notice))
                                ? FeedbackKind::kSoft
                                : classify_failure(status, whole, "");
  bool any = false;
  std::size_t start = 0;
  while (start <= header.size()) {
    std::size_t comma = header.find(',', start);
    std::string_view item = header.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    std::string address = find_address(item);
    if (!address.empty()) {
      out.Add(BounceRecipient{address, {}, kind, status, whole});
      any = true;
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return any;
}

// Sendmail names the recipients of one failed transaction on one line:
// "a@x.example,b@x.example... Deferred: 421 4.7.0 Try again later". The text
// after the "... " of the first such line that lists `address`.
std::string listed_reason(std::string_view notice, std::string_view lower_notice,
                          std::string_view address) {
  const std::string needle = ascii_lower(address);
  std::size_t at = lower_notice.find(needle);
  for (int n = 0; n < 8 && at != std::string_view::npos; ++n) {
    std::size_t eol = lower_notice.find('\n', at);
    if (eol == std::string_view::npos) eol = lower_notice.size();
    std::size_t dots = lower_notice.find("... ", at);
    if (dots != std::string_view::npos && dots < eol) {
      return one_line(notice.substr(dots + 4, eol - dots - 4));
    }
    at = lower_notice.find(needle, eol);
  }
  return {};
}

// A DSN without Diagnostic-Code (Sendmail's delay warnings, every OpenSMTPD
// report) often explains itself in the notice: "<user@example.com>...
// Deferred: Connection timed out", "user@example.com: 550 5.1.1 User
// unknown". A failure is then classified again with that text, since the
// DSN alone gave only its class ("Status: 5.0.0").
void fill_missing_diagnostics(std::string_view notice, std::string_view lower_notice,
                              BounceReport& report) {
  bool missing = false;
  for (const BounceRecipient& r : report.recipients) missing = missing || r.diagnostic.empty();
  if (!missing) return;
  const std::vector<TextRecipient> found = scan_text_recipients(notice, {}, 1000);
  for (BounceRecipient& r : report.recipients) {
    if (!r.diagnostic.empty()) continue;
    for (const TextRecipient& t : found) {
      if (iequals(t.address, r.address) && !t.reason.empty()) r.diagnostic = one_line(t.reason);
    }
    if (r.diagnostic.empty()) r.diagnostic = listed_reason(notice, lower_notice, r.address);
    if (!r.diagnostic.empty() && r.kind != FeedbackKind::kDelivered && r.status.starts_with('5')) {
      r.status = effective_status(r.status, r.diagnostic);
      r.kind = classify_failure(r.status, r.diagnostic, "failed",
                                recipient_context(lower_notice, r.address));
    }
  }
}

// --- RFC 3834 ------------------------------------------------------------------

bool is_auto_reply(const HeaderBlock& headers) {
  std::string auto_submitted = ascii_lower(trim(headers.get("Auto-Submitted")));
  if (auto_submitted.starts_with("auto-replied")) return true;
  for (std::string_view name : {"X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Vacation"}) {
    if (headers.has(name)) {
      std::string v = ascii_lower(trim(headers.get(name)));
      if (v != "no" && v != "false") return true;
    }
  }
  std::string precedence = ascii_lower(trim(headers.get("Precedence")));
  if (precedence == "auto_reply" || precedence == "auto-reply") return true;
  std::string subject = ascii_lower(trim(headers.get("Subject")));
  constexpr std::string_view kPrefixes[] = {"auto:",
                                            "automatic reply",
                                            "autoreply",
                                            "auto-reply",
                                            "auto reply",
                                            "out of office",
                                            "out of the office",
                                            "vacation",
                                            "abwesenheitsnotiz",
                                            "away from",
                                            "réponse automatique",
                                            "respuesta automática",
                                            "risposta automatica",
                                            "automatisch antwoord"};
  for (std::string_view p : kPrefixes) {
    if (subject.starts_with(p)) return true;
  }
  constexpr std::string_view kAnywhere[] = {"out of office",    "out of the office", "on vacation",
                                            "automatic reply",  "auto-reply",        "autoreply",
                                            "abwesenheitsnotiz"};
  for (std::string_view p : kAnywhere) {
    if (contains(subject, p)) return true;
  }
  return auto_submitted.starts_with("auto-generated") && contains(subject, "vacation");
}

void parse_into(std::string_view message, const BounceParserLimits& limits, BounceReport& report) {
  if (message.size() > limits.max_message_bytes) {
    message = message.substr(0, limits.max_message_bytes);
    report.truncated = true;
  }
  MimeLimits mime_limits;
  mime_limits.max_parts = limits.max_parts;
  mime_limits.max_depth = limits.max_depth;
  MimeMessage mime(message, mime_limits);
  const HeaderBlock& top = mime.headers();
  ReportBuilder out(report, limits);

  for (std::string_view name :
       {"To", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To"}) {
    for (const HeaderField& f : top.fields()) {
      if (!iequals(f.name, name)) continue;
      std::string address = find_address(f.value);
      if (!address.empty()) report.verp_headers.emplace_back(std::string(name), address);
    }
  }

  // The quoted original message, from its own part when there is one.
  const MimePart* delivery_status = nullptr;
  const MimePart* feedback = nullptr;
  const MimePart* disposition = nullptr;
  std::string notice;
  for (const MimePart& part : mime.leaves()) {
    const std::string& type = part.content_type.media_type;
    if (is_original_message_type(type)) {
      std::string_view unused;
      read_original_headers(parse_header_block(part.body, 512, &unused), report.original);
    } else if (type == "message/delivery-status" || type == "message/global-delivery-status") {
      if (!delivery_status) delivery_status = &part;
    } else if (type == "message/feedback-report") {
      if (!feedback) feedback = &part;
    } else if (type == "message/disposition-notification" ||
               type == "message/global-disposition-notification") {
      if (!disposition) disposition = &part;
    } else if (type.starts_with("text/") && type != "text/html") {
      if (notice.size() < (64u << 10)) {
        notice.append(part.body.substr(0, (64u << 10)));
        // A blank line after each part: one part's last paragraph does not
        // run on into the next part (a multipart's preamble comes last).
        if (!notice.ends_with('\n')) notice += '\n';
        notice += '\n';
      }
    }
  }
  if (notice.empty()) {
    // An HTML-only notice: its text with the tags taken out.
    for (const MimePart& part : mime.leaves()) {
      if (part.content_type.media_type != "text/html") continue;
      bool in_tag = false;
      for (char c : part.body.substr(0, 64u << 10)) {
        if (c == '<') {
          in_tag = true;
          notice += ' ';
        } else if (c == '>') {
          in_tag = false;
        } else if (!in_tag) {
          notice += c;
        }
      }
      break;
    }
  }
  std::string_view quoted;
  std::string_view readable = split_at_original(notice, &quoted);
  if (!quoted.empty()) {
    std::string_view q = quoted;
    while (!q.empty() && trim(q.substr(0, q.find('\n'))).empty() &&
           q.find('\n') != std::string_view::npos) {
      q.remove_prefix(q.find('\n') + 1);
    }
    std::string_view unused;
    read_original_headers(parse_header_block(q, 512, &unused), report.original);
  }

  // Exchange, Gmail and carriers answer "In-Reply-To" the message they bounce.
  if (report.original.message_id.empty()) {
    report.original.message_id = std::string(trim(top.get("In-Reply-To")));
  }

  const std::string lower_notice = context_text(readable);
  if (delivery_status && read_delivery_status(delivery_status->body, lower_notice, out, report)) {
    report.format = ReportFormat::kDeliveryStatus;
    fill_missing_diagnostics(readable, lower_notice, report);
    return;
  }
  if (feedback && read_feedback_report(feedback->body, report.original, out, report)) {
    report.format = ReportFormat::kFeedbackReport;
    return;
  }
  if (disposition && read_disposition_notification(disposition->body, readable, out, report)) {
    report.format = ReportFormat::kDispositionNotification;
    return;
  }
  std::string_view json = trim(readable);
  if (json.starts_with("{") && json.find("Type") != std::string_view::npos &&
      read_ses_notification(json, out, report)) {
    report.format = ReportFormat::kSesNotification;
    return;
  }
  const std::string from_lower = ascii_lower(top.get("From"));
  const std::string subject_lower = ascii_lower(top.get("Subject"));
  const bool bounce_like = is_bounce_sender(from_lower) || is_bounce_subject(subject_lower) ||
                           mime.content_type().media_type == "multipart/report" ||
                           delivery_status != nullptr;
  if (bounce_like) {
    // DSN fields written into the text (MTAs that inline them) come first.
    const std::size_t at = ascii_lower(readable).find("final-recipient:");
    if (at != std::string::npos) {
      // From the start of its paragraph: some MTAs (PMDF) write Action and
      // Status before the recipient fields.
      std::size_t paragraph = readable.rfind("\n\n", at);
      std::string_view fields =
          readable.substr(paragraph == std::string_view::npos ? 0 : paragraph + 2);
      if (read_delivery_status(fields, lower_notice, out, report)) {
        report.format = ReportFormat::kDeliveryStatus;
        return;
      }
    }
    std::vector<std::string> not_recipients;
    for (const auto& [name, address] : report.verp_headers) not_recipients.push_back(address);
    std::string from = find_address(top.get("From"));
    if (!from.empty()) not_recipients.push_back(from);
    if (!report.original.from.empty()) not_recipients.push_back(report.original.from);
    if (!report.original.return_path.empty()) not_recipients.push_back(report.original.return_path);
    if (read_text_bounce(readable, not_recipients, out, limits.max_recipients)) {
      report.format = ReportFormat::kMtaText;
      return;
    }
    // Exim names the failed addresses in a header even when its notice gives
    // only local parts.
    if (read_failed_recipients_header(top.get("X-Failed-Recipients"), readable, out)) {
      report.format = ReportFormat::kMtaText;
      return;
    }
  }
  if (!bounce_like && is_auto_reply(top)) {
    std::string address = find_address(top.get("From"));
    if (address.empty()) address = find_address(top.get("Reply-To"));
    if (address.empty()) address = find_address(top.get("Sender"));
    if (address.empty()) address = find_address(top.get("Return-Path"));
    if (report.original.message_id.empty()) {
      report.original.message_id = std::string(trim(top.get("In-Reply-To")));
    }
    out.Add(
        BounceRecipient{address, {}, FeedbackKind::kAutoReply, {}, one_line(top.get("Subject"))});
    report.format = ReportFormat::kAutoReply;
    return;
  }
  report.format = ReportFormat::kNotAReport;
}

}  // namespace

std::string_view to_string(FeedbackKind kind) {
  switch (kind) {
    case FeedbackKind::kHard:
      return "hard";
    case FeedbackKind::kSoft:
      return "soft";
    case FeedbackKind::kComplaint:
      return "complaint";
    case FeedbackKind::kAutoReply:
      return "auto_reply";
    case FeedbackKind::kDelivered:
      return "delivered";
  }
  return "soft";
}

std::string_view to_string(ReportFormat format) {
  switch (format) {
    case ReportFormat::kNotAReport:
      return "not_a_report";
    case ReportFormat::kDeliveryStatus:
      return "delivery_status";
    case ReportFormat::kFeedbackReport:
      return "feedback_report";
    case ReportFormat::kAutoReply:
      return "auto_reply";
    case ReportFormat::kSesNotification:
      return "ses_notification";
    case ReportFormat::kMtaText:
      return "mta_text";
    case ReportFormat::kDispositionNotification:
      return "disposition_notification";
  }
  return "not_a_report";
}

BounceReport parse_bounce(std::string_view message, const BounceParserLimits& limits) {
  BounceReport report;
  try {
    parse_into(message, limits, report);
  } catch (...) {
    // Only allocation failure can get here; what was read so far stands.
  }
  return report;
}

}  // namespace mailer::lists
