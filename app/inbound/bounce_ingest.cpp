#include "app/inbound/bounce_ingest.h"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <array>
#include <cctype>
#include <charconv>
#include <optional>

#include "app/inbound/smtp_session.h"
#include "lists/email_address.h"
#include "sender/unsubscribe_token.h"
#include "sender/verp.h"

namespace mailer::app {
namespace {

// The local-part prefix of our VERP return paths (sender::DispatcherSettings).
constexpr std::string_view kVerpPrefix = "bounce";
// Longest Message-ID used as a key; longer ones are hashed with the content.
constexpr std::size_t kMaxMessageIdBytes = 500;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string sha256_hex(std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md.data(), &len, EVP_sha256(), nullptr);
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) hex += fmt::format("{:02x}", md[i]);
  return hex;
}

std::optional<std::int64_t> parse_id(std::string_view digits) {
  std::int64_t id = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), id);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || id < 0) {
    return std::nullopt;
  }
  return id;
}

// "bounce+<digits>-<anything>@domain": an address that claims to be one of
// our return paths; its delivery id, whether or not the tag verifies.
std::optional<std::int64_t> claimed_verp_id(std::string_view address) {
  const std::string a = lower(address);
  const std::string head = std::string(kVerpPrefix) + "+";
  if (a.rfind(head, 0) != 0) return std::nullopt;
  const std::size_t at = a.rfind('@');
  const std::size_t dash = a.find('-', head.size());
  if (at == std::string::npos || dash == std::string::npos || dash > at) return std::nullopt;
  return parse_id(std::string_view(a).substr(head.size(), dash - head.size()));
}

// The value of header `name` among the top-level headers of `message`
// (unfolded, trimmed), or "".
std::string top_header(std::string_view message, std::string_view name) {
  std::size_t pos = 0;
  while (pos < message.size()) {
    std::size_t eol = message.find_first_of("\r\n", pos);
    if (eol == std::string_view::npos) eol = message.size();
    const std::string_view line = message.substr(pos, eol - pos);
    if (line.empty()) break;
    std::size_t next = eol;
    if (next < message.size() && message[next] == '\r') ++next;
    if (next < message.size() && message[next] == '\n') ++next;
    if (line.size() > name.size() && line[name.size()] == ':' &&
        lower(line.substr(0, name.size())) == lower(name)) {
      std::string value(line.substr(name.size() + 1));
      // Folded continuation lines.
      while (next < message.size() && (message[next] == ' ' || message[next] == '\t')) {
        std::size_t e = message.find_first_of("\r\n", next);
        if (e == std::string_view::npos) e = message.size();
        value += message.substr(next, e - next);
        next = e;
        if (next < message.size() && message[next] == '\r') ++next;
        if (next < message.size() && message[next] == '\n') ++next;
      }
      const std::size_t b = value.find_first_not_of(" \t");
      const std::size_t e = value.find_last_not_of(" \t");
      return b == std::string::npos ? std::string() : value.substr(b, e - b + 1);
    }
    pos = next;
  }
  return {};
}

}  // namespace

std::vector<lists::BounceRecipient> report_recipients(const lists::BounceReport& report) {
  std::vector<lists::BounceRecipient> recipients = report.recipients;
  if (recipients.empty() && report.format == lists::ReportFormat::kFeedbackReport) {
    lists::BounceRecipient redacted;
    redacted.kind = lists::FeedbackKind::kComplaint;
    redacted.diagnostic = "complaint (recipient redacted)";
    recipients.push_back(std::move(redacted));
  }
  return recipients;
}

std::string report_message_key(std::string_view message) {
  const std::string id = top_header(message, "Message-ID");
  if (!id.empty() && id.size() <= kMaxMessageIdBytes) return "message-id:" + id;
  return "sha256:" + sha256_hex(message);
}

BounceIngester::BounceIngester(db::Database& db, const Config& config, std::string secret)
    : store_(db), config_(config), secret_(std::move(secret)) {}

