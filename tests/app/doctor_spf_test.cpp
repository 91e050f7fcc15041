// The SPF evaluator (RFC 7208 check_host) against a fixed DNS table: every
// mechanism and qualifier, CIDR lengths, include and redirect chains, the
// lookup and void-lookup limits, macros, and the permerror / temperror
// cases a receiving server would see.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <map>

#include "app/doctor/spf_evaluator.h"

namespace mailer::app {
namespace {

// A DNS table: (name, type) -> answer; anything else is NXDOMAIN. Counts
// the questions asked.
class FakeDns {
 public:
  FakeDns& txt(const std::string& name, std::vector<std::string> records) {
    return set(name, DnsType::kTxt, std::move(records));
  }
  FakeDns& a(const std::string& name, std::vector<std::string> records) {
    return set(name, DnsType::kA, std::move(records));
  }
  FakeDns& aaaa(const std::string& name, std::vector<std::string> records) {
    return set(name, DnsType::kAaaa, std::move(records));
  }
  FakeDns& ptr(const std::string& name, std::vector<std::string> records) {
    return set(name, DnsType::kPtr, std::move(records));
  }
  FakeDns& mx(const std::string& name, std::vector<std::string> hosts) {
    DnsAnswer answer;
    answer.status = DnsStatus::kOk;
    std::uint16_t pref = 10;
    for (auto& h : hosts) {
      answer.records.push_back(h);
      answer.mx.push_back({pref, h});
      pref += 10;
    }
    table_[{name, DnsType::kMx}] = answer;
    return *this;
  }
  FakeDns& error(const std::string& name, DnsType type) {
    DnsAnswer answer;
    answer.status = DnsStatus::kError;
    answer.error = "timeout";
    table_[{name, type}] = answer;
    return *this;
  }

  SpfLookup lookup() {
    return [this](const std::string& name, DnsType type) {
      ++asked_;
      auto it = table_.find({name, type});
      if (it != table_.end()) return it->second;
      DnsAnswer none;
      none.status = DnsStatus::kNxDomain;
      return none;
    };
  }
  int asked() const { return asked_; }

 private:
  FakeDns& set(const std::string& name, DnsType type, std::vector<std::string> records) {
    DnsAnswer answer;
    answer.status = records.empty() ? DnsStatus::kNoData : DnsStatus::kOk;
    answer.records = std::move(records);
    table_[{name, type}] = answer;
    return *this;
  }

