// DnsResolver against a dnsmasq started on a loopback port with the records
// each case needs: mail hosts by preference, address fallback, null MX,
// NXDOMAIN, TXT and PTR answers, a server that never answers, and the cache
// with an injected clock.
#include "sender/dns_resolver.h"

#include <gtest/gtest.h>

#include <boost/asio/ip/udp.hpp>

#include "tests/lists/dnsmasq_server.h"
#include "tests/sender/loopback_peers.h"

namespace mailer::sender {
namespace {

using namespace std::chrono_literals;
using mailer::testing::run_until;

// Every local record is served with this TTL.
constexpr auto kTtl = 300s;

// dnsmasq answering only from its command line: --local makes every other
// name under .test NXDOMAIN instead of a refused forward. DnsmasqServer picks
// its port and tries another when dnsmasq cannot bind the one picked.
class LocalDns {
 public:
  LocalDns()
      : server_({"--local=/test/", "--mx-host=mx.test,mail1.mx.test,20",
                 "--mx-host=mx.test,mail0.mx.test,10", "--mx-host=mx.test,mail2.mx.test,30",
                 "--host-record=mail0.mx.test,127.0.0.10",
                 "--host-record=mail1.mx.test,127.0.0.11,::11",
                 "--host-record=mail2.mx.test,127.0.0.14", "--mx-host=nullmx.test,.,0",
                 "--host-record=nullmx.test,127.0.0.13", "--host-record=aonly.test,127.0.0.12",
                 "--host-record=v6only.test,::12", "--txt-record=txtonly.test,no mail here",
                 "--txt-record=spf.test,v=spf1 -all", "--txt-record=spf.test,second record",
                 "--mx-host=dangling.test,gone.test,5"}) {
    // DnsmasqServer serves local records with this TTL.
    static_assert(kTtl == 300s);
  }
  std::string server() const { return server_.address(); }

 private:
  mailer::lists::DnsmasqServer server_;
};

// A clock the test moves by hand.
struct FakeClock {
  std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now();
  std::function<std::chrono::steady_clock::time_point()> function() {
    return [this] { return now; };
  }
};

class DnsResolverTest : public ::testing::Test {
 protected:
  MxResult lookup(const std::string& domain, HostAddresses addresses = HostAddresses::kLookUp) {
    std::optional<MxResult> result;
    resolver_.resolve_mx(
        domain, [&](const MxResult& r) { result = r; }, addresses);
    EXPECT_TRUE(run_until(
        io_, [&] { return result.has_value(); }, 10s));
    return result.value_or(MxResult{});
  }

  DnsAnswer ask(const std::string& name, DnsType type) {
    std::optional<DnsAnswer> answer;
    resolver_.query(name, type, [&](const DnsAnswer& a) { answer = a; });
    EXPECT_TRUE(run_until(
        io_, [&] { return answer.has_value(); }, 10s));
    return answer.value_or(DnsAnswer{});
  }

