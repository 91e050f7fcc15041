// MX checking against a real DNS server (dnsmasq on loopback): MX, null MX,
// A-only and AAAA-only fallback, NXDOMAIN, no records at all; the import's
// no_mx rejections, providers from MX hosts, and the cache in `domains`.
#include "lists/mx_checker.h"
#include "tests/lists/dnsmasq_server.h"
#include "tests/lists/list_db_fixture.h"

namespace mailer::lists {
namespace {

TEST(MxChecker, SortsEveryDnsSituationIntoItsStatus) {
  DnsmasqServer dns(mx_test_zone());
  MxCheckerOptions o;
  o.dns_server = dns.address();
  o.concurrency = 2;  // fewer slots than domains: the queue must drain
  MxChecker checker(o);
  auto answers = checker.check(
      {"good.test", "nullmx.test", "aonly.test", "v6only.test", "nx.test", "empty.test"});
  ASSERT_EQ(answers.size(), 6u);
  EXPECT_EQ(answers["good.test"].status, MxStatus::kOk);
  EXPECT_EQ(answers["good.test"].hosts,
            (std::vector<std::string>{"mail.good.test", "backup.good.test"}));
  EXPECT_EQ(answers["good.test"].ttl, std::chrono::seconds(300));
  EXPECT_EQ(answers["nullmx.test"].status, MxStatus::kNullMx);
  EXPECT_TRUE(answers["nullmx.test"].undeliverable());
  EXPECT_EQ(answers["aonly.test"].status, MxStatus::kAFallback);
  EXPECT_EQ(answers["aonly.test"].hosts, (std::vector<std::string>{"aonly.test"}));
  EXPECT_EQ(answers["v6only.test"].status, MxStatus::kAFallback);
  EXPECT_EQ(answers["nx.test"].status, MxStatus::kNxDomain);
  EXPECT_EQ(answers["empty.test"].status, MxStatus::kNoAddress);
}

TEST(MxChecker, ReportsAnUnreachableServerAsTemporaryError) {
  DnsmasqServer dns(mx_test_zone());
  MxCheckerOptions o;
  o.dns_server = dns.address();
  o.timeout = std::chrono::milliseconds(200);
  o.tries = 1;
  dns.stop();
  MxChecker checker(o);
  auto answers = checker.check({"good.test"});
  EXPECT_EQ(answers["good.test"].status, MxStatus::kError);
  EXPECT_FALSE(answers["good.test"].undeliverable());
}

TEST(MxChecker, RejectsAMalformedServerAddress) {
  MxCheckerOptions o;
  o.dns_server = "not an address";
  EXPECT_THROW(MxChecker{o}, std::runtime_error);
}

class MxImportTest : public ListDbTest {};

TEST_F(MxImportTest, RejectsDomainsWithoutMailHostsAndCachesAnswers) {
  auto dns = std::make_unique<DnsmasqServer>(mx_test_zone());
  write_config("[import]\ndns_server = \"" + dns->address() + "\"\nmx_timeout = \"500ms\"\n");
  ASSERT_EQ(mailer({"lists", "create", "news"}).exit_code, 0);
  auto file = write("in.csv",
                    "email\n"
                    "a@good.test\nb@corp.test\nc@aonly.test\nd@v6only.test\n"
                    "e@nullmx.test\nf@nx.test\ng@empty.test\n");
  auto j =
      mailer_json({"import", "--list", "news", file, "--mx-check", "--rejects", path("r.csv")});
  EXPECT_EQ(j["imported"], 4);
  EXPECT_EQ(j["rejected"]["no_mx"], 3);
  EXPECT_EQ(count("SELECT count(*) FROM domains WHERE domain = 'corp.test' AND provider = 'gmail' "
                  "AND mx_hosts = '{aspmx.l.google.com}' AND mx_status = 'ok'"),
            1);
  EXPECT_EQ(count("SELECT count(*) FROM domains WHERE domain = 'good.test' AND provider = "
                  "'other:mail.good.test'"),
            1);
  EXPECT_EQ(count("SELECT count(*) FROM domains WHERE domain = 'aonly.test' AND mx_status = "
                  "'a_fallback'"),
            1);
  // TTL 300 s, raised to the 1 h floor.
  EXPECT_EQ(count("SELECT count(*) FROM domains WHERE mx_status IS NOT NULL "
                  "AND expires_at > now() + interval '50 minutes'"),
            7);
  // With the DNS server gone, the cached answers still decide.
  dns.reset();
  ASSERT_EQ(mailer({"lists", "create", "again"}).exit_code, 0);
  auto k = mailer_json({"import", "--list", "again", file, "--mx-check"});
  EXPECT_EQ(k["imported"], 4);
  EXPECT_EQ(k["rejected"]["no_mx"], 3);
  EXPECT_EQ(k["mx_unverified"], 0);
}

TEST_F(MxImportTest, KeepsRowsWhoseLookupFailedTemporarily) {
  DnsmasqServer dns(mx_test_zone());
  std::string address = dns.address();
  dns.stop();
  write_config("[import]\ndns_server = \"" + address + "\"\nmx_timeout = \"200ms\"\n");
  ASSERT_EQ(mailer({"lists", "create", "news"}).exit_code, 0);
  auto j = mailer_json(
      {"import", "--list", "news", write("in.csv", "email\na@good.test\n"), "--mx-check"});
  EXPECT_EQ(j["imported"], 1);
  EXPECT_EQ(j["mx_unverified"], 1);
  EXPECT_EQ(count("SELECT count(*) FROM domains WHERE mx_status = 'error' AND expires_at <= now()"),
            1)
      << "temporary failures are never cached";
}

}  // namespace
}  // namespace mailer::lists