  std::map<std::pair<std::string, DnsType>, DnsAnswer> table_;
  int asked_ = 0;
};

IpAddress ip(const char* text) {
  return *IpAddress::parse(text);
}

SpfEvaluation eval(FakeDns& dns, const char* address, const char* domain = "example.test") {
  return check_spf(dns.lookup(), ip(address), domain);
}

TEST(SpfEvaluator, PassesAnIpInsideAnIp4Network) {
  FakeDns dns;
  dns.txt("example.test", {"v=spf1 ip4:192.0.2.0/24 -all"});
  SpfEvaluation e = eval(dns, "192.0.2.77");
  EXPECT_EQ(e.result, SpfResult::kPass);
  EXPECT_EQ(e.matched, "ip4:192.0.2.0/24");
  EXPECT_EQ(e.record, "v=spf1 ip4:192.0.2.0/24 -all");
  EXPECT_EQ(e.dns_lookups, 0);
}

TEST(SpfEvaluator, FailsAnIpOutsideTheNetworkAtDashAll) {
  FakeDns dns;
  dns.txt("example.test", {"v=spf1 ip4:192.0.2.0/25 -all"});
  SpfEvaluation e = eval(dns, "192.0.2.200");
  EXPECT_EQ(e.result, SpfResult::kFail);
  EXPECT_EQ(e.matched, "-all");
}

TEST(SpfEvaluator, QualifiersOfAllGiveSoftfailAndNeutral) {
  FakeDns dns;
  dns.txt("soft.test", {"v=spf1 ip4:192.0.2.1 ~all"});
  dns.txt("neutral.test", {"v=spf1 ip4:192.0.2.1 ?all"});
  dns.txt("nothing.test", {"v=spf1 ip4:192.0.2.1"});
  EXPECT_EQ(eval(dns, "198.51.100.1", "soft.test").result, SpfResult::kSoftFail);
  EXPECT_EQ(eval(dns, "198.51.100.1", "neutral.test").result, SpfResult::kNeutral);
  // No term matched and no redirect: neutral (RFC 7208 4.7).
  SpfEvaluation e = eval(dns, "198.51.100.1", "nothing.test");
  EXPECT_EQ(e.result, SpfResult::kNeutral);
  EXPECT_TRUE(e.matched.empty());
}

TEST(SpfEvaluator, MatchesIp6NetworksAndNeverIp4ForAnIpv6Client) {
  FakeDns dns;
  dns.txt("example.test", {"v=spf1 ip4:0.0.0.0/0 ip6:2001:db8:10::/48 -all"});
  EXPECT_EQ(eval(dns, "2001:db8:10:ffff::1").result, SpfResult::kPass);
  EXPECT_EQ(eval(dns, "2001:db8:11::1").result, SpfResult::kFail);
}

TEST(SpfEvaluator, AMechanismUsesTheDomainAndDualCidr) {
  FakeDns dns;
  dns.txt("example.test", {"v=spf1 a/24//64 a:other.test -all"})
      .a("example.test", {"192.0.2.10"})
      .aaaa("example.test", {"2001:db8::1"})
      .a("other.test", {"203.0.113.5"});
  EXPECT_EQ(eval(dns, "192.0.2.99").result, SpfResult::kPass);
  EXPECT_EQ(eval(dns, "2001:db8::ffff").result, SpfResult::kPass);
  SpfEvaluation e = eval(dns, "203.0.113.5");
  EXPECT_EQ(e.result, SpfResult::kPass);
  EXPECT_EQ(e.matched, "a:other.test");
  EXPECT_EQ(e.dns_lookups, 2);
  EXPECT_EQ(eval(dns, "203.0.113.6").result, SpfResult::kFail);
}

TEST(SpfEvaluator, MxMechanismMatchesTheAddressesOfTheMailHosts) {
  FakeDns dns;
  dns.txt("example.test", {"v=spf1 mx -all"})
      .mx("example.test", {"mx1.example.test", "mx2.example.test"})
      .a("mx1.example.test", {"192.0.2.1"})
      .a("mx2.example.test", {"192.0.2.2"});
  SpfEvaluation e = eval(dns, "192.0.2.2");
  EXPECT_EQ(e.result, SpfResult::kPass);
  EXPECT_EQ(e.matched, "mx");
  EXPECT_EQ(eval(dns, "192.0.2.3").result, SpfResult::kFail);
}

TEST(SpfEvaluator, IncludeChainPassesThroughNestedRecords) {
  FakeDns dns;
  dns.txt("example.test", {"v=spf1 include:_spf.provider.test -all"})
      .txt("_spf.provider.test", {"v=spf1 include:_netblocks.provider.test ~all"})
      .txt("_netblocks.provider.test", {"v=spf1 ip4:198.51.100.0/24 ?all"});
  SpfEvaluation e = eval(dns, "198.51.100.20");
  EXPECT_EQ(e.result, SpfResult::kPass);
  EXPECT_EQ(e.matched, "include:_spf.provider.test");
  EXPECT_EQ(e.dns_lookups, 2);
  // An include that does not pass is no match: evaluation goes on to -all,
  // not to the included record's own ~all.
  EXPECT_EQ(eval(dns, "203.0.113.1").result, SpfResult::kFail);
}

TEST(SpfEvaluator, IncludeOfADomainWithoutRecordIsPermerror) {
  FakeDns dns;
  dns.txt("example.test", {"v=spf1 include:missing.test -all"});
  SpfEvaluation e = eval(dns, "192.0.2.1");
  EXPECT_EQ(e.result, SpfResult::kPermError);
  EXPECT_NE(e.reason.find("missing.test"), std::string::npos);
}

TEST(SpfEvaluator, MoreThanTenLookupsIsPermerror) {
  FakeDns dns;
  // A chain of 11 includes: the 11th DNS-querying term breaks the limit.
  for (int i = 0; i < 11; ++i) {
    dns.txt(fmt::format("l{}.test", i), {fmt::format("v=spf1 include:l{}.test -all", i + 1)});
  }
  dns.txt("l11.test", {"v=spf1 +all"});
  SpfEvaluation e = eval(dns, "192.0.2.1", "l0.test");
  EXPECT_EQ(e.result, SpfResult::kPermError);
  EXPECT_NE(e.reason.find("more than 10 DNS lookups"), std::string::npos) << e.reason;

  // Exactly ten is allowed.
  FakeDns ten;
  for (int i = 0; i < 10; ++i) {
    ten.txt(fmt::format("l{}.test", i), {fmt::format("v=spf1 include:l{}.test -all", i + 1)});
  }
  ten.txt("l10.test", {"v=spf1 +all"});
  SpfEvaluation ok = eval(ten, "192.0.2.1", "l0.test");
  EXPECT_EQ(ok.result, SpfResult::kPass);
  EXPECT_EQ(ok.dns_lookups, 10);
}

TEST(SpfEvaluator, AnIncludeLoopEndsAtTheLookupLimit) {
  FakeDns dns;
  dns.txt("example.test", {"v=spf1 include:example.test -all"});
  EXPECT_EQ(eval(dns, "192.0.2.1").result, SpfResult::kPermError);
  EXPECT_LT(dns.asked(), 20);
}

TEST(SpfEvaluator, MoreThanTwoVoidLookupsIsPermerror) {
  FakeDns dns;
  dns.txt("example.test", {"v=spf1 a:v1.test a:v2.test a:v3.test -all"});
  SpfEvaluation e = eval(dns, "192.0.2.1");
  EXPECT_EQ(e.result, SpfResult::kPermError);
  EXPECT_NE(e.reason.find("void"), std::string::npos);
}

TEST(SpfEvaluator, RedirectAppliesOnlyWhenNothingMatched) {
  FakeDns dns;
  dns.txt("example.test", {"v=spf1 ip4:192.0.2.1 redirect=_spf.example.test"})
      .txt("_spf.example.test", {"v=spf1 ip4:198.51.100.0/24 -all"});
  EXPECT_EQ(eval(dns, "192.0.2.1").matched, "ip4:192.0.2.1");
  SpfEvaluation e = eval(dns, "198.51.100.9");
  EXPECT_EQ(e.result, SpfResult::kPass);
  EXPECT_EQ(e.dns_lookups, 1);
  EXPECT_EQ(eval(dns, "203.0.113.1").result, SpfResult::kFail);
  // A redirect to a domain without a record is permerror.
  FakeDns broken;
  broken.txt("example.test", {"v=spf1 redirect=nowhere.test"});
  EXPECT_EQ(eval(broken, "192.0.2.1").result, SpfResult::kPermError);
}

TEST(SpfEvaluator, NoRecordIsNoneAndTwoRecordsArePermerror) {
  FakeDns dns;
  dns.txt("none.test", {"google-site-verification=abc", "v=spf10 -all"})
      .txt("two.test", {"v=spf1 -all", "v=spf1 +all"});
  EXPECT_EQ(eval(dns, "192.0.2.1", "none.test").result, SpfResult::kNone);
  EXPECT_EQ(eval(dns, "192.0.2.1", "nx.test").result, SpfResult::kNone);
  EXPECT_EQ(eval(dns, "192.0.2.1", "two.test").result, SpfResult::kPermError);
}

TEST(SpfEvaluator, DnsErrorsAreTemperror) {
  FakeDns dns;
  dns.error("down.test", DnsType::kTxt);
  dns.txt("example.test", {"v=spf1 a:flaky.test -all"}).error("flaky.test", DnsType::kA);
  EXPECT_EQ(eval(dns, "192.0.2.1", "down.test").result, SpfResult::kTempError);
  SpfEvaluation e = eval(dns, "192.0.2.1");
  EXPECT_EQ(e.result, SpfResult::kTempError);
  EXPECT_NE(e.reason.find("flaky.test"), std::string::npos);
}

TEST(SpfEvaluator, SyntaxErrorsAnywhereArePermerrorBeforeAnyMatch) {
  for (const char* record :
       {"v=spf1 +all foo:bar", "v=spf1 ip4:192.0.2.1/33 -all", "v=spf1 ip4:2001:db8::1 -all",
        "v=spf1 include -all", "v=spf1 a/ -all", "v=spf1 redirect=a.test redirect=b.test"}) {
    FakeDns dns;
    dns.txt("example.test", {record});
    EXPECT_EQ(eval(dns, "192.0.2.1").result, SpfResult::kPermError) << record;
  }
}

TEST(SpfEvaluator, UnknownModifiersAreIgnored) {
  FakeDns dns;
  dns.txt("example.test", {"v=spf1 ip4:192.0.2.1 moo=cow exp=explain.test -all"});
  EXPECT_EQ(eval(dns, "192.0.2.1").result, SpfResult::kPass);
}

TEST(SpfEvaluator, ExistsExpandsIpAndDomainMacros) {
  FakeDns dns;
  dns.txt("example.test", {"v=spf1 exists:%{ir}.%{v}._spf.%{d} -all"})
      .a("1.2.0.192.in-addr._spf.example.test", {"127.0.0.2"});
  EXPECT_EQ(eval(dns, "192.0.2.1").result, SpfResult::kPass);
  EXPECT_EQ(eval(dns, "192.0.2.2").result, SpfResult::kFail);
}

TEST(SpfEvaluator, PtrMechanismNeedsAForwardConfirmedNameUnderTheDomain) {
  FakeDns dns;
  dns.txt("example.test", {"v=spf1 ptr -all"})
      .ptr("1.2.0.192.in-addr.arpa", {"mail.example.test"})
      .a("mail.example.test", {"192.0.2.1"})
      .ptr("2.2.0.192.in-addr.arpa", {"liar.example.test"})
      .a("liar.example.test", {"203.0.113.1"});
  EXPECT_EQ(eval(dns, "192.0.2.1").result, SpfResult::kPass);
  EXPECT_EQ(eval(dns, "192.0.2.2").result, SpfResult::kFail);
}

TEST(SpfEvaluator, SpfRecordsAreSelectedByVersionTag) {
  EXPECT_EQ(spf_records({"v=spf1", "V=SPF1 -all", "v=spf10", "x v=spf1", "v=spf1 a"}),
            (std::vector<std::string>{"v=spf1", "V=SPF1 -all", "v=spf1 a"}));
}

TEST(IpAddress, ReverseNamesAndNetworks) {
  EXPECT_EQ(ip("192.0.2.1").reverse_name(), "1.2.0.192.in-addr.arpa");
  EXPECT_EQ(ip("2001:db8::1").reverse_name(),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
  EXPECT_TRUE(ip("10.1.2.3").in_network(ip("10.0.0.0"), 8));
  EXPECT_FALSE(ip("11.1.2.3").in_network(ip("10.0.0.0"), 8));
  EXPECT_TRUE(ip("10.1.2.3").in_network(ip("10.1.2.0"), 23));
  EXPECT_FALSE(ip("10.1.2.3").in_network(ip("2001:db8::"), 0));
  EXPECT_TRUE(ip("2001:db8:ffff::1").in_network(ip("2001:db8::"), 32));
  EXPECT_FALSE(IpAddress::parse("192.0.2"));
  EXPECT_FALSE(IpAddress::parse("example.test"));
}

}  // namespace
}  // namespace mailer::app
