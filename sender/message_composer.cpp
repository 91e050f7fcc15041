// Per-delivery message composition; see message_composer.h.
#include "sender/message_composer.h"

#include <fmt/format.h>

#include <ctime>
#include <stdexcept>

namespace mailer::sender {
namespace {

// Feedback-ID fields and Message-ID parts keep to a conservative set.
std::string FeedbackField(std::string_view text) {
  std::string out;
  for (char c : text) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    out += ok ? c : '-';
  }
  return out.empty() ? "-" : out;
}

// Accepts "https://host[/path]" (or http:// for loopback rehearsals) made of
// URL characters that are safe inside "<...>" in a header.
std::string CheckedBaseUrl(std::string_view url) {
  while (!url.empty() && url.back() == '/') url.remove_suffix(1);
  const bool scheme_ok = url.starts_with("https://") || url.starts_with("http://");
  bool chars_ok = !url.empty();
  for (char c : url) {
    const auto b = static_cast<unsigned char>(c);
    if (b <= 0x20 || b >= 0x7F || c == '<' || c == '>' || c == '"' || c == '\\' || c == ',') {
      chars_ok = false;
    }
  }
  if (!scheme_ok || !chars_ok || url.size() <= std::string_view("https://").size()) {
    throw MimeError(fmt::format("unsubscribe base URL \"{}\" must be an https:// URL",
                                SanitizeHeaderText(url)));
  }
  return std::string(url);
}

// Appends a part's Content-* headers, blank line and encoded content. Inside
// a multipart body the CRLF before the next delimiter belongs to the
// delimiter (RFC 2046 5.1.1), so a quoted-printable text that ends with a
// line break gets one more to keep it.
void AppendPart(std::string& out, std::string_view type, const std::string& content,
                bool in_multipart) {
  const TransferEncoding encoding = ChooseTransferEncoding(content);
  AppendHeader(out, "Content-Type", fmt::format("{}; charset=UTF-8", type));
  AppendHeader(out, "Content-Transfer-Encoding", TransferEncodingName(encoding));
  out += "\r\n";
  if (encoding == TransferEncoding::kBase64) {
    out += EncodeBase64Text(content);
    return;
  }
  out += EncodeQuotedPrintable(content);
  if (in_multipart && !content.empty() && (content.back() == '\n' || content.back() == '\r')) {
    out += "\r\n";
  }
}

}  // namespace

std::vector<UnknownField> CheckCampaignTemplates(const CampaignContent& campaign,
                                                 const std::set<std::string, std::less<>>& known) {
  std::vector<UnknownField> all =
      CompiledTemplate::Compile(campaign.subject, "subject", TemplateEscaping::kNone)
          .UnknownFields(known);
  auto add = [&](const std::optional<std::string>& source, std::string_view name) {
    if (!source) return;
    auto more =
        CompiledTemplate::Compile(*source, name, TemplateEscaping::kNone).UnknownFields(known);
    all.insert(all.end(), more.begin(), more.end());
  };
  add(campaign.text, "text");
  add(campaign.html, "html");
  return all;
}

