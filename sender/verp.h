// VERP return paths: the envelope MAIL FROM of each delivery,
// `bounce+<delivery>-<tag>@bounce.example.com`, so a bounce that comes back
// names the delivery it is about. The tag is a truncated HMAC-SHA256 of the
// delivery id, so nobody can forge bounces for deliveries they did not get.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "sender/mime.h"

namespace mailer::sender {

// Builds and checks return paths for one bounce domain. Immutable; safe
// across threads.
class VerpCodec {
 public:
  // `prefix` is the local part before '+' ("bounce"; letters, digits, '.',
  // '_', '-'); `domain` receives the bounces; `secret` keys the tag (at least
  // kMinSecretBytes; it may be the unsubscribe secret: the MAC input is
  // labelled). Throws MimeError or SecretError on bad arguments.
  VerpCodec(std::string prefix, std::string domain, std::string secret);

  // `prefix+<delivery>-<tag>@domain` for `delivery_id` (>= 0).
  MailAddress ReturnPath(std::int64_t delivery_id) const;

  // The delivery id named by `address` (a bounce's envelope recipient) when
  // prefix, domain and tag match; the comparison of the tag is constant-time
  // and ignores letter case (some relays fold local parts). std::nullopt for
  // anything else.
  std::optional<std::int64_t> Parse(std::string_view address) const;

 private:
  std::string Tag(std::int64_t delivery_id) const;

  std::string prefix_;
  std::string domain_;
  std::string secret_;
};

}  // namespace mailer::sender
