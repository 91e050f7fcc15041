// Unsubscribe tokens: the identity of one delivery (delivery, campaign,
// recipient), signed with HMAC-SHA256 under the [unsubscribe] secret and
// written as URL-safe base64 without padding, for
// `List-Unsubscribe: <https://BASE/u/TOKEN>`. The HTTP endpoint verifies a
// token and learns whom to unsubscribe without a database lookup by token.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace mailer::sender {

// Who an unsubscribe token speaks for.
struct DeliveryIdentity {
  std::int64_t delivery_id = 0;
  std::int64_t campaign_id = 0;
  std::int64_t recipient_id = 0;

  friend bool operator==(const DeliveryIdentity&, const DeliveryIdentity&) = default;
};

// A secret too short to be safe, or a secret file that cannot be read.
class SecretError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Shortest secret accepted: 128 bits keeps forging an HMAC out of reach.
inline constexpr std::size_t kMinSecretBytes = 16;

// Reads a secret from `path` (trailing newlines removed). Throws SecretError
// naming the file when it cannot be read or holds fewer than 16 bytes.
std::string LoadSecretFile(const std::string& path);

// URL-safe base64 (RFC 4648 5) without padding, and its strict inverse: the
// decoder rejects padding, foreign characters and non-zero trailing bits, so
// each byte string has exactly one accepted spelling.
std::string Base64UrlEncode(std::string_view data);
std::optional<std::string> Base64UrlDecode(std::string_view text);

// Issues and verifies unsubscribe tokens. Immutable; safe across threads.
class UnsubscribeTokenCodec {
 public:
  // Throws SecretError when `secret` is shorter than kMinSecretBytes.
  explicit UnsubscribeTokenCodec(std::string secret);

  // The token for `identity` (55 characters, [A-Za-z0-9_-]).
  std::string Issue(const DeliveryIdentity& identity) const;

  // The identity inside `token` when its tag verifies (constant-time
  // comparison); std::nullopt for anything forged, truncated, extended,
  // re-encoded or tampered with. Never says why.
  std::optional<DeliveryIdentity> Verify(std::string_view token) const;

 private:
  std::string secret_;
};

}  // namespace mailer::sender
