// MX checking against a real DNS server (dnsmasq on loopback): MX, null MX,
// A-only and AAAA-only fallback, NXDOMAIN, no records at all; the import's
// no_mx rejections, providers from MX hosts, and the cache in `domains`.
#include <algorithm>

#include "app/cli/import_mx_lookup.h"
#include "lists/mx_checker.h"
#include "tests/lists/dnsmasq_server.h"
#include "tests/lists/list_db_fixture.h"
#include "tests/lists/slow_dns_server.h"

namespace mailer::lists {
namespace {

sender::DnsResolverOptions resolver_options(const DnsmasqServer& dns) {
  sender::DnsResolverOptions o;
  o.dns_server = dns.address();
  return o;
}

TEST(MxChecker, SortsEveryDnsSituationIntoItsStatus) {
  DnsmasqServer dns(mx_test_zone());
  app::ImportMxLookup lookup(resolver_options(dns));
  MxCheckerOptions o;
  o.concurrency = 2;  // fewer slots than domains: the queue must drain
  MxChecker checker(lookup, o);
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
  sender::DnsResolverOptions o = resolver_options(dns);
  o.timeout = std::chrono::milliseconds(200);
  o.tries = 1;
  dns.stop();
  app::ImportMxLookup lookup(o);
  MxChecker checker(lookup);
  auto answers = checker.check({"good.test"});
  EXPECT_EQ(answers["good.test"].status, MxStatus::kError);
  EXPECT_FALSE(answers["good.test"].undeliverable());
}

TEST(MxChecker, RejectsAMalformedServerAddress) {
  sender::DnsResolverOptions o;
  o.dns_server = "not an address";
  EXPECT_THROW(app::ImportMxLookup{o}, std::invalid_argument);
}

// Answers every domain as an MX host of its own, one lookup per wait(),
// and remembers how many lookups were in flight at most.
class CountingLookup : public MxLookup {
 public:
  void start(const std::string& domain, Done done) override {
    pending_.emplace_back(domain, std::move(done));
    most_in_flight = std::max(most_in_flight, pending_.size());
  }
  void wait() override {
    if (pending_.empty()) return;
    auto [domain, done] = std::move(pending_.front());
    pending_.erase(pending_.begin());
    MxAnswer a;
    a.status = MxStatus::kOk;
    a.hosts = {"mx." + domain};
    done(a);
  }
  std::size_t most_in_flight = 0;

 private:
  std::vector<std::pair<std::string, Done>> pending_;
};

TEST(MxChecker, KeepsAtMostItsConcurrencyOfLookupsInFlight) {
  CountingLookup lookup;
  MxChecker checker(lookup, MxCheckerOptions{.concurrency = 3});
  std::vector<std::string> domains;
  for (int i = 0; i < 10; ++i) domains.push_back("d" + std::to_string(i) + ".test");
  auto answers = checker.check(domains);
  ASSERT_EQ(answers.size(), 10u);
  EXPECT_EQ(answers["d7.test"].hosts, std::vector<std::string>{"mx.d7.test"});
  EXPECT_EQ(lookup.most_in_flight, 3u);
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

// [import] mx_concurrency through the binary: a DNS server that holds every
// query 300 ms sees at most that many MX lookups at once, and more of them
// when the key allows more.
TEST_F(MxImportTest, MxConcurrencyBoundsTheLookupsInFlight) {
  SlowDnsServer dns(std::chrono::milliseconds(300));
  ASSERT_EQ(mailer({"lists", "create", "news"}).exit_code, 0);
  auto import_with = [&](int concurrency, const std::string& prefix) {
    write_config("[import]\ndns_server = \"" + dns.address() +
                 "\"\nmx_timeout = \"5s\"\nmx_concurrency = " + std::to_string(concurrency) + "\n");
    std::string csv = "email\n";
    for (int i = 0; i < 12; ++i) csv += "a@" + prefix + std::to_string(i) + ".test\n";
    auto j = mailer_json({"import", "--list", "news", write(prefix + ".csv", csv), "--mx-check"});
    EXPECT_EQ(j["rejected"]["no_mx"], 12) << "every domain answered NXDOMAIN";
    EXPECT_EQ(j["imported"], 0);
  };
  import_with(3, "three");
  EXPECT_EQ(dns.most_in_flight(), 3u) << "mx_concurrency = 3";
  EXPECT_EQ(dns.names().size(), 12u);
  import_with(12, "twelve");
  EXPECT_GT(dns.most_in_flight(), 3u) << "mx_concurrency = 12 kept no more lookups in flight";
  EXPECT_EQ(dns.names().size(), 24u);
}

}  // namespace
}  // namespace mailer::lists
