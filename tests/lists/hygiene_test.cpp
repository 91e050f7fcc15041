// HygieneRules: role accounts, disposable domains and typo domains from the
// shipped tables, and the switches and replacement tables of [import].
#include "lists/hygiene.h"

#include <gtest/gtest.h>

namespace mailer::lists {
namespace {

EmailAddress addr(std::string_view text) {
  return std::get<EmailAddress>(EmailAddress::parse(text));
}

std::string verdict(const HygieneRules& rules, std::string_view text) {
  auto v = rules.check(addr(text));
  return v ? v->reason + ": " + v->detail : "ok";
}

TEST(Hygiene, RejectsRoleAccountsWhateverTheCaseOrTag) {
  HygieneRules rules(builtin_hygiene_sources());
  EXPECT_EQ(verdict(rules, "postmaster@example.com"), "role: postmaster");
  EXPECT_EQ(verdict(rules, "NoReply@example.com"), "role: NoReply");
  EXPECT_EQ(verdict(rules, "info+news@example.com"), "role: info+news");
  EXPECT_EQ(verdict(rules, "abuse@example.com"), "role: abuse");
  EXPECT_EQ(verdict(rules, "information@example.com"), "ok");
}

TEST(Hygiene, RejectsDisposableDomainsAndTheirSubdomains) {
  HygieneRules rules(builtin_hygiene_sources());
  EXPECT_EQ(verdict(rules, "x@mailinator.com"), "disposable: mailinator.com");
  EXPECT_EQ(verdict(rules, "x@eu.mailinator.com"), "disposable: mailinator.com");
  EXPECT_EQ(verdict(rules, "x@notmailinator.com"), "ok");
}

TEST(Hygiene, SuggestsCorrectionsForTypoDomains) {
  HygieneRules rules(builtin_hygiene_sources());
  EXPECT_EQ(verdict(rules, "Ann@gmial.com"), "typo: did you mean Ann@gmail.com?");
  EXPECT_EQ(verdict(rules, "bob@hotmial.com"), "typo: did you mean bob@hotmail.com?");
  EXPECT_EQ(verdict(rules, "cy@yaho.com"), "typo: did you mean cy@yahoo.com?");
  // Not listed, but one edit from a popular domain.
  EXPECT_EQ(verdict(rules, "d@gmaik.com"), "typo: did you mean d@gmail.com?");
  EXPECT_EQ(verdict(rules, "d@qmaik.com"), "ok") << "two edits away is not guessed";
}

TEST(Hygiene, NeverFlagsRealDomainsThatLookLikeTypos) {
  HygieneRules rules(builtin_hygiene_sources());
  for (const char* d : {"ymail.com", "gmail.com", "gmx.com", "mail.com", "live.com", "aim.com",
                        "yahoo.co.uk", "example.com"}) {
    EXPECT_EQ(verdict(rules, std::string("someone@") + d), "ok") << d;
  }
}

TEST(Hygiene, SwitchesAndReplacementTablesApply) {
  HygieneSources s = builtin_hygiene_sources();
  s.reject_role_accounts = false;
  s.disposable_domains = "# mine\nthrowaway.test\n";
  s.reject_typos = false;
  HygieneRules rules(s);
  EXPECT_EQ(verdict(rules, "info@example.com"), "ok");
  EXPECT_EQ(verdict(rules, "x@mailinator.com"), "ok") << "the built-in table was replaced";
  EXPECT_EQ(verdict(rules, "x@throwaway.test"), "disposable: throwaway.test");
  EXPECT_EQ(verdict(rules, "x@gmial.com"), "ok");
}

TEST(Hygiene, ExtraRoleAccountsAreAdded) {
  HygieneSources s = builtin_hygiene_sources();
  s.extra_role_accounts = {"Billing-Team"};
  HygieneRules rules(s);
  EXPECT_EQ(verdict(rules, "billing-team@example.com"), "role: billing-team");
}

TEST(Hygiene, MalformedTablesNameTheirLine) {
  HygieneSources s = builtin_hygiene_sources();
  s.typo_domains = "gmial.com gmail.com\na b c\n";
  try {
    HygieneRules rules(s);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "typo domains line 2: expected \"typo correction\" or one real domain");
  }
  s = builtin_hygiene_sources();
  s.disposable_domains = "ok.test\nnot a domain!\n";
  EXPECT_THROW(HygieneRules{s}, std::invalid_argument);
}

}  // namespace
}  // namespace mailer::lists
