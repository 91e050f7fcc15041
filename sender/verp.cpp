// VERP return paths; see verp.h.
#include "sender/verp.h"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <cctype>
#include <charconv>

#include "sender/unsubscribe_token.h"

namespace mailer::sender {
namespace {

// 64-bit tags (16 hex digits): a forged bounce needs 2^64 guesses, and the
// local part stays well under the 64-octet limit.
constexpr std::size_t kTagBytes = 8;
constexpr std::string_view kContext = "mailer/verp/v1";
constexpr char kHexLower[] = "0123456789abcdef";

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

VerpCodec::VerpCodec(std::string prefix, std::string domain, std::string secret)
    : prefix_(std::move(prefix)), secret_(std::move(secret)) {
  if (prefix_.empty()) throw MimeError("VERP prefix is empty");
  for (char c : prefix_) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      throw MimeError(fmt::format("VERP prefix \"{}\" may hold only letters, digits, . _ -",
                                  SanitizeHeaderText(prefix_)));
    }
  }
  domain_ = MailAddress::Parse(prefix_ + "@" + domain).domain();
  if (secret_.size() < kMinSecretBytes) {
    throw SecretError(fmt::format("VERP secret holds {} bytes, at least {} needed", secret_.size(),
                                  kMinSecretBytes));
  }
}

std::string VerpCodec::Tag(std::int64_t delivery_id) const {
  const std::string message = fmt::format("{}{}{}", kContext, '\0', delivery_id);
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac.data(),
       &mac_len);
  std::string hex;
  for (std::size_t i = 0; i < kTagBytes; ++i) {
    hex += kHexLower[mac[i] >> 4];
    hex += kHexLower[mac[i] & 0x0F];
  }
  return hex;
}

MailAddress VerpCodec::ReturnPath(std::int64_t delivery_id) const {
  if (delivery_id < 0) throw MimeError(fmt::format("VERP delivery id {} is negative", delivery_id));
  return MailAddress::Parse(
      fmt::format("{}+{}-{}@{}", prefix_, delivery_id, Tag(delivery_id), domain_));
}

std::optional<std::int64_t> VerpCodec::Parse(std::string_view address) const {
  // Longest well-formed local part: prefix, '+', 19 digits, '-', tag.
  if (address.size() > 300) return std::nullopt;
  const std::size_t at = address.rfind('@');
  if (at == std::string_view::npos) return std::nullopt;
  if (Lower(address.substr(at + 1)) != domain_) return std::nullopt;
  const std::string local = Lower(address.substr(0, at));
  const std::string head = Lower(prefix_) + "+";
  if (local.compare(0, head.size(), head) != 0) return std::nullopt;
  const std::string_view rest = std::string_view(local).substr(head.size());
  const std::size_t dash = rest.find('-');
  if (dash == std::string_view::npos || dash == 0) return std::nullopt;
  const std::string_view digits = rest.substr(0, dash);
  const std::string_view tag = rest.substr(dash + 1);
  if (tag.size() != kTagBytes * 2) return std::nullopt;
  std::int64_t id = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), id);
  if (ec != std::errc() || end != digits.data() + digits.size() || id < 0) return std::nullopt;
  // Canonical spelling only: "007" must not verify as 7.
  if (digits != fmt::format("{}", id)) return std::nullopt;
  const std::string expected = Tag(id);
  if (CRYPTO_memcmp(expected.data(), tag.data(), expected.size()) != 0) return std::nullopt;
  return id;
}

}  // namespace mailer::sender
