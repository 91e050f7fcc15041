// How a simulated mailbox provider answers: the replies the virtual-time
// simulator and the rehearsal SMTP sink (`mailer sink --profile NAME`) send
// when a message is accepted, when the sender is over capacity, when it opened
// too many connections, and (Yahoo) when it landed in the penalty box. The
// texts are written for this project in the style of each provider's real
// replies; they carry the codes and tokens the reply classifier decides on
// (4.7.28, 4.7.650, RP-003, [TSS04]).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "throttle/smtp_reply.h"

namespace mailer::throttle {

struct ProviderProfile {
  // gmail, yahoo, outlook or generic.
  std::string name;
  // 250 at end of data.
  SmtpReply accepted;
  // The deferral sent above capacity (classifies as throttle). Its stage is
  // the one at which the provider answers with it: Gmail at end of data,
  // Yahoo and Outlook at MAIL, generic servers at the greeting.
  SmtpReply throttle;
  // Sent at the greeting to a client holding too many connections (classifies
  // as throttle with a connection-count complaint).
  SmtpReply too_many_connections;
  // The penalty box answer (classifies as suspend), for providers that have
  // one: Yahoo's [TSS04]. SmtpStage MAIL.
  std::optional<SmtpReply> penalty;
};

// The built-in profile `name` (gmail, yahoo, outlook, generic); nullopt for
// any other name.
std::optional<ProviderProfile> find_provider_profile(std::string_view name);

// The profile for a provider family as the classifier names it: gmail, yahoo,
// outlook; everything else ("other", "other:mx.example.net") gets generic.
ProviderProfile provider_profile_for(std::string_view provider);

// "gmail", "yahoo", "outlook", "generic".
std::vector<std::string> provider_profile_names();

}  // namespace mailer::throttle
