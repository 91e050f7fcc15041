#include "lists/email_address.h"

#include <fmt/format.h>
#include <idn2.h>

#include <cstdlib>
#include <memory>
#include <optional>

namespace mailer::lists {
namespace {

bool is_atext(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '/':
    case '=':
    case '?':
    case '^':
    case '_':
    case '`':
    case '{':
    case '|':
    case '}':
    case '~':
      return true;
    default:
      return false;
  }
}

bool is_ascii(std::string_view s) {
  for (unsigned char c : s) {
    if (c >= 0x80) return false;
  }
  return true;
}

char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// Empty when `s` is a valid RFC 5321 Dot-string, else the reason.
std::string dot_string_error(std::string_view s) {
  if (s.empty()) return "empty local part";
  if (s.front() == '.') return "local part starts with a dot";
  if (s.back() == '.') return "local part ends with a dot";
  char prev = 0;
  for (unsigned char c : s) {
    if (c == '.') {
      if (prev == '.') return "two consecutive dots in local part";
    } else if (c >= 0x80) {
      return "non-ASCII local part (SMTPUTF8 is not supported)";
    } else if (!is_atext(c)) {
      if (c < 0x20 || c == 0x7f) return "control character in local part";
      return fmt::format("character '{}' not allowed in local part", static_cast<char>(c));
    }
    prev = static_cast<char>(c);
  }
  return {};
}

// The Dot-string inside a quoted local part, or an error.
std::variant<std::string, AddressError> unquote_local(std::string_view quoted) {
  std::string_view inner = quoted.substr(1, quoted.size() - 2);
  if (inner.find('\\') != std::string_view::npos) {
    return AddressError{"quoted local part with escapes is not supported"};
  }
  if (!dot_string_error(inner).empty()) {
    return AddressError{"quoted local part that is not a plain dot-atom is not supported"};
  }
  return std::string(inner);
}

std::string ldh_error(std::string_view domain) {
  std::size_t labels = 0;
  std::size_t start = 0;
  std::string_view last;
  while (start <= domain.size()) {
    std::size_t end = domain.find('.', start);
    if (end == std::string_view::npos) end = domain.size();
    std::string_view label = domain.substr(start, end - start);
    if (label.empty()) return "empty label in domain";
    if (label.size() > 63) return "domain label longer than 63 octets";
    if (label.front() == '-' || label.back() == '-') return "domain label starts or ends with '-'";
    for (char c : label) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
      if (!ok) return fmt::format("character '{}' not allowed in domain", c);
    }
    ++labels;
    last = label;
    start = end + 1;
  }
  if (labels < 2) return "domain has no dot (a top-level domain alone cannot receive mail)";
  bool numeric = true;
  for (char c : last) numeric = numeric && c >= '0' && c <= '9';
  if (numeric) return "top-level domain is numeric";
  return {};
}

}  // namespace

std::variant<std::string, AddressError> normalise_domain(std::string_view input) {
  std::string_view d = input;
  if (!d.empty() && d.back() == '.') d.remove_suffix(1);
  if (d.empty()) return AddressError{"empty domain"};
  if (d.front() == '[') return AddressError{"address literal domains are not accepted"};
  std::string out;
  if (is_ascii(d)) {
    out.reserve(d.size());
    for (char c : d) out.push_back(ascii_lower(c));
  }
  // Non-ASCII names, and A-labels that must round-trip, go through libidn2.
  if (!is_ascii(d) || out.find("xn--") != std::string::npos) {
    std::string in(d);
    if (in.find('\0') != std::string::npos) return AddressError{"NUL byte in domain"};
    char* ascii = nullptr;
    int rc = idn2_to_ascii_8z(in.c_str(), &ascii, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
    if (rc != IDN2_OK) {
      return AddressError{fmt::format("invalid internationalised domain ({})", idn2_strerror(rc))};
    }
    std::unique_ptr<char, decltype(&idn2_free)> owned(ascii, &idn2_free);
    out = ascii;
    for (char& c : out) c = ascii_lower(c);
    if (!out.empty() && out.back() == '.') out.pop_back();
  }
  if (out.size() > kMaxDomainOctets) {
    return AddressError{fmt::format("domain longer than {} octets", kMaxDomainOctets)};
  }
  if (std::string e = ldh_error(out); !e.empty()) return AddressError{e};
  return out;
}

namespace {

// The reason for an address with a control character in it, which no part of
// an address allows: named as such, whatever check refused it first (a line
// break often joins two addresses, which would read as "more than one @").
std::optional<AddressError> control_character_error(std::string_view text) {
  bool control = false;
  for (unsigned char c : text) {
    if (c == '\r' || c == '\n') return AddressError{"line break in address"};
    control = control || c < 0x20 || c == 0x7f;
  }
  if (control) return AddressError{"control character in address"};
  return std::nullopt;
}

}  // namespace

std::variant<EmailAddress, AddressError> EmailAddress::parse(std::string_view text) {
  auto parsed = parse_checked(text);
  if (std::holds_alternative<AddressError>(parsed)) {
    // Looked for only once the address is refused: valid ones pay nothing.
    if (auto e = control_character_error(text)) return *e;
  }
  return parsed;
}

std::variant<EmailAddress, AddressError> EmailAddress::parse_checked(std::string_view text) {
  if (text.empty()) return AddressError{"empty address"};
  std::size_t at = text.rfind('@');
  if (at == std::string_view::npos) return AddressError{"missing @"};
  std::string_view local = text.substr(0, at);
  std::string_view domain = text.substr(at + 1);
  std::string local_out;
  if (local.size() >= 2 && local.front() == '"' && local.back() == '"') {
    auto unquoted = unquote_local(local);
    if (auto* e = std::get_if<AddressError>(&unquoted)) return *e;
    local_out = std::get<std::string>(std::move(unquoted));
  } else {
    if (local.find('@') != std::string_view::npos) return AddressError{"more than one @"};
    if (std::string e = dot_string_error(local); !e.empty()) return AddressError{e};
    local_out = std::string(local);
  }
  if (local_out.size() > kMaxLocalPartOctets) {
    return AddressError{fmt::format("local part longer than {} octets", kMaxLocalPartOctets)};
  }
  auto normalised = normalise_domain(domain);
  if (auto* e = std::get_if<AddressError>(&normalised)) return *e;
  const std::string& d = std::get<std::string>(normalised);
  std::string address = local_out + "@" + d;
  if (address.size() > kMaxAddressOctets) {
    return AddressError{fmt::format("address longer than {} octets", kMaxAddressOctets)};
  }
  return EmailAddress(std::move(address), local_out.size());
}

std::string EmailAddress::key() const {
  std::string k = address_;
  for (char& c : k) c = ascii_lower(c);
  return k;
}

}  // namespace mailer::lists
