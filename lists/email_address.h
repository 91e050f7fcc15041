// EmailAddress: a recipient address a sender can deliver to, parsed and
// normalised once at the edge. An EmailAddress that exists is valid; raw
// strings stop at parse().
//
// What is accepted (RFC 5321 section 4.1.2 "Mailbox", restricted to what a
// bulk sender can deliver to without special handling):
//   - Local part: a Dot-string (atoms of atext separated by single dots, no
//     leading, trailing or doubled dot), at most 64 octets. Its case is kept
//     as given: the local part belongs to the receiving server.
//   - Quoted local parts: a quoted string whose content is itself a valid
//     Dot-string ("john.doe"@example.com) is the same mailbox as the unquoted
//     form and is normalised to it, as RFC 5321 asks senders to do. Every
//     other quoted local part (spaces, "@", backslash escapes) is rejected:
//     such addresses almost always come from broken exports, and many
//     receiving systems refuse them.
//   - SMTPUTF8 (RFC 6531): not supported. A non-ASCII local part is rejected,
//     because delivering to it needs the SMTPUTF8 extension end to end and the
//     sending path does not negotiate it. Internationalised domains are
//     supported: they are converted to A-labels (xn--...) with libidn2
//     (IDNA2008 with UTS#46 non-transitional mapping), which needs nothing
//     special from SMTP.
//   - Domain: a host name of at least two labels (LDH rule: letters, digits,
//     inner hyphens; labels of 1-63 octets; top-level label not all digits),
//     lower-cased, one trailing dot removed, at most 255 octets. Address
//     literals ([192.0.2.1]) and dotless domains are rejected: no bulk mail
//     should go to either.
//   - The whole address is at most 254 octets (the 256-octet path limit of
//     RFC 5321 4.5.3.1.3 minus the angle brackets).
// Surrounding whitespace is not trimmed here: callers decide at their edge.
#pragma once

#include <string>
#include <string_view>
#include <variant>

namespace mailer::lists {

// Length limits of RFC 5321 4.5.3.1.
inline constexpr std::size_t kMaxLocalPartOctets = 64;
inline constexpr std::size_t kMaxDomainOctets = 255;
inline constexpr std::size_t kMaxAddressOctets = 254;

// Why a string is not a deliverable address: a short reason for rejects files
// ("missing @", "local part longer than 64 octets").
struct AddressError {
  std::string reason;
};

class EmailAddress {
 public:
  // Parses `text`; returns the address or the reason it is not one.
  static std::variant<EmailAddress, AddressError> parse(std::string_view text);

  // "local@domain" as it should be delivered: local part case kept, domain
  // lower-case A-labels.
  const std::string& address() const { return address_; }
  std::string_view local_part() const { return std::string_view(address_).substr(0, at_); }
  std::string_view domain() const { return std::string_view(address_).substr(at_ + 1); }
  // The comparison key: the whole address lower-cased (ASCII only, since
  // non-ASCII addresses are rejected). Same as SQL lower(email).
  std::string key() const;

  friend bool operator==(const EmailAddress& a, const EmailAddress& b) {
    return a.address_ == b.address_;
  }

 private:
  // parse() but for the reason given for a control character.
  static std::variant<EmailAddress, AddressError> parse_checked(std::string_view text);
  EmailAddress(std::string address, std::size_t at) : address_(std::move(address)), at_(at) {}
  std::string address_;
  std::size_t at_;
};

// Normalises a domain the way EmailAddress does (lower-case, trailing dot
// removed, IDN to A-labels, LDH checks). Returns the A-label form or the
// reason it is not a usable mail domain.
std::variant<std::string, AddressError> normalise_domain(std::string_view domain);

}  // namespace mailer::lists
