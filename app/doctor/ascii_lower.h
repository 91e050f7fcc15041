// ASCII lower-casing for the case-insensitive names and keywords of DNS
// records (RFC 4343) and of SPF, DKIM and DMARC tags: bytes A-Z become a-z,
// every other byte (UTF-8 included) is kept as it is, whatever the locale.
#pragma once

#include <string>
#include <string_view>

namespace mailer::app {

inline std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace mailer::app
