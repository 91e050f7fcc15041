// Unsubscribe tokens and VERP return paths: round trips, and rejection of
// forged, truncated, extended and tampered values.
#include "sender/unsubscribe_token.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "sender/verp.h"

namespace mailer::sender {
namespace {

const std::string kSecret = "0123456789abcdef0123456789abcdef";
const DeliveryIdentity kIdentity{123456789, 42, 987654321};

TEST(UnsubscribeTokenTest, IssuedTokenVerifiesToItsIdentity) {
  const UnsubscribeTokenCodec codec(kSecret);
  const std::string token = codec.Issue(kIdentity);
  EXPECT_EQ(token.size(), 55u);
  EXPECT_EQ(
      token.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
      std::string::npos);
  const auto verified = codec.Verify(token);
  ASSERT_TRUE(verified.has_value());
  EXPECT_EQ(*verified, kIdentity);
}

TEST(UnsubscribeTokenTest, ExtremeIdsRoundTrip) {
  const UnsubscribeTokenCodec codec(kSecret);
  for (const DeliveryIdentity id :
       {DeliveryIdentity{0, 0, 0}, DeliveryIdentity{INT64_MAX, INT64_MAX, INT64_MAX},
        DeliveryIdentity{-1, INT64_MIN, 1}}) {
    EXPECT_EQ(codec.Verify(codec.Issue(id)), id);
  }
}

TEST(UnsubscribeTokenTest, RejectsEverySingleCharacterChange) {
  const UnsubscribeTokenCodec codec(kSecret);
  const std::string token = codec.Issue(kIdentity);
  for (std::size_t i = 0; i < token.size(); ++i) {
    for (char replacement : {'A', 'z', '0', '-', '_'}) {
      if (token[i] == replacement) continue;
      std::string tampered = token;
      tampered[i] = replacement;
      ASSERT_FALSE(codec.Verify(tampered).has_value()) << "position " << i;
    }
  }
}

TEST(UnsubscribeTokenTest, RejectsTruncatedExtendedAndPaddedTokens) {
  const UnsubscribeTokenCodec codec(kSecret);
  const std::string token = codec.Issue(kIdentity);
  for (std::size_t len = 0; len < token.size(); ++len) {
    ASSERT_FALSE(codec.Verify(token.substr(0, len)).has_value()) << len;
  }
  EXPECT_FALSE(codec.Verify(token + "A").has_value());
  EXPECT_FALSE(codec.Verify(token + "=").has_value());
  EXPECT_FALSE(codec.Verify(" " + token).has_value());
  EXPECT_FALSE(codec.Verify(token.substr(0, 54) + "+").has_value());
  EXPECT_FALSE(codec.Verify(std::string(55, 'A')).has_value());
}

TEST(UnsubscribeTokenTest, RejectsTokensFromAnotherSecret) {
  const UnsubscribeTokenCodec ours(kSecret);
  const UnsubscribeTokenCodec theirs("another secret of enough length!");
  EXPECT_FALSE(ours.Verify(theirs.Issue(kIdentity)).has_value());
}

TEST(UnsubscribeTokenTest, RejectsNonCanonicalSpellingOfTheSameBytes) {
  const UnsubscribeTokenCodec codec(kSecret);
  std::string token = codec.Issue(kIdentity);
  // 41 bytes leave 2 spare bits in the last character; setting them must fail.
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const std::size_t v = alphabet.find(token.back());
  ASSERT_EQ(v % 4, 0u) << "spare bits of a canonical token are zero";
  token.back() = alphabet[v | 1];
  EXPECT_FALSE(codec.Verify(token).has_value());
}

TEST(UnsubscribeTokenTest, ShortSecretIsRefused) {
  EXPECT_THROW(UnsubscribeTokenCodec("short"), SecretError);
}

TEST(UnsubscribeTokenTest, SecretFileErrorsNameTheFile) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("unsub_secret_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string missing = (dir / "missing.key").string();
  try {
    LoadSecretFile(missing);
    FAIL() << "expected SecretError";
  } catch (const SecretError& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
  const std::string short_file = (dir / "short.key").string();
  std::ofstream(short_file) << "tiny\n";
  EXPECT_THROW(LoadSecretFile(short_file), SecretError);
  const std::string good = (dir / "good.key").string();
  std::ofstream(good) << kSecret << "\n";
  EXPECT_EQ(LoadSecretFile(good), kSecret);
  std::filesystem::remove_all(dir);
}

TEST(Base64UrlTest, RoundTripsAllLengthsAndRejectsForeignCharacters) {
  std::string data;
  for (int i = 0; i < 70; ++i) {
    const std::string encoded = Base64UrlEncode(data);
    EXPECT_EQ(encoded.find_first_of("+/="), std::string::npos);
    ASSERT_EQ(Base64UrlDecode(encoded), data);
    data += static_cast<char>(i * 37 + 250);
  }
  EXPECT_FALSE(Base64UrlDecode("ab+/").has_value());
  EXPECT_FALSE(Base64UrlDecode("abc=").has_value());
  EXPECT_FALSE(Base64UrlDecode("a").has_value());
}

TEST(VerpTest, ReturnPathNamesTheDeliveryAndParsesBack) {
  const VerpCodec verp("bounce", "Bounces.Example.com", kSecret);
  const MailAddress path = verp.ReturnPath(123456);
  EXPECT_TRUE(path.header_form().starts_with("bounce+123456-")) << path.header_form();
  EXPECT_TRUE(path.header_form().ends_with("@bounces.example.com")) << path.header_form();
  EXPECT_LE(path.local_part().size(), 64u);
  EXPECT_EQ(verp.Parse(path.header_form()), 123456);
}

TEST(VerpTest, ParsingToleratesCaseFoldingByRelays) {
  const VerpCodec verp("bounce", "bounces.example.com", kSecret);
  std::string upper = verp.ReturnPath(77).header_form();
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_EQ(verp.Parse(upper), 77);
}

TEST(VerpTest, RejectsForgedOrAlteredReturnPaths) {
  const VerpCodec verp("bounce", "bounces.example.com", kSecret);
  const std::string good = verp.ReturnPath(1000).header_form();
  const std::size_t dash = good.find('-');
  const std::size_t at = good.find('@');
  // Another delivery id with this tag.
  EXPECT_FALSE(verp.Parse("bounce+1001" + good.substr(dash)).has_value());
  // Leading zero spelling of the same id.
  EXPECT_FALSE(verp.Parse("bounce+01000" + good.substr(dash)).has_value());
  // Every single tag character changed.
  for (std::size_t i = dash + 1; i < at; ++i) {
    std::string bad = good;
    bad[i] = bad[i] == '0' ? '1' : '0';
    ASSERT_FALSE(verp.Parse(bad).has_value()) << bad;
  }
  // Truncated tag, other domain, other prefix, other secret, garbage.
  EXPECT_FALSE(verp.Parse(good.substr(0, at - 1) + good.substr(at)).has_value());
  EXPECT_FALSE(verp.Parse(good.substr(0, at) + "@example.org").has_value());
  EXPECT_FALSE(verp.Parse("other" + good.substr(good.find('+'))).has_value());
  const VerpCodec other("bounce", "bounces.example.com", "a different secret, long enough");
  EXPECT_FALSE(other.Parse(good).has_value());
  EXPECT_FALSE(verp.Parse("").has_value());
  EXPECT_FALSE(verp.Parse("bounce+-@bounces.example.com").has_value());
  EXPECT_FALSE(verp.Parse("bounce+-5-0000000000000000@bounces.example.com").has_value());
}

TEST(VerpTest, RefusesBadPrefixDomainOrSecret) {
  EXPECT_THROW(VerpCodec("bo unce", "example.com", kSecret), MimeError);
  EXPECT_THROW(VerpCodec("bounce", "exa mple.com", kSecret), MimeError);
  EXPECT_THROW(VerpCodec("bounce", "example.com", "short"), SecretError);
}

}  // namespace
}  // namespace mailer::sender