db::FeedbackRow BounceIngester::match(const lists::BounceReport& report,
                                      const lists::BounceRecipient& r) {
  db::FeedbackRow row;
  row.recipient = r.address;
  row.reported_kind = std::string(lists::to_string(r.kind));
  row.kind = row.reported_kind;
  row.status = r.status;
  row.diagnostic = r.diagnostic;

  // 1. A VERP return path, in the report's envelope headers or quoted in
  //    the original message. Its tag must verify; a VERP-shaped address
  //    whose tag does not is never applied, whatever else the report says.
  std::vector<std::string> candidates;
  for (const auto& [name, address] : report.verp_headers) candidates.push_back(address);
  if (!report.original.return_path.empty()) candidates.push_back(report.original.return_path);
  std::optional<std::int64_t> forged_claim;
  for (const std::string& address : candidates) {
    const std::optional<std::int64_t> claim = claimed_verp_id(address);
    if (!claim) continue;
    std::string domain = config_.sender.verp_domain;
    if (domain.empty()) domain = address.substr(address.rfind('@') + 1);
    std::optional<std::int64_t> verified;
    try {
      verified = sender::VerpCodec(std::string(kVerpPrefix), domain, secret_).Parse(address);
    } catch (const std::exception&) {
      verified = std::nullopt;
    }
    if (verified) {
      if (auto d = store_.find_delivery(*verified)) {
        row.delivery = std::move(d);
        return row;
      }
    }
    if (!forged_claim) {
      forged_claim = claim;
      spdlog::debug("bounces: {} does not verify as a return path of ours", log_escape(address));
    }
  }
  if (forged_claim) {
    if (auto d = store_.find_delivery(*forged_claim)) row.campaign_id = d->campaign_id;
    row.kind = "unmatched";
    return row;
  }

  // 2. The unsubscribe token of List-Unsubscribe (signed by us, and covered
  //    by DKIM): finds complaints whose recipient the provider redacted.
  for (const auto& [name, value] : report.original.mailer_headers) {
    if (lower(name) != "list-unsubscribe") continue;
    const std::size_t u = value.find("/u/");
    if (u == std::string::npos) continue;
    const std::size_t end = value.find_first_of(">, \t", u + 3);
    const std::string token = value.substr(u + 3, end == std::string::npos ? end : end - u - 3);
    const auto identity = sender::UnsubscribeTokenCodec(secret_).Verify(token);
    if (!identity) continue;
    auto d = store_.find_delivery(identity->delivery_id);
    if (d && d->campaign_id == identity->campaign_id) {
      row.delivery = std::move(d);
      return row;
    }
  }

  // 3. Our Message-ID, "<DELIVERY.CAMPAIGN@domain>". It carries no tag, so
  //    it is believed only when the report's recipient is the delivery's.
  const std::string& mid = report.original.message_id;
  if (mid.size() > 2 && mid.front() == '<') {
    const std::size_t dot = mid.find('.');
    const std::size_t at = mid.find('@');
    if (dot != std::string::npos && at != std::string::npos && dot < at) {
      const auto delivery_id = parse_id(std::string_view(mid).substr(1, dot - 1));
      const auto campaign_id = parse_id(std::string_view(mid).substr(dot + 1, at - dot - 1));
      auto parsed = lists::EmailAddress::parse(r.address);
      if (delivery_id && campaign_id && std::holds_alternative<lists::EmailAddress>(parsed)) {
        auto d = store_.find_delivery(*delivery_id);
        if (d && d->campaign_id == *campaign_id &&
            d->email_key == std::get<lists::EmailAddress>(parsed).key()) {
          row.delivery = std::move(d);
          return row;
        }
      }
    }
  }
  row.kind = "unmatched";
  return row;
}

void BounceIngester::apply(std::string_view message, const std::string& name,
                           const std::vector<std::string>& envelope_recipients) {
  ++summary_.messages;
  lists::BounceParserLimits limits;
  limits.max_message_bytes = static_cast<std::size_t>(config_.bounces.max_message_bytes);
  lists::BounceReport report = lists::parse_bounce(message, limits);
  for (const std::string& rcpt : envelope_recipients) {
    report.verp_headers.emplace_back("RCPT TO", rcpt);
  }
  const std::vector<lists::BounceRecipient> recipients = report_recipients(report);
  if (recipients.empty()) {
    ++summary_.not_reports;
    spdlog::debug("bounces: {}: not a bounce, complaint or auto-reply", name);
    return;
  }
  const std::string key = report_message_key(message);
  for (const lists::BounceRecipient& r : recipients) {
    db::FeedbackRow row = match(report, r);
    row.message_key = key;
    const db::FeedbackApplied applied = store_.apply(
        row, config_.bounces.soft_limit,
        std::chrono::duration_cast<std::chrono::milliseconds>(config_.bounces.soft_window));
    if (!applied.recorded) {
      ++summary_.duplicates;
      spdlog::debug("bounces: {}: {} already applied", name, log_escape(r.address));
      continue;
    }
    if (row.kind == "unmatched") {
      ++summary_.unmatched;
      spdlog::debug("bounces: {}: {} ({}) matches no delivery", name, log_escape(r.address),
                    row.reported_kind);
    } else if (row.kind == "hard") {
      ++summary_.hard;
    } else if (row.kind == "soft") {
      ++summary_.soft;
    } else if (row.kind == "complaint") {
      ++summary_.complaints;
    } else if (row.kind == "auto_reply") {
      ++summary_.auto_replies;
    } else {
      ++summary_.delivered;
    }
    if (applied.delivery_bounced) ++summary_.bounced;
    if (applied.suppressed) ++summary_.suppressed;
    if (row.delivery) touched_campaigns_.insert(row.delivery->campaign_id);
  }
}

void BounceIngester::run_guard() {
  const GuardSettings& g = config_.guard;
  for (const std::int64_t id : touched_campaigns_) {
    const db::CampaignHealth h = store_.health(id);
    if (h.status != "running" && h.status != "waiting_window") continue;
    if (h.sent < g.min_sent) continue;
    const double sent = static_cast<double>(h.sent);
    const double complaint_rate = static_cast<double>(h.complaints) / sent;
    const double bounce_rate = static_cast<double>(h.hard) / sent;
    std::string reason;
    if (complaint_rate > g.max_complaint_rate) {
      reason = fmt::format("complaint rate {:.4f} over [guard] max_complaint_rate {} after {} sent",
                           complaint_rate, g.max_complaint_rate, h.sent);
    } else if (bounce_rate > g.max_bounce_rate) {
      reason = fmt::format("hard-bounce rate {:.4f} over [guard] max_bounce_rate {} after {} sent",
                           bounce_rate, g.max_bounce_rate, h.sent);
    }
    if (reason.empty()) continue;
    if (store_.pause_with_reason(id, reason)) {
      ++summary_.paused;
      spdlog::warn("campaign {} paused: {}", id, reason);
    }
  }
  touched_campaigns_.clear();
}

}  // namespace mailer::app
