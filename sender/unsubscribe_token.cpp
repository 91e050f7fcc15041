// Unsubscribe tokens; see unsubscribe_token.h.
#include "sender/unsubscribe_token.h"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <fstream>
#include <sstream>

namespace mailer::sender {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
// Token layout: version, three big-endian int64, truncated tag.
constexpr unsigned char kTokenVersion = 1;
constexpr std::size_t kPayloadBytes = 1 + 3 * 8;
// 128-bit tags: forging one takes 2^128 guesses, and the URL stays short.
constexpr std::size_t kTagBytes = 16;
constexpr std::size_t kTokenBytes = kPayloadBytes + kTagBytes;
// Separates these MACs from any other use of the same secret (e.g. VERP).
constexpr std::string_view kContext = "mailer/unsubscribe/v1";

void PutInt64(std::string& out, std::int64_t value) {
  const auto v = static_cast<std::uint64_t>(value);
  for (int shift = 56; shift >= 0; shift -= 8) out += static_cast<char>((v >> shift) & 0xFF);
}

std::int64_t GetInt64(std::string_view in) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(in[i]);
  return static_cast<std::int64_t>(v);
}

std::string Tag(const std::string& secret, std::string_view payload) {
  std::string message(kContext);
  message += '\0';
  message.append(payload);
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac.data(),
       &mac_len);
  return std::string(reinterpret_cast<const char*>(mac.data()), kTagBytes);
}

int DecodeChar(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

}  // namespace

std::string LoadSecretFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw SecretError(fmt::format("secret file {}: cannot be opened", path));
  std::ostringstream buf;
  buf << in.rdbuf();
  std::string secret = buf.str();
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  if (secret.size() < kMinSecretBytes) {
    throw SecretError(fmt::format("secret file {}: holds {} bytes, at least {} needed", path,
                                  secret.size(), kMinSecretBytes));
  }
  return secret;
}

std::string Base64UrlEncode(std::string_view data) {
  std::string out;
  out.reserve((data.size() * 4 + 2) / 3);
  std::size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    const std::uint32_t n = (static_cast<unsigned char>(data[i]) << 16) |
                            (static_cast<unsigned char>(data[i + 1]) << 8) |
                            static_cast<unsigned char>(data[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += kAlphabet[n & 63];
  }
  const std::size_t rest = data.size() - i;
  if (rest > 0) {
    std::uint32_t n = static_cast<unsigned char>(data[i]) << 16;
    if (rest == 2) n |= static_cast<unsigned char>(data[i + 1]) << 8;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    if (rest == 2) out += kAlphabet[(n >> 6) & 63];
  }
  return out;
}

std::optional<std::string> Base64UrlDecode(std::string_view text) {
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(text.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    const int v = DecodeChar(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  // Leftover bits must be zero, or two spellings would decode alike.
  if ((acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

UnsubscribeTokenCodec::UnsubscribeTokenCodec(std::string secret) : secret_(std::move(secret)) {
  if (secret_.size() < kMinSecretBytes) {
    throw SecretError(fmt::format("unsubscribe secret holds {} bytes, at least {} needed",
                                  secret_.size(), kMinSecretBytes));
  }
}

std::string UnsubscribeTokenCodec::Issue(const DeliveryIdentity& identity) const {
  std::string raw;
  raw.reserve(kTokenBytes);
  raw += static_cast<char>(kTokenVersion);
  PutInt64(raw, identity.delivery_id);
  PutInt64(raw, identity.campaign_id);
  PutInt64(raw, identity.recipient_id);
  raw += Tag(secret_, raw);
  return Base64UrlEncode(raw);
}

std::optional<DeliveryIdentity> UnsubscribeTokenCodec::Verify(std::string_view token) const {
  // Bound the work before decoding anything an attacker sent.
  if (token.size() != (kTokenBytes * 4 + 2) / 3) return std::nullopt;
  const std::optional<std::string> raw = Base64UrlDecode(token);
  if (!raw || raw->size() != kTokenBytes) return std::nullopt;
  const std::string_view bytes(*raw);
  const std::string expected = Tag(secret_, bytes.substr(0, kPayloadBytes));
  if (CRYPTO_memcmp(expected.data(), bytes.data() + kPayloadBytes, kTagBytes) != 0) {
    return std::nullopt;
  }
  if (static_cast<unsigned char>(bytes[0]) != kTokenVersion) return std::nullopt;
  return DeliveryIdentity{GetInt64(bytes.substr(1)), GetInt64(bytes.substr(9)),
                          GetInt64(bytes.substr(17))};
}

}  // namespace mailer::sender
