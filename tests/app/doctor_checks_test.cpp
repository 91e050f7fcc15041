// The judgements of `mailer doctor` on hand-made DNS answers: the corner
// cases a live zone rarely shows (tag-list parsing, DKIM tag order and key
// type, DMARC duplicates and bad policies, MX oddities, blocklist answers
// outside 127/8, lookup errors that must warn rather than fail), and the
// domain and selector rules of the command line.
#include "app/doctor/doctor_checks.h"

#include <gtest/gtest.h>

#include "app/doctor/doctor.h"

namespace mailer::app {
namespace {

DnsAnswer records(std::vector<std::string> r) {
  DnsAnswer a;
  a.status = r.empty() ? DnsStatus::kNoData : DnsStatus::kOk;
  a.records = std::move(r);
  return a;
}

DnsAnswer failed() {
  DnsAnswer a;
  a.status = DnsStatus::kError;
  a.error = "timeout";
  return a;
}

DnsAnswer nxdomain() {
  DnsAnswer a;
  a.status = DnsStatus::kNxDomain;
  return a;
}

DnsAnswer mx(std::vector<MxRecord> hosts) {
  DnsAnswer a;
  a.status = DnsStatus::kOk;
  for (auto& h : hosts) a.records.push_back(h.exchange);
  a.mx = std::move(hosts);
  return a;
}

TEST(DoctorTagList, SplitsTrimsAndLowerCasesTagNames) {
  auto tags = parse_tag_list(" v=DKIM1 ;K = rsa; p=MIIB AQAB ;; t=y:s ");
  ASSERT_EQ(tags.size(), 4u);
  EXPECT_EQ(tags[0], (std::pair<std::string, std::string>{"v", "DKIM1"}));
  EXPECT_EQ(tags[1], (std::pair<std::string, std::string>{"k", "rsa"}));
  EXPECT_EQ(tags[2], (std::pair<std::string, std::string>{"p", "MIIB AQAB"}));
  EXPECT_EQ(tags[3], (std::pair<std::string, std::string>{"t", "y:s"}));
}

TEST(DoctorSpf, NoRecordFailsDuplicatesFailAndErrorsWarn) {
  EXPECT_EQ(judge_spf("d.test", records({"other"}), std::nullopt, false).result,
            CheckResult::kFail);
  EXPECT_EQ(
      judge_spf("d.test", records({"v=spf1 -all", "v=spf1 ~all"}), std::nullopt, false).result,
      CheckResult::kFail);
  EXPECT_EQ(judge_spf("d.test", failed(), std::nullopt, false).result, CheckResult::kWarn);
  SpfEvaluation perm;
  perm.result = SpfResult::kPermError;
  perm.reason = "more than 10 DNS lookups";
  // Without the sending IP a permerror still fails: every receiver sees it.
  DoctorCheck c = judge_spf("d.test", records({"v=spf1 include:x -all"}), perm, false);
  EXPECT_EQ(c.result, CheckResult::kFail);
  EXPECT_NE(c.detail.find("more than 10"), std::string::npos);
  // A fail for the probe address is no verdict on the sender.
  SpfEvaluation probe;
  probe.result = SpfResult::kFail;
  probe.matched = "-all";
  EXPECT_EQ(judge_spf("d.test", records({"v=spf1 -all"}), probe, false).result, CheckResult::kPass);
  EXPECT_EQ(judge_spf("d.test", records({"v=spf1 -all"}), probe, true).result, CheckResult::kFail);
  SpfEvaluation temp;
  temp.result = SpfResult::kTempError;
  EXPECT_EQ(judge_spf("d.test", records({"v=spf1 a -all"}), temp, true).result, CheckResult::kWarn);
}

TEST(DoctorDkim, ChecksVersionTagOrderAndKeyPresenceWithoutAConfiguredKey) {
  const std::string name = "s._domainkey.d.test";
  EXPECT_EQ(judge_dkim(name, records({"v=DKIM1; k=rsa; p=AAAA"}), std::nullopt).result,
            CheckResult::kPass);
  // v= is optional (RFC 6376 3.6.1) but must be DKIM1 and first when present.
  EXPECT_EQ(judge_dkim(name, records({"k=rsa; p=AAAA"}), std::nullopt).result, CheckResult::kPass);
  EXPECT_EQ(judge_dkim(name, records({"v=DKIM2; p=AAAA"}), std::nullopt).result,
            CheckResult::kFail);
  EXPECT_EQ(judge_dkim(name, records({"k=rsa; v=DKIM1; p=AAAA"}), std::nullopt).result,
            CheckResult::kFail);
  EXPECT_EQ(judge_dkim(name, records({"v=DKIM1; k=rsa"}), std::nullopt).result, CheckResult::kFail);
  EXPECT_EQ(judge_dkim(name, records({"v=DKIM1; p=AAAA", "v=DKIM1; p=BBBB"}), std::nullopt).result,
            CheckResult::kFail);
  EXPECT_EQ(judge_dkim(name, records({}), std::nullopt).result, CheckResult::kFail);
  EXPECT_EQ(judge_dkim(name, failed(), std::nullopt).result, CheckResult::kWarn);
}

TEST(DoctorDkim, ComparesKeyTypeAndKeyIgnoringWhitespaceInP) {
  const std::string name = "s._domainkey.d.test";
  DkimPublicKey mine{"s", "rsa", "MIIBIjAN+/AQAB", "/etc/mailer/dkim.pem", ""};
  EXPECT_EQ(judge_dkim(name, records({"v=DKIM1; k=rsa; p=MIIBIjAN +/AQAB"}), mine).result,
            CheckResult::kPass);
  EXPECT_EQ(judge_dkim(name, records({"v=DKIM1; p=MIIBIjAN+/AQAB"}), mine).result,
            CheckResult::kPass);  // k= defaults to rsa
  EXPECT_EQ(judge_dkim(name, records({"v=DKIM1; k=ed25519; p=MIIBIjAN+/AQAB"}), mine).result,
            CheckResult::kFail);
  EXPECT_EQ(judge_dkim(name, records({"v=DKIM1; k=rsa; p=MIIBIjAN+/AQAC"}), mine).result,
            CheckResult::kFail);
  DkimPublicKey broken{"s", "", "", "/etc/mailer/missing.pem", "cannot read"};
  DoctorCheck c = judge_dkim(name, records({"v=DKIM1; p=AAAA"}), broken);
  EXPECT_EQ(c.result, CheckResult::kFail);
  EXPECT_NE(c.detail.find("/etc/mailer/missing.pem"), std::string::npos);
}

TEST(DoctorDkim, LoadingAMissingOrMismatchedKeyIsAnErrorValue) {
  DkimSettings s{"d.test", "s", "rsa-sha256", "/nonexistent/key.pem"};
  DkimPublicKey k = load_dkim_public_key(s);
  EXPECT_FALSE(k.error.empty());
  EXPECT_TRUE(k.p.empty());
  s.algorithm = "dsa";
  EXPECT_NE(load_dkim_public_key(s).error.find("unknown algorithm"), std::string::npos);
}

TEST(DoctorDmarc, PoliciesDuplicatesAndBadValues) {
  const std::string name = "_dmarc.d.test";
  EXPECT_EQ(judge_dmarc(name, records({"v=DMARC1; p=quarantine; pct=50"})).result,
            CheckResult::kPass);
  EXPECT_EQ(judge_dmarc(name, records({"v=DMARC1;p=none"})).result, CheckResult::kWarn);
  EXPECT_EQ(judge_dmarc(name, records({"v=DMARC1; p=block"})).result, CheckResult::kFail);
  EXPECT_EQ(judge_dmarc(name, records({"v=DMARC1; rua=mailto:a@d.test"})).result,
            CheckResult::kFail);
  // The version tag must come first; other TXT records are ignored.
  EXPECT_EQ(judge_dmarc(name, records({"p=reject; v=DMARC1"})).result, CheckResult::kFail);
  EXPECT_EQ(judge_dmarc(name, records({"unrelated", "v=DMARC1; p=reject"})).result,
            CheckResult::kPass);
  EXPECT_EQ(judge_dmarc(name, records({"v=DMARC1; p=reject", "v=DMARC1; p=none"})).result,
            CheckResult::kFail);
  EXPECT_EQ(judge_dmarc(name, nxdomain()).result, CheckResult::kFail);
  EXPECT_EQ(judge_dmarc(name, failed()).result, CheckResult::kWarn);
}

TEST(DoctorMx, HostsNullMxFallbackAndErrors) {
  const DnsAnswer none = records({});
  DoctorCheck ok = judge_mx("d.test", mx({{20, "b.d.test"}, {10, "a.d.test"}}), none, none);
  EXPECT_EQ(ok.result, CheckResult::kPass);
  EXPECT_EQ(ok.detail, "10 a.d.test, 20 b.d.test");
  EXPECT_EQ(judge_mx("d.test", mx({{0, ""}}), none, none).result, CheckResult::kFail);
  EXPECT_EQ(judge_mx("d.test", mx({{0, ""}, {10, "a.d.test"}}), none, none).result,
            CheckResult::kWarn);
  EXPECT_EQ(judge_mx("d.test", none, none, records({"2001:db8::1"})).result, CheckResult::kWarn);
  EXPECT_EQ(judge_mx("d.test", none, none, none).result, CheckResult::kFail);
  EXPECT_EQ(judge_mx("d.test", none, failed(), none).result, CheckResult::kWarn);
  EXPECT_EQ(judge_mx("d.test", nxdomain(), nxdomain(), nxdomain()).result, CheckResult::kFail);
  EXPECT_EQ(judge_mx("d.test", failed(), none, none).result, CheckResult::kWarn);
}

TEST(DoctorPtr, ForwardConfirmationForIpv6AndErrors) {
  const IpAddress ip = *IpAddress::parse("2001:db8::25");
  DoctorCheck ok = judge_ptr(ip, records({"mx.d.test"}), {records({"2001:db8:0::25"})});
  EXPECT_EQ(ok.result, CheckResult::kPass);
  EXPECT_EQ(ok.target, ip.reverse_name());
  // The second name confirms.
  EXPECT_EQ(judge_ptr(ip, records({"a.d.test", "b.d.test"}),
                      {records({"2001:db8::1"}), records({"2001:db8::25"})})
                .result,
            CheckResult::kPass);
  EXPECT_EQ(judge_ptr(ip, records({"a.d.test"}), {records({"2001:db8::1"})}).result,
            CheckResult::kFail);
  EXPECT_EQ(judge_ptr(ip, records({"a.d.test"}), {failed()}).result, CheckResult::kWarn);
  EXPECT_EQ(judge_ptr(ip, nxdomain(), {}).result, CheckResult::kFail);
  EXPECT_EQ(judge_ptr(ip, failed(), {}).result, CheckResult::kWarn);
}

TEST(DoctorBlocklist, OnlyLoopbackAnswersOutsideTheErrorRangeAreListings) {
  EXPECT_EQ(judge_blocklist("ip_blocklist", "bl.test", "q", records({"127.0.0.2"})).result,
            CheckResult::kFail);
  EXPECT_EQ(judge_blocklist("ip_blocklist", "bl.test", "q", records({"127.0.0.10"})).result,
            CheckResult::kFail);
  EXPECT_EQ(judge_blocklist("ip_blocklist", "bl.test", "q", records({"127.255.255.254"})).result,
            CheckResult::kWarn);
  EXPECT_EQ(judge_blocklist("ip_blocklist", "bl.test", "q", records({"198.51.100.1"})).result,
            CheckResult::kWarn);
  EXPECT_EQ(judge_blocklist("ip_blocklist", "bl.test", "q", nxdomain()).result, CheckResult::kPass);
  EXPECT_EQ(judge_blocklist("ip_blocklist", "bl.test", "q", failed()).result, CheckResult::kWarn);
}

TEST(DoctorUsage, DomainsAndSelectors) {
  EXPECT_EQ(normalize_domain("Example.COM."), "example.com");
  EXPECT_EQ(normalize_domain("xn--bcher-kva.example"), "xn--bcher-kva.example");
  for (const char* bad :
       {"", "localhost", "a..b", "-a.b", "a-.b", "a b.c", "a_b.c", "bücher.de", "192.0.2.1/24"}) {
    EXPECT_FALSE(normalize_domain(bad)) << bad;
  }
  EXPECT_FALSE(normalize_domain(std::string(64, 'a') + ".test"));
  EXPECT_TRUE(valid_selector("s2026"));
  EXPECT_TRUE(valid_selector("k1.eu_west"));
  EXPECT_FALSE(valid_selector("a b"));
  EXPECT_FALSE(valid_selector(""));
  EXPECT_FALSE(valid_selector("a..b"));
}

TEST(DoctorReport, JsonAndTableCarryEveryCheckAndTheSummary) {
  DoctorReport r;
  r.domain = "d.test";
  r.ip = IpAddress::parse("192.0.2.1");
  r.checks = {{"spf", CheckResult::kPass, "ok", "d.test"},
              {"dmarc", CheckResult::kWarn, "p=none", "_dmarc.d.test"},
              {"mx", CheckResult::kFail, "null MX", "d.test"}};
  EXPECT_TRUE(r.any_failed());
  auto j = r.to_json();
  EXPECT_EQ(j["domain"], "d.test");
  EXPECT_EQ(j["ip"], "192.0.2.1");
  ASSERT_EQ(j["checks"].size(), 3u);
  EXPECT_EQ(j["checks"][1]["check"], "dmarc");
  EXPECT_EQ(j["checks"][1]["result"], "warn");
  EXPECT_EQ(j["checks"][1]["detail"], "p=none");
  EXPECT_EQ(j["summary"], (nlohmann::json{{"pass", 1}, {"warn", 1}, {"fail", 1}}));
  const std::string table = r.to_table();
  EXPECT_NE(table.find("mx     fail    null MX"), std::string::npos) << table;
  EXPECT_NE(table.find("1 pass, 1 warn, 1 fail"), std::string::npos);
}

}  // namespace
}  // namespace mailer::app
