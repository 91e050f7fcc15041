#include "throttle/provider_profiles.h"

namespace mailer::throttle {
namespace {

SmtpReply reply(int code, std::string enhanced, std::string text, SmtpStage stage) {
  return SmtpReply{code, std::move(enhanced), std::move(text), stage};
}

ProviderProfile gmail() {
  return ProviderProfile{
      "gmail",
      reply(250, "2.0.0", "OK  accepted for delivery - gsmtp", SmtpStage::kEndOfData),
      reply(421, "4.7.28",
            "Our systems have seen an unusually high rate of mail from your sending IP\n"
            "address. To protect our users, mail from this address is rate limited for\n"
            "now. Please lower your sending rate and retry later. - gsmtp",
            SmtpStage::kEndOfData),
      reply(421, "4.7.0",
            "Too many concurrent connections from your IP address. Please reduce the\n"
            "number of open connections and retry later. - gsmtp",
            SmtpStage::kGreeting),
      std::nullopt,
  };
}

ProviderProfile yahoo() {
  return ProviderProfile{
      "yahoo",
      reply(250, "", "ok delivered", SmtpStage::kEndOfData),
      reply(421, "4.7.0",
            "[TS02] Mail from your IP address is deferred for now because of unusual volume; "
            "see https://postmaster.yahooinc.com/error-codes",
            SmtpStage::kMail),
      reply(421, "4.7.0",
            "Too many concurrent connections from your IP address; please close some and retry",
            SmtpStage::kGreeting),
      reply(421, "4.7.0",
            "[TSS04] Mail from your IP address is deferred for a while because of an "
            "unexpected burst of volume; see https://postmaster.yahooinc.com/error-codes",
            SmtpStage::kMail),
  };
}

ProviderProfile outlook() {
  return ProviderProfile{
      "outlook",
      reply(250, "2.6.0", "Queued mail for delivery", SmtpStage::kEndOfData),
      reply(451, "4.7.650",
            "The sending server has been temporarily rate limited because of its IP "
            "reputation. Please slow down and try again later. (S775)",
            SmtpStage::kMail),
      reply(421, "4.7.0",
            "RP-003 Some messages from your IP address were not sent. We limit how many "
            "concurrent connections can be open at once.",
            SmtpStage::kGreeting),
      std::nullopt,
  };
}

ProviderProfile generic() {
  return ProviderProfile{
      "generic",
      reply(250, "2.0.0", "Ok: queued", SmtpStage::kEndOfData),
      reply(421, "4.3.2", "Service not available right now, closing transmission channel",
            SmtpStage::kGreeting),
      reply(421, "4.7.0", "Too many connections from your host, closing transmission channel",
            SmtpStage::kGreeting),
      std::nullopt,
  };
}

}  // namespace

std::optional<ProviderProfile> find_provider_profile(std::string_view name) {
  if (name == "gmail") return gmail();
  if (name == "yahoo") return yahoo();
  if (name == "outlook") return outlook();
  if (name == "generic") return generic();
  return std::nullopt;
}

ProviderProfile provider_profile_for(std::string_view provider) {
  if (auto profile = find_provider_profile(provider); profile && provider != "generic") {
    return *profile;
  }
  return generic();
}

std::vector<std::string> provider_profile_names() {
  return {"gmail", "yahoo", "outlook", "generic"};
}

}  // namespace mailer::throttle