  LocalDns dns_;
  FakeClock clock_;
  boost::asio::io_context io_;
  DnsResolver resolver_{
      io_, DnsResolverOptions{
               .dns_server = dns_.server(), .negative_cache_for = 20s, .clock = clock_.function()}};
};

TEST_F(DnsResolverTest, ListsMailHostsInPreferenceOrderWithAddresses) {
  MxResult r = lookup("mx.test");
  ASSERT_EQ(r.status, MxStatus::kOk) << r.error;
  EXPECT_FALSE(r.implicit);
  ASSERT_EQ(r.hosts.size(), 3u);
  EXPECT_EQ(r.hosts[0].name, "mail0.mx.test");
  EXPECT_EQ(r.hosts[0].preference, 10);
  EXPECT_EQ(r.hosts[0].addresses, std::vector<std::string>{"127.0.0.10"});
  EXPECT_EQ(r.hosts[1].name, "mail1.mx.test");
  EXPECT_EQ(r.hosts[1].addresses, (std::vector<std::string>{"127.0.0.11", "::11"}));
  EXPECT_EQ(r.hosts[2].name, "mail2.mx.test");
  EXPECT_EQ(r.hosts[2].preference, 30);
  EXPECT_EQ(r.ttl, kTtl);
  EXPECT_TRUE(r.error.empty());
}

TEST_F(DnsResolverTest, MailHostNamesWithoutAddressesWhenAskedSo) {
  MxResult r = lookup("mx.test", HostAddresses::kSkip);
  ASSERT_EQ(r.status, MxStatus::kOk) << r.error;
  ASSERT_EQ(r.hosts.size(), 3u);
  EXPECT_EQ(r.hosts[0].name, "mail0.mx.test");
  EXPECT_TRUE(r.hosts[0].addresses.empty());
  EXPECT_EQ(resolver_.queries_sent(), 1u) << "only the MX question";
}

TEST_F(DnsResolverTest, NullMxIsUndeliverableEvenWithAnAddress) {
  MxResult r = lookup("nullmx.test");
  EXPECT_EQ(r.status, MxStatus::kNullMx);
  EXPECT_TRUE(r.permanent_failure());
  EXPECT_TRUE(r.hosts.empty());
  EXPECT_EQ(r.ttl, kTtl);
}

TEST_F(DnsResolverTest, DomainWithOnlyAnAddressIsItsOwnMailHost) {
  MxResult r = lookup("AOnly.test.");
  ASSERT_EQ(r.status, MxStatus::kOk) << r.error;
  EXPECT_TRUE(r.implicit);
  ASSERT_EQ(r.hosts.size(), 1u);
  EXPECT_EQ(r.hosts[0].name, "aonly.test");
  EXPECT_EQ(r.hosts[0].addresses, std::vector<std::string>{"127.0.0.12"});
  EXPECT_EQ(r.ttl, kTtl);
}

TEST_F(DnsResolverTest, DomainWithOnlyAnIpv6AddressIsItsOwnMailHost) {
  MxResult r = lookup("v6only.test", HostAddresses::kSkip);
  ASSERT_EQ(r.status, MxStatus::kOk) << r.error;
  EXPECT_TRUE(r.implicit);
  ASSERT_EQ(r.hosts.size(), 1u);
  EXPECT_EQ(r.hosts[0].addresses, std::vector<std::string>{"::12"});
}

TEST_F(DnsResolverTest, NonexistentDomainIsAPermanentFailure) {
  MxResult r = lookup("nx.test");
  EXPECT_EQ(r.status, MxStatus::kNoSuchDomain);
  EXPECT_TRUE(r.permanent_failure());
  EXPECT_EQ(ask("nx.test", DnsType::kA).status, DnsStatus::kNxDomain);
}

TEST_F(DnsResolverTest, DomainWithoutMxOrAddressHasNoMailHost) {
  MxResult r = lookup("txtonly.test");
  EXPECT_EQ(r.status, MxStatus::kNoMailHost);
  EXPECT_TRUE(r.permanent_failure());
  EXPECT_TRUE(r.hosts.empty());
}

TEST_F(DnsResolverTest, MxHostWithoutAddressIsKeptWithNoAddresses) {
  MxResult r = lookup("dangling.test");
  ASSERT_EQ(r.status, MxStatus::kOk) << r.error;
  ASSERT_EQ(r.hosts.size(), 1u);
  EXPECT_EQ(r.hosts[0].name, "gone.test");
  EXPECT_TRUE(r.hosts[0].addresses.empty());
}

TEST_F(DnsResolverTest, AnswersTxtRecordsOnePerRecord) {
  DnsAnswer a = ask("spf.test", DnsType::kTxt);
  ASSERT_EQ(a.status, DnsStatus::kOk) << a.error;
  std::vector<std::string> records = a.records;
  std::sort(records.begin(), records.end());
  EXPECT_EQ(records, (std::vector<std::string>{"second record", "v=spf1 -all"}));
  EXPECT_EQ(a.ttl, kTtl);
  EXPECT_EQ(ask("mx.test", DnsType::kTxt).status, DnsStatus::kNoData);
}

TEST_F(DnsResolverTest, AnswersPtrAndAddressQuestions) {
  EXPECT_EQ(ask("10.0.0.127.in-addr.arpa", DnsType::kPtr).records,
            std::vector<std::string>{"mail0.mx.test"});
  EXPECT_EQ(ask("mail1.mx.test", DnsType::kAaaa).records, std::vector<std::string>{"::11"});
  EXPECT_EQ(ask("mail0.mx.test", DnsType::kAaaa).status, DnsStatus::kNoData);
}

TEST_F(DnsResolverTest, ServesRepeatedLookupsFromTheCacheUntilTheTtlRunsOut) {
  ASSERT_EQ(lookup("mx.test").status, MxStatus::kOk);
  const auto sent = resolver_.queries_sent();
  EXPECT_EQ(sent, 7u);  // MX, then A and AAAA of each of the three hosts
  MxResult cached = lookup("MX.test");
  EXPECT_EQ(cached.hosts.size(), 3u);
  EXPECT_EQ(cached.hosts[1].addresses.size(), 2u);
  EXPECT_EQ(resolver_.queries_sent(), sent) << "served from the cache";
  // The MX records alone (the hosts' NODATA answers expire sooner): kept
  // for their TTL of 300 s, asked again once it has passed.
  clock_.now += kTtl - 1s;
  EXPECT_EQ(lookup("mx.test", HostAddresses::kSkip).hosts.size(), 3u);
  EXPECT_EQ(resolver_.queries_sent(), sent) << "still within the TTL";
  clock_.now += 2s;
  EXPECT_EQ(lookup("mx.test", HostAddresses::kSkip).hosts.size(), 3u);
  EXPECT_EQ(resolver_.queries_sent(), sent + 1) << "expired answers are asked again";
  resolver_.clear_cache();
  EXPECT_EQ(lookup("mx.test").status, MxStatus::kOk);
  EXPECT_EQ(resolver_.queries_sent(), 2 * sent + 1);
}

TEST_F(DnsResolverTest, CachesNonexistentNamesForTheNegativeTtl) {
  ASSERT_EQ(ask("nx.test", DnsType::kMx).status, DnsStatus::kNxDomain);
  EXPECT_EQ(ask("nx.test", DnsType::kMx).status, DnsStatus::kNxDomain);
  EXPECT_EQ(resolver_.queries_sent(), 1u);
  clock_.now += 21s;  // past negative_cache_for
  EXPECT_EQ(ask("nx.test", DnsType::kMx).status, DnsStatus::kNxDomain);
  EXPECT_EQ(resolver_.queries_sent(), 2u);
}

TEST_F(DnsResolverTest, ConcurrentLookupsOfOneDomainShareOneQuery) {
  int answered = 0;
  for (int i = 0; i < 5; ++i) {
    resolver_.resolve_mx("mx.test",
                         [&](const MxResult& r) { answered += r.status == MxStatus::kOk; });
  }
  ASSERT_TRUE(run_until(
      io_, [&] { return answered == 5; }, 10s));
  EXPECT_EQ(resolver_.queries_sent(), 7u);  // one MX query, A and AAAA per host
}

TEST_F(DnsResolverTest, BlockingResolverAnswersEveryQuestionInOrder) {
  DnsResolverOptions o;
  o.dns_server = dns_.server();
  BlockingDnsResolver blocking(o);
  auto answers = blocking.resolve({{"spf.test", DnsType::kTxt},
                                   {"mx.test", DnsType::kMx},
                                   {"nullmx.test", DnsType::kMx},
                                   {"aonly.test", DnsType::kA},
                                   {"nowhere.test", DnsType::kA}});
  ASSERT_EQ(answers.size(), 5u);
  EXPECT_EQ(answers[0].records.size(), 2u);
  ASSERT_EQ(answers[1].mx.size(), 3u);
  ASSERT_EQ(answers[2].mx.size(), 1u);
  EXPECT_EQ(answers[2].mx[0].exchange, "");  // null MX
  EXPECT_EQ(answers[3].records, std::vector<std::string>{"127.0.0.12"});
  EXPECT_EQ(answers[4].status, DnsStatus::kNxDomain);
  MxResult mx = blocking.resolve_mx("mx.test");
  ASSERT_EQ(mx.status, MxStatus::kOk);
  EXPECT_EQ(mx.hosts.front().addresses, std::vector<std::string>{"127.0.0.10"});
}

TEST(DnsResolverSilentServer, IsATemporaryFailureWithinTheTimeoutAndNotCached) {
  // A UDP socket nobody reads from: queries go unanswered.
  boost::asio::io_context io;
  boost::asio::ip::udp::socket silent(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  DnsResolverOptions o;
  o.dns_server = "127.0.0.1:" + std::to_string(silent.local_endpoint().port());
  o.timeout = 200ms;
  o.tries = 1;
  DnsResolver resolver(io, o);
  std::optional<MxResult> result;
  std::optional<DnsAnswer> txt;
  auto start = std::chrono::steady_clock::now();
  resolver.resolve_mx("mx.test", [&](const MxResult& r) { result = r; });
  resolver.query("mx.test", DnsType::kTxt, [&](const DnsAnswer& a) { txt = a; });
  ASSERT_TRUE(run_until(
      io, [&] { return result.has_value() && txt.has_value(); }, 10s));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  EXPECT_EQ(result->status, MxStatus::kTemporaryFailure);
  EXPECT_FALSE(result->permanent_failure());
  EXPECT_FALSE(result->error.empty());
  EXPECT_EQ(txt->status, DnsStatus::kError);
  const auto sent = resolver.queries_sent();
  result.reset();
  resolver.resolve_mx("mx.test", [&](const MxResult& r) { result = r; });
  ASSERT_TRUE(run_until(
      io, [&] { return result.has_value(); }, 10s));
  EXPECT_EQ(result->status, MxStatus::kTemporaryFailure);
  EXPECT_GT(resolver.queries_sent(), sent) << "temporary failures are never cached";
}

TEST(DnsResolverSetup, RejectsAMalformedServerAddress) {
  boost::asio::io_context io;
  DnsResolverOptions o;
  o.dns_server = "not an address";
  EXPECT_THROW(DnsResolver(io, o), std::invalid_argument);
}

}  // namespace
}  // namespace mailer::sender