std::string FormatRfc5322Date(std::chrono::system_clock::time_point when) {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const std::time_t t = std::chrono::system_clock::to_time_t(when);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{}, {:02} {} {:04} {:02}:{:02}:{:02} +0000", kDays[tm.tm_wday], tm.tm_mday,
                     kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

MessageComposer::MessageComposer(const CampaignContent& campaign, ComposerSettings settings)
    : campaign_id_(campaign.campaign_id),
      from_(Mailbox::Parse(campaign.from)),
      settings_(std::move(settings)),
      subject_(CompiledTemplate::Compile(campaign.subject, "subject", TemplateEscaping::kNone)) {
  if (!campaign.text && !campaign.html) {
    throw std::invalid_argument(
        fmt::format("campaign {}: needs a text or an HTML body", campaign.campaign_id));
  }
  if (!settings_.tokens || !settings_.verp) {
    throw std::invalid_argument(
        "message composer needs an unsubscribe token codec and a VERP codec");
  }
  if (campaign.text) {
    text_ = CompiledTemplate::Compile(*campaign.text, "text", TemplateEscaping::kNone);
  }
  if (campaign.html) {
    html_ = CompiledTemplate::Compile(*campaign.html, "html", TemplateEscaping::kHtml);
  }
  if (campaign.reply_to) {
    reply_to_ = Mailbox::Parse(*campaign.reply_to);
    reply_to_header_ = EncodeMailboxHeader(*reply_to_, std::string_view("Reply-To").size());
  }
  from_header_ = EncodeMailboxHeader(from_, std::string_view("From").size());
  feedback_id_ = fmt::format("{}:{}:{}", campaign_id_, FeedbackField(campaign.list_id),
                             FeedbackField(settings_.feedback_sender_id));
  message_id_domain_ = settings_.message_id_domain.empty()
                           ? from_.address.domain()
                           : MailAddress::Parse("x@" + settings_.message_id_domain).domain();
  unsubscribe_base_ = CheckedBaseUrl(settings_.unsubscribe_base_url) + "/u/";
  if (settings_.unsubscribe_mailto) {
    unsubscribe_mailto_ = MailAddress::Parse(*settings_.unsubscribe_mailto);
  }
}

std::vector<UnknownField> MessageComposer::UnknownFields(
    const std::set<std::string, std::less<>>& known) const {
  std::vector<UnknownField> all = subject_.UnknownFields(known);
  for (const auto* tpl : {text_ ? &*text_ : nullptr, html_ ? &*html_ : nullptr}) {
    if (tpl == nullptr) continue;
    auto more = tpl->UnknownFields(known);
    all.insert(all.end(), more.begin(), more.end());
  }
  return all;
}

std::string MessageComposer::Body(const MergeFields& fields, std::int64_t delivery_id,
                                  std::string& headers) const {
  std::string text;
  std::string html;
  if (text_) text_->RenderTo(fields, text);
  if (html_) html_->RenderTo(fields, html);
  std::string body;
  if (text_ && html_) {
    // "=_" never appears in quoted-printable or base64 output (RFC 2045 6.7
    // note 4), so no rendered content can contain the boundary.
    const std::string boundary = fmt::format("=_mailer_{}_{}", campaign_id_, delivery_id);
    AppendHeader(headers, "Content-Type",
                 fmt::format("multipart/alternative; boundary=\"{}\"", boundary));
    body.reserve(text.size() + html.size() + 512);
    body += fmt::format("--{}\r\n", boundary);
    AppendPart(body, "text/plain", text, true);
    body += fmt::format("--{}\r\n", boundary);
    AppendPart(body, "text/html", html, true);
    body += fmt::format("--{}--\r\n", boundary);
    return body;
  }
  // One part: its Content-* headers are the message's own.
  std::string part;
  AppendPart(part, text_ ? "text/plain" : "text/html", text_ ? text : html, false);
  const std::size_t split = part.find("\r\n\r\n");
  headers.append(part, 0, split + 2);
  return part.substr(split + 4);
}

ComposedMessage MessageComposer::Compose(DeliveryRecipient recipient,
                                         std::chrono::system_clock::time_point now) const {
  MailAddress to = MailAddress::Parse(recipient.email);
  const std::string token = settings_.tokens->Issue(
      DeliveryIdentity{recipient.delivery_id, campaign_id_, recipient.recipient_id});
  std::string unsubscribe_url = unsubscribe_base_ + token;

  MergeFields& fields = recipient.fields;
  fields.SetEmail(to.header_form());
  fields.SetUnsubscribeUrl(unsubscribe_url);

  const std::string message_id =
      fmt::format("<{}.{}@{}>", recipient.delivery_id, campaign_id_, message_id_domain_);
  std::string list_unsubscribe = fmt::format("<{}>", unsubscribe_url);
  if (unsubscribe_mailto_) {
    list_unsubscribe += fmt::format(", <mailto:{}?subject=unsubscribe-{}>",
                                    unsubscribe_mailto_->header_form(), token);
  }

  std::string headers;
  headers.reserve(1024);
  AppendHeader(headers, "From", from_header_);
  AppendHeader(headers, "To", EncodeMailboxHeader(Mailbox{"", to}, 2));
  if (reply_to_) AppendHeader(headers, "Reply-To", reply_to_header_);
  AppendHeader(
      headers, "Subject",
      EncodeUnstructuredHeader(subject_.Render(fields), std::string_view("Subject").size()));
  AppendHeader(headers, "Date", FormatRfc5322Date(now));
  AppendHeader(headers, "Message-ID", message_id);
  AppendHeader(headers, "MIME-Version", "1.0");
  AppendHeader(headers, "List-Unsubscribe", list_unsubscribe);
  AppendHeader(headers, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click");
  AppendHeader(headers, "Feedback-ID", feedback_id_);
  const std::string body = Body(fields, recipient.delivery_id, headers);

  ComposedMessage out{settings_.verp->ReturnPath(recipient.delivery_id),
                      std::move(to),
                      message_id,
                      std::move(unsubscribe_url),
                      {}};
  out.data.reserve(headers.size() + 2 + body.size());
  out.data = std::move(headers);
  out.data += "\r\n";
  out.data += body;
  return out;
}

}  // namespace mailer::sender
