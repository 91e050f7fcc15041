// What one SMTP reply means for sending: the signals of DESIGN.md's throttle
// model, each with the reaction it calls for.
#pragma once

#include <optional>
#include <string_view>

namespace mailer::throttle {

enum class Signal {
  // The message was taken (2xx after DATA) or the step succeeded.
  kAccepted,
  // Too fast for this provider: slow down, retry the message later.
  kThrottle,
  // Stop sending to this provider for a while (Yahoo's penalty box), then
  // restart slowly.
  kSuspend,
  // Retry this recipient later (mailbox full, greylisting, receiving too
  // fast); says nothing about the sender's rate.
  kRecipientTempfail,
  // A server or network hiccup: retry later, not a rate signal on its own.
  kTransient,
  // Sender configuration problem (SPF, DKIM, DMARC, TLS, PTR): alert, do not
  // hammer the provider with more of the same.
  kAuthPolicy,
  // This recipient will never accept: bounce and suppress the address.
  kHardBounce,
  // Sender-wide refusal (blocklist, reputation): pause the provider, alert.
  kBlock,
};

// accepted, throttle, suspend, recipient_tempfail, transient, auth_policy,
// hard_bounce, block: the names of replies.tsv and configuration.
std::string_view signal_name(Signal signal);
// Inverse of signal_name; nullopt for unknown names.
std::optional<Signal> parse_signal(std::string_view name);

}  // namespace mailer::throttle
