// DKIM signing (RFC 6376) with rsa-sha256 and ed25519-sha256 (RFC 8463),
// relaxed/relaxed canonicalisation, keys from PEM files ([dkim] / [[dkim]]
// configuration). A message may carry several signatures: SignMessage()
// applies each signer in turn and hashes the body only once.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace mailer::sender {

enum class DkimAlgorithm { kRsaSha256, kEd25519Sha256 };

// "rsa-sha256" / "ed25519-sha256", the a= tag and the configuration value.
std::string_view DkimAlgorithmName(DkimAlgorithm algorithm);
// The algorithm for a configuration value, std::nullopt if unknown.
std::optional<DkimAlgorithm> ParseDkimAlgorithm(std::string_view name);

// A key that cannot be loaded or does not fit its algorithm, or bad domain or
// selector. The message names the file.
class DkimError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Header fields signed when present, in this order (RFC 6376 5.4.1 plus the
// RFC 8058 one-click pair, which must be signed for one-click to count).
inline constexpr std::string_view kDkimSignedHeaders[] = {"from",
                                                          "to",
                                                          "cc",
                                                          "reply-to",
                                                          "subject",
                                                          "date",
                                                          "message-id",
                                                          "mime-version",
                                                          "content-type",
                                                          "content-transfer-encoding",
                                                          "list-unsubscribe",
                                                          "list-unsubscribe-post",
                                                          "feedback-id"};

// One signing identity: domain, selector and a private key prepared once.
// Immutable and cheap to copy (the key is shared); safe to use from several
// threads at once.
class DkimSigner {
 public:
  // Loads the PEM private key in `key_file`. Throws DkimError naming the file
  // when it cannot be read, holds no private key, holds a key of another
  // type than `algorithm`, or an RSA key shorter than 1024 bits (RFC 8301).
  static DkimSigner FromPemFile(std::string domain, std::string selector, DkimAlgorithm algorithm,
                                const std::string& key_file);
  // Same from PEM text; `source` names it in errors.
  static DkimSigner FromPem(std::string domain, std::string selector, DkimAlgorithm algorithm,
                            std::string_view pem, std::string_view source);

  // The DNS TXT record to publish at `selector._domainkey.domain`:
  // "v=DKIM1; k=rsa; p=..." (k=ed25519 with the raw 32-byte key for Ed25519).
  std::string PublicKeyRecord() const;
  // "selector._domainkey.domain".
  std::string RecordName() const;

  const std::string& domain() const { return domain_; }
  const std::string& selector() const { return selector_; }
  DkimAlgorithm algorithm() const { return algorithm_; }

  // Internal state shared between copies; defined in dkim_signer.cpp.
  struct Key;

 private:
  DkimSigner(std::string domain, std::string selector, DkimAlgorithm algorithm,
             std::shared_ptr<const Key> key)
      : domain_(std::move(domain)),
        selector_(std::move(selector)),
        algorithm_(algorithm),
        key_(std::move(key)) {}

  friend std::string SignMessage(std::string_view, std::span<const DkimSigner>,
                                 std::chrono::system_clock::time_point);

  std::string domain_;
  std::string selector_;
  DkimAlgorithm algorithm_;
  std::shared_ptr<const Key> key_;
};

// `message` (CRLF line ends, headers, blank line, body) with one
// DKIM-Signature header per signer prepended, each timestamped `now` and
// covering the kDkimSignedHeaders present. With no signers, returns the
// message unchanged. Throws DkimError if the message has no header/body
// separator or signing fails inside OpenSSL.
std::string SignMessage(std::string_view message, std::span<const DkimSigner> signers,
                        std::chrono::system_clock::time_point now);

// Relaxed canonicalisation (RFC 6376 3.4.2 and 3.4.4), exposed for tests.
// Header: one field with its name, without the final CRLF.
std::string RelaxedHeader(std::string_view field);
// Body: the canonical body text.
std::string RelaxedBody(std::string_view body);

}  // namespace mailer::sender
