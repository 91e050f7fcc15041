// EmailAddress: what is accepted, how it is normalised, and why the rest is
// rejected.
#include "lists/email_address.h"

#include <gtest/gtest.h>

#include <string>

namespace mailer::lists {
namespace {

std::string normalised(std::string_view text) {
  auto r = EmailAddress::parse(text);
  if (auto* e = std::get_if<AddressError>(&r)) return "error: " + e->reason;
  return std::get<EmailAddress>(r).address();
}

bool rejected(std::string_view text) {
  return normalised(text).rfind("error: ", 0) == 0;
}

TEST(EmailAddress, KeepsLocalPartCaseAndLowerCasesDomain) {
  auto r = EmailAddress::parse("John.Doe@Example.COM");
  ASSERT_TRUE(std::holds_alternative<EmailAddress>(r));
  const auto& a = std::get<EmailAddress>(r);
  EXPECT_EQ(a.address(), "John.Doe@example.com");
  EXPECT_EQ(a.local_part(), "John.Doe");
  EXPECT_EQ(a.domain(), "example.com");
  EXPECT_EQ(a.key(), "john.doe@example.com");
}

TEST(EmailAddress, RemovesOneTrailingDotOfTheDomain) {
  EXPECT_EQ(normalised("a@example.com."), "a@example.com");
  EXPECT_TRUE(rejected("a@example.com.."));
}

TEST(EmailAddress, ConvertsInternationalisedDomainsToALabels) {
  EXPECT_EQ(normalised("user@bücher.de"), "user@xn--bcher-kva.de");
  EXPECT_EQ(normalised("user@BÜCHER.de"), "user@xn--bcher-kva.de");
  EXPECT_EQ(normalised("user@xn--bcher-kva.de"), "user@xn--bcher-kva.de");
  EXPECT_EQ(normalised("x@例え.テスト"), "x@xn--r8jz45g.xn--zckzah");
}

TEST(EmailAddress, RejectsBrokenALabels) {
  EXPECT_TRUE(rejected("user@xn--.de"));
  EXPECT_TRUE(rejected("user@xn--zz-zzz-!.de"));
}

TEST(EmailAddress, AcceptsEveryAtextCharacterInDotAtoms) {
  EXPECT_EQ(normalised("a!#$%&'*+-/=?^_`{|}~z@example.com"), "a!#$%&'*+-/=?^_`{|}~z@example.com");
  EXPECT_EQ(normalised("first.middle.last+tag@example.org"), "first.middle.last+tag@example.org");
}

TEST(EmailAddress, RejectsMalformedLocalParts) {
  EXPECT_EQ(normalised("example.com"), "error: missing @");
  EXPECT_EQ(normalised("@example.com"), "error: empty local part");
  EXPECT_EQ(normalised(".a@example.com"), "error: local part starts with a dot");
  EXPECT_EQ(normalised("a.@example.com"), "error: local part ends with a dot");
  EXPECT_EQ(normalised("a..b@example.com"), "error: two consecutive dots in local part");
  EXPECT_EQ(normalised("a b@example.com"), "error: character ' ' not allowed in local part");
  EXPECT_EQ(normalised("a@b@example.com"), "error: more than one @");
  EXPECT_TRUE(rejected("John Doe <john@example.com>"));
  EXPECT_TRUE(rejected(""));
}

// A line break usually joins two addresses (a quoted field of a broken
// export): the reason says so rather than "more than one @".
TEST(EmailAddress, NamesLineBreaksAndControlCharactersAsTheReason) {
  EXPECT_EQ(normalised("a@example.com\nb@example.com"), "error: line break in address");
  EXPECT_EQ(normalised("a@example.com\r\nb@example.com"), "error: line break in address");
  EXPECT_EQ(normalised("a@example.com\r"), "error: line break in address");
  EXPECT_EQ(normalised("a\tb@example.com"), "error: control character in address");
  EXPECT_EQ(normalised(std::string_view("a@exam\0ple.com", 15)),
            "error: control character in address");
  EXPECT_EQ(normalised("a@example.com\x7f"), "error: control character in address");
}

TEST(EmailAddress, UnquotesQuotedLocalPartsThatAreDotAtoms) {
  EXPECT_EQ(normalised("\"john.doe\"@example.com"), "john.doe@example.com");
}

TEST(EmailAddress, RejectsQuotedLocalPartsThatNeedQuoting) {
  EXPECT_EQ(normalised("\"john doe\"@example.com"),
            "error: quoted local part that is not a plain dot-atom is not supported");
  EXPECT_EQ(normalised("\"a\\\"b\"@example.com"),
            "error: quoted local part with escapes is not supported");
  EXPECT_TRUE(rejected("\"a@b\"@example.com"));
}

TEST(EmailAddress, RejectsNonAsciiLocalPartsBecauseSmtputf8IsNotSupported) {
  EXPECT_EQ(normalised("jösé@example.com"),
            "error: non-ASCII local part (SMTPUTF8 is not supported)");
}

TEST(EmailAddress, RejectsDomainsThatCannotReceiveBulkMail) {
  EXPECT_EQ(normalised("a@localhost"),
            "error: domain has no dot (a top-level domain alone cannot receive mail)");
  EXPECT_EQ(normalised("a@[192.0.2.1]"), "error: address literal domains are not accepted");
  EXPECT_EQ(normalised("a@192.0.2.1"), "error: top-level domain is numeric");
  EXPECT_EQ(normalised("a@-example.com"), "error: domain label starts or ends with '-'");
  EXPECT_EQ(normalised("a@exa_mple.com"), "error: character '_' not allowed in domain");
  EXPECT_EQ(normalised("a@example..com"), "error: empty label in domain");
  EXPECT_EQ(normalised("a@"), "error: empty domain");
}

TEST(EmailAddress, EnforcesLengthLimits) {
  std::string local64(64, 'a');
  std::string local65(65, 'a');
  EXPECT_EQ(normalised(local64 + "@example.com"), local64 + "@example.com");
  EXPECT_EQ(normalised(local65 + "@example.com"), "error: local part longer than 64 octets");
  std::string label63(63, 'b');
  std::string label64(64, 'b');
  EXPECT_EQ(normalised("a@" + label64 + ".com"), "error: domain label longer than 63 octets");
  // 64 + 1 + 189 = 254 octets: the longest address.
  std::string domain189 = label63 + "." + label63 + "." + std::string(57, 'c') + ".com";
  ASSERT_EQ(domain189.size(), 189u);
  EXPECT_EQ(normalised(local64 + "@" + domain189).size(), 254u);
  EXPECT_EQ(normalised(local64 + "@d." + domain189), "error: address longer than 254 octets");
  std::string domain256 = label63 + "." + label63 + "." + label63 + "." + label63 + ".com";
  ASSERT_GT(domain256.size(), 255u);
  EXPECT_EQ(normalised("a@" + domain256), "error: domain longer than 255 octets");
}

TEST(EmailAddress, SameMailboxHasSameKeyWhateverTheSpelling) {
  auto a = std::get<EmailAddress>(EmailAddress::parse("Alice@Bücher.DE."));
  auto b = std::get<EmailAddress>(EmailAddress::parse("alice@xn--bcher-kva.de"));
  EXPECT_EQ(a.key(), b.key());
  EXPECT_NE(a.address(), b.address());
}

}  // namespace
}  // namespace mailer::lists
