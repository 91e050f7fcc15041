// classify_failure(): which kind a failure notice amounts to, from its status
// code and its text. The phrase lists are what real MTAs and providers write
// (Postfix, Exim, Sendmail, qmail, Exchange, Gmail, Outlook.com, Yahoo...),
// lower-case. Order matters: evidence that the address is fine (a full
// mailbox, a block, a policy rejection) wins over evidence that it is dead,
// because calling a live address dead costs a real subscriber.
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
    "authentication required", "dmarc", "spf", "dkim", "access denied", "not authorized",
    "suspended", "disabled", "inactive", "deactivated", "message too large", "message size",
    "size limit", "greylist", "timed out", "content rejected",
    // Exchange Online answers this also for recipients its directory-based
    // edge blocking does not list yet; Sisimai classes it as filtered.
    "recipient not found by smtp address lookup"};

// The mailbox does not exist. Left out: Yahoo's "This user doesn't have a
// yahoo.com account" and Exchange's bare "Recipient Not Found", which both
// come back for filtered live accounts too (Sisimai classes them as
// filtered); with a 5.1.1 status they are still hard.
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
    // Lotus Domino
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

}  // namespace

FeedbackKind classify_failure(std::string_view status, std::string_view diagnostic,
                              std::string_view action) {
  std::string act = ascii_lower(trim(action));
  if (act == "delivered" || act == "relayed" || act == "expanded") return FeedbackKind::kDelivered;
  if (act == "delayed") return FeedbackKind::kSoft;
  if (!status.empty() && status[0] == '2') return FeedbackKind::kDelivered;
  if (!status.empty() && status[0] == '4') return FeedbackKind::kSoft;
  // Class 5.7 is security or policy (RFC 3463): whatever the text says about
  // the user, the receiver refused this sender or message, not the address.
  if (status.starts_with("5.7.")) return FeedbackKind::kSoft;
  const std::string text = ascii_lower(diagnostic);
  if (contains_any(text, kSoftPhrases)) return FeedbackKind::kSoft;
  if (contains_any(text, kUserUnknownPhrases) || contains_any(text, kHostUnknownPhrases) ||
      contains_any(text, kMovedPhrases)) {
    return FeedbackKind::kHard;
  }
  if (is_dead_address_status(status)) return FeedbackKind::kHard;
  return FeedbackKind::kSoft;
}

}  // namespace mailer::lists
