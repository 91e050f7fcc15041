// MxResolver against a dnsmasq started on a loopback port with the records
// each case needs.
#include "sender/mx_resolver.h"

#include <gtest/gtest.h>

#include "tests/sender/loopback_peers.h"

namespace mailer::sender {
namespace {

using namespace std::chrono_literals;
using mailer::testing::ChildProcess;
using mailer::testing::run_until;

// dnsmasq answering only from its command line: --local makes every other
// name under .test NXDOMAIN instead of a refused forward.
class LocalDns {
 public:
  LocalDns()
      : port_(mailer::testing::free_udp_tcp_port()),
        process_({"/usr/sbin/dnsmasq", "--no-daemon", "--port=" + std::to_string(port_),
                  "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
                  "--local=/test/", "--mx-host=mx.test,mail1.mx.test,20",
                  "--mx-host=mx.test,mail0.mx.test,10", "--host-record=mail0.mx.test,127.0.0.10",
                  "--host-record=mail1.mx.test,127.0.0.11,::11", "--mx-host=nullmx.test,.,0",
                  "--host-record=nullmx.test,127.0.0.13", "--host-record=aonly.test,127.0.0.12",
                  "--txt-record=txtonly.test,no mail here", "--mx-host=dangling.test,gone.test,5",
                  "--pid-file="}) {
    if (!mailer::testing::wait_listening(port_, 5s)) {
      throw std::runtime_error("dnsmasq did not start");
    }
  }
  std::string server() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  unsigned short port_;
  ChildProcess process_;
};

class MxResolverTest : public ::testing::Test {
 protected:
  MxResult lookup(const std::string& domain) {
    std::optional<MxResult> result;
    resolver_.resolve(domain, [&](const MxResult& r) { result = r; });
    EXPECT_TRUE(run_until(
        io_, [&] { return result.has_value(); }, 10s));
    return result.value_or(MxResult{});
  }

  LocalDns dns_;
  boost::asio::io_context io_;
  MxResolver resolver_{io_, MxResolverOptions{.dns_server = dns_.server()}};
};

TEST_F(MxResolverTest, ListsMailHostsInPreferenceOrderWithAddresses) {
  MxResult r = lookup("mx.test");
  ASSERT_EQ(r.status, MxStatus::kOk) << r.error;
  EXPECT_FALSE(r.implicit);
  ASSERT_EQ(r.hosts.size(), 2u);
  EXPECT_EQ(r.hosts[0].name, "mail0.mx.test");
  EXPECT_EQ(r.hosts[0].preference, 10);
  EXPECT_EQ(r.hosts[0].addresses, std::vector<std::string>{"127.0.0.10"});
  EXPECT_EQ(r.hosts[1].name, "mail1.mx.test");
  EXPECT_EQ(r.hosts[1].addresses.size(), 2u);  // IPv4 and IPv6
}

TEST_F(MxResolverTest, NullMxIsUndeliverableEvenWithAnAddress) {
  MxResult r = lookup("nullmx.test");
  EXPECT_EQ(r.status, MxStatus::kNullMx);
  EXPECT_TRUE(r.permanent_failure());
  EXPECT_TRUE(r.hosts.empty());
}

TEST_F(MxResolverTest, DomainWithOnlyAnAddressIsItsOwnMailHost) {
  MxResult r = lookup("AOnly.test.");
  ASSERT_EQ(r.status, MxStatus::kOk) << r.error;
  EXPECT_TRUE(r.implicit);
  ASSERT_EQ(r.hosts.size(), 1u);
  EXPECT_EQ(r.hosts[0].name, "aonly.test");
  EXPECT_EQ(r.hosts[0].addresses, std::vector<std::string>{"127.0.0.12"});
}

TEST_F(MxResolverTest, NonexistentDomainIsAPermanentFailure) {
  MxResult r = lookup("nx.test");
  EXPECT_EQ(r.status, MxStatus::kNoSuchDomain);
  EXPECT_TRUE(r.permanent_failure());
}

TEST_F(MxResolverTest, DomainWithoutMxOrAddressHasNoMailHost) {
  MxResult r = lookup("txtonly.test");
  EXPECT_EQ(r.status, MxStatus::kNoMailHost);
  EXPECT_TRUE(r.permanent_failure());
}

TEST_F(MxResolverTest, MxHostWithoutAddressIsKeptWithNoAddresses) {
  MxResult r = lookup("dangling.test");
  ASSERT_EQ(r.status, MxStatus::kOk) << r.error;
  ASSERT_EQ(r.hosts.size(), 1u);
  EXPECT_EQ(r.hosts[0].name, "gone.test");
  EXPECT_TRUE(r.hosts[0].addresses.empty());
}

TEST_F(MxResolverTest, AnswersRepeatedLookupsFromTheCache) {
  ASSERT_EQ(lookup("mx.test").status, MxStatus::kOk);
  auto sent = resolver_.queries_sent();
  EXPECT_EQ(lookup("MX.test").status, MxStatus::kOk);
  EXPECT_EQ(resolver_.queries_sent(), sent);
  resolver_.clear_cache();
  EXPECT_EQ(lookup("mx.test").status, MxStatus::kOk);
  EXPECT_GT(resolver_.queries_sent(), sent);
}

TEST_F(MxResolverTest, ConcurrentLookupsOfOneDomainShareOneQuery) {
  int answered = 0;
  for (int i = 0; i < 5; ++i) {
    resolver_.resolve("mx.test", [&](const MxResult& r) { answered += r.status == MxStatus::kOk; });
  }
  ASSERT_TRUE(run_until(
      io_, [&] { return answered == 5; }, 10s));
  EXPECT_EQ(resolver_.queries_sent(), 3u);  // one MX query, one address lookup per host
}

TEST(MxResolverTimeout, SilentServerIsATemporaryFailure) {
  // A UDP socket nobody reads from: queries go unanswered.
  boost::asio::io_context io;
  boost::asio::ip::udp::socket silent(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  MxResolverOptions o;
  o.dns_server = "127.0.0.1:" + std::to_string(silent.local_endpoint().port());
  o.timeout = 200ms;
  o.tries = 1;
  MxResolver resolver(io, o);
  std::optional<MxResult> result;
  auto start = std::chrono::steady_clock::now();
  resolver.resolve("mx.test", [&](const MxResult& r) { result = r; });
  ASSERT_TRUE(run_until(
      io, [&] { return result.has_value(); }, 10s));
  EXPECT_EQ(result->status, MxStatus::kTemporaryFailure);
  EXPECT_FALSE(result->permanent_failure());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

}  // namespace
}  // namespace mailer::sender
