#include "throttle/provider_classifier.h"

#include <gtest/gtest.h>

namespace mailer::throttle {
namespace {

TEST(ProviderClassifier, KnowsTheBigProvidersByDomain) {
  ProviderClassifier c;
  EXPECT_EQ(c.classify("gmail.com"), "gmail");
  EXPECT_EQ(c.classify("GoogleMail.com."), "gmail");
  EXPECT_EQ(c.classify("hotmail.co.uk"), "outlook");
  EXPECT_EQ(c.classify("live.fr"), "outlook");
  EXPECT_EQ(c.classify("msn.com"), "outlook");
  EXPECT_EQ(c.classify("yahoo.co.jp"), "yahoo");
  EXPECT_EQ(c.classify("aol.com"), "yahoo");
  EXPECT_EQ(c.classify("rocketmail.com"), "yahoo");
}

TEST(ProviderClassifier, PutsHostedDomainsWithTheirMxProvider) {
  ProviderClassifier c;
  EXPECT_EQ(c.classify("example.org", "aspmx.l.google.com"), "gmail");
  EXPECT_EQ(c.classify("example.org", "example-org.mail.protection.outlook.com."), "outlook");
  EXPECT_EQ(c.classify("example.org", "mta7.am0.yahoodns.net"), "yahoo");
  EXPECT_EQ(c.classify_mx("ALT1.ASPMX.L.GOOGLE.COM"), "gmail");
}

TEST(ProviderClassifier, MatchesOnLabelBoundariesOnly) {
  ProviderClassifier c;
  EXPECT_EQ(c.classify("notgmail.com"), "other:notgmail.com");
  EXPECT_EQ(c.classify("example.org", "mx.notgoogle.com"), "other:mx.notgoogle.com");
  EXPECT_EQ(c.classify("hotmail"), "other:hotmail");
  EXPECT_EQ(c.classify("myhotmail.com"), "other:myhotmail.com");
}

TEST(ProviderClassifier, KeysOtherDomainsByMxWhenKnown) {
  ProviderClassifier c;
  EXPECT_EQ(c.classify("Example.NET"), "other:example.net");
  EXPECT_EQ(c.classify("example.net", "MX1.Example.NET."), "other:mx1.example.net");
  EXPECT_EQ(provider_family("other:mx1.example.net"), "other");
  EXPECT_EQ(provider_family("gmail"), "gmail");
}

TEST(ProviderClassifier, ConfiguredRulesComeFirst) {
  ProviderClassifier c({
      {ProviderRule::Target::kDomain, "*.corp.example", "corp"},
      {ProviderRule::Target::kMx, "mimecast.com", "mimecast"},
      {ProviderRule::Target::kDomain, "gmail.com", "special"},
      {ProviderRule::Target::kDomain, "", "ignored"},
  });
  EXPECT_EQ(c.classify("mail.corp.example"), "corp");
  EXPECT_EQ(c.classify("corp.example"), "corp");
  EXPECT_EQ(c.classify("example.org", "eu-smtp-inbound-1.mimecast.com"), "mimecast");
  EXPECT_EQ(c.classify("gmail.com"), "special");
  EXPECT_EQ(c.classify("yahoo.com"), "yahoo");
}

TEST(ProviderClassifier, ValidatesRules) {
  using T = ProviderRule::Target;
  EXPECT_EQ(validate_provider_rule({T::kDomain, "", "x"}), "pattern must not be empty");
  EXPECT_EQ(validate_provider_rule({T::kMx, "*.google.com", "gmail"}),
            "an MX pattern is a host name suffix and takes no '*'");
  EXPECT_EQ(validate_provider_rule({T::kDomain, "a.com", "Big Corp"}),
            "provider name may hold only a-z, 0-9, '-' and '_'");
  EXPECT_EQ(validate_provider_rule({T::kDomain, "a.com", "corp"}), std::nullopt);
}

}  // namespace
}  // namespace mailer::throttle
