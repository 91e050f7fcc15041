// classify_failure(): which kind a failure notice amounts to, from its status
// code and its text. The phrase lists are what real MTAs and providers write
// (Postfix, Exim, Sendmail, qmail, Exchange, Gmail, Outlook.com, Yahoo...),
// lower-case. Order matters: evidence that the address is fine (a full
// mailbox, a block, a policy rejection) wins over evidence that it is dead,
// because calling a live address dead costs a real subscriber.
#include <algorithm>
#include <cstddef>
#include <string_view>

#include "lists/bounce_parser.h"
#include "lists/mime_reader.h"

namespace mailer::lists {
namespace {

// The address exists but cannot take this message now or from this sender.
constexpr std::string_view kSoftPhrases[] = {
    "mailbox full", "mailbox is full", "mailbox has exceeded", "mailbox size limit", "over quota",
    "overquota", "quota exceeded", "exceeded storage", "exceeds quota", "quota exceed",
    "insufficient storage", "insufficient system storage", "out of storage", "disk full",
    "full mailbox", "storage allocation", "blocked", "block list", "blocklist", "blacklist",
    "denylist", "spamhaus", "spamcop", "barracuda", "spam", "reputation", "policy", "virus",
    "rate limit", "too many", "try again later", "temporarily", "relaying denied",
    "relay access denied", "relay not permitted", "not permitted to relay",
    "allowed rcpthosts",  // qmail: "that domain isn't in my list of allowed rcpthosts"
    "authentication required", "dmarc", "spf", "dkim", "access denied", "not authorized",
    "suspended", "disabled", "inactive", "deactivated", "message too large", "message size",
    "size limit", "greylist", "timed out", "content rejected",
    // The receiver refused the sender (its domain, its address), not the
    // recipient: "Sender address rejected: Domain not found" is no reason to
    // drop the recipient.
    "sender address rejected", "sender domain", "sender rejected"};

// The mailbox does not exist. Left out: Exchange's bare "Recipient Not
// Found", which comes back for filtered live accounts too (Sisimai classes it
// as filtered); with a 5.1.1 status it is still hard. Yahoo's "This user
// doesn't have a yahoo.com account" is hard at RCPT but comes back after the
// message body ([BODY]) for filtered live accounts too: see classify_failure.
constexpr std::string_view kUserUnknownPhrases[] = {
    "user unknown", "unknown user", "no such user", "no such mailbox", "no such recipient",
    "no such account", "no such person", "no such address", "unknown recipient",
    "recipient unknown", "user not found", "address not found", "mailbox not found",
    "mailbox unavailable", "does not exist", "doesn't exist", "not exist", "no mailbox here",
    "no mailbox by that name", "invalid recipient", "invalid mailbox", "invalid address",
    "unknown address", "address unknown", "recipnotfound", "recipientnotfound",
    "bad destination mailbox", "not a valid mailbox", "not a valid recipient", "not a valid user",
    "not a known user", "is not a known user", "not our customer", "unknown local part",
    "unknown mailbox", "mailbox not present", "addressee unknown", "no account by that name",
    "undeliverable address", "sorry, no mailbox", "recipient is not local", "utilisateur inconnu",
    "unbekannter empf", "mailbox is not found", "no mailbox found", "user does not exist",
    // "550 #5.1.0 Address rejected."; Yahoo at RCPT
    "address rejected", "doesn't have a yahoo.com account"};

// A mailbox the reporting system itself looked up and did not find: no
// remote server's words, so no SMTP command to ask about.
constexpr std::string_view kLocalUserUnknownPhrases[] = {
    // Lotus Domino's router
    "not listed in domino directory", "not listed in public name"};

// The domain does not exist or takes no mail (RFC 7505 null MX).
constexpr std::string_view kHostUnknownPhrases[] = {
    "host unknown",
    "unknown host",
    "host not found",
    "domain not found",
    "domain name not found",
    "no such domain",
    "domain does not exist",
    "unrouteable address",
    "unroutable address",
    "name service error",
    "host or domain name not found",
    "null mx",
    "does not accept mail",
    "all relevant mx records point to non-existent hosts",
    "couldn't find any host",
    "non-existent domain",
    "nxdomain",
    "unknown domain",
    "no mx record",
    "domain is not valid"};

// The mailbox has gone and left no forwarding.
constexpr std::string_view kMovedPhrases[] = {"has moved", "user has moved", "no longer valid",
                                              "user not local"};

template <std::size_t N>
bool contains_any(std::string_view lower_text, const std::string_view (&phrases)[N]) {
  for (std::string_view p : phrases) {
    if (lower_text.find(p) != std::string_view::npos) return true;
  }
  return false;
}

// Enhanced status codes that by themselves say the address is dead
// (RFC 3463): bad mailbox, bad system, bad syntax, moved, null MX (RFC 7505),
// unable to route.
bool is_dead_address_status(std::string_view status) {
  return status == "5.1.1" || status == "5.1.2" || status == "5.1.3" || status == "5.1.6" ||
         status == "5.1.10" || status == "5.4.4";
}

// The class digit of the first SMTP reply code in `text` ("550 ...",
// "<command failed> 450-...": a 2, 4 or 5 and two digits, then a space or a
// hyphen, at the start or after a space), or 0 when there is none.
char first_reply_code(std::string_view text) {
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  for (std::size_t i = 0; i + 3 < text.size(); ++i) {
    if (i > 0 && text[i - 1] != ' ') continue;
    const char c = text[i];
    if ((c == '2' || c == '4' || c == '5') && digit(text[i + 1]) && digit(text[i + 2]) &&
        (text[i + 3] == ' ' || text[i + 3] == '-')) {
      return c;
    }
  }
  return 0;
}

enum class RefusalStage { kUnknown, kRecipient, kMessage };

// Which command the refusal answered, as the words about it say: the first
// command named, since the reply text comes first and the notice's lines
// about a recipient start at the recipient ("<a@x>: ... (in reply to RCPT TO
// command)"; a transcript's ">>> RCPT TO:<a@x>" before a later recipient's
// ">>> DATA").
RefusalStage refusal_stage(std::string_view lower_text) {
  constexpr std::string_view kRecipient[] = {
      "rcpt to",  // Postfix "(in reply to RCPT TO command)", Exim, Courier, Sendmail
      "rcpt command",
      "[rcpt_to]",                   // Yahoo marks the stage
      "does not like recipient",     // qmail
      "recipient address rejected",  // a Postfix smtpd restriction: RCPT only
  };
  constexpr std::string_view kMessage[] = {
      "end of data",  // Postfix "(in reply to end of DATA command)", Exim
      "data command", ">>> data", "after data", "[body]"};
  auto first = [&](const auto& markers) {
    std::size_t at = std::string_view::npos;
    for (std::string_view m : markers) at = std::min(at, lower_text.find(m));
    return at;
  };
  const std::size_t recipient = first(kRecipient);
  const std::size_t message = first(kMessage);
  if (recipient == std::string_view::npos && message == std::string_view::npos) {
    return RefusalStage::kUnknown;
  }
  return message < recipient ? RefusalStage::kMessage : RefusalStage::kRecipient;
}

}  // namespace

FeedbackKind classify_failure(std::string_view status, std::string_view diagnostic,
                              std::string_view action, std::string_view context) {
  std::string act = ascii_lower(trim(action));
  if (act == "delivered" || act == "relayed" || act == "expanded") return FeedbackKind::kDelivered;
  if (act == "delayed") return FeedbackKind::kSoft;
  if (!status.empty() && status[0] == '2') return FeedbackKind::kDelivered;
  if (!status.empty() && status[0] == '4') return FeedbackKind::kSoft;
  // Class 5.7 is security or policy (RFC 3463): whatever the text says about
  // the user, the receiver refused this sender or message, not the address.
  if (status.starts_with("5.7.")) return FeedbackKind::kSoft;
  // A 4xx reply is a temporary refusal even when the MTA gave up on it and
  // reports a permanent failure (Courier and Exim write 5.0.0 when the queue
  // time runs out): "450 4.1.1 ... unverified address" is no proof. Courier
  // may put "<command failed>" before it.
  if (first_reply_code(diagnostic) == '4') return FeedbackKind::kSoft;
  // 5.1.7 and 5.1.8: the sender's address or its domain is bad.
  if (status == "5.1.7" || status == "5.1.8") return FeedbackKind::kSoft;
  const std::string text = ascii_lower(diagnostic);
  // Exchange Online's directory-based edge blocking: the tenant has no such
  // recipient (AS(201806281) is its code for it), though the words are the
  // ones of a policy refusal.
  if (status == "5.4.1" &&
      text.find("recipient address rejected: access denied") != std::string::npos) {
    return FeedbackKind::kHard;
  }
  if (contains_any(text, kSoftPhrases)) return FeedbackKind::kSoft;
  if (contains_any(text, kHostUnknownPhrases) || contains_any(text, kMovedPhrases) ||
      contains_any(text, kLocalUserUnknownPhrases)) {
    return FeedbackKind::kHard;
  }
  // An unknown user is proven by a status that says so, or by the words of
  // one in answer to RCPT TO. After the message body the same words are a
  // content filter's answer (Yahoo's "[BODY]", Postfix's "in reply to end of
  // DATA command"): the address had been accepted. With no stage and no
  // status (OpenSMTPD reports neither), the words alone are not enough, as
  // Sisimai also judges: a soft bounce costs a few more tries at most, a
  // wrong hard one a subscriber.
  const RefusalStage stage =
      refusal_stage(context.empty() ? std::string_view(text) : text + " " + ascii_lower(context));
  if (stage == RefusalStage::kMessage) return FeedbackKind::kSoft;
  // Exchange writes 5.1.10 (RFC 7505's null MX) for its own "RESOLVER.ADR.
  // RecipientNotFound": words of an unknown user, which need the stage.
  const bool exchange_resolver = text.find("resolver.adr.") != std::string::npos;
  if (is_dead_address_status(status) && !(status == "5.1.10" && exchange_resolver)) {
    return FeedbackKind::kHard;
  }
  if (stage == RefusalStage::kRecipient && contains_any(text, kUserUnknownPhrases)) {
    return FeedbackKind::kHard;
  }
  return FeedbackKind::kSoft;
}

}  // namespace mailer::lists
