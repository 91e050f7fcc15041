// `mailer doctor` against a real DNS server: dnsmasq on a loopback port
// serving crafted records for every outcome (SPF pass / softfail / fail /
// missing / include chain / too many lookups; DKIM with real RSA and Ed25519
// keys matching, not matching, revoked and missing; DMARC reject / none /
// missing; MX present / null / A fallback; PTR forward-confirmed or not; an
// IP and a domain listed or not in fake blocklist zones). The DNS client is
// tested on its own, the checks through run_doctor(), and the real binary
// for its exit codes, table and JSON.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "app/doctor/doctor.h"
#include "sender/dns_resolver.h"
#include "tests/lists/dnsmasq_server.h"
#include "tests/support/process.h"

namespace mailer::app {
namespace {

using mailer::testing::run_mailer;
using mailer::testing::run_process;
using mailer::testing::write_file;

// The base64 p= value of a PEM private key, derived with the openssl
// command line (independently of the code under test).
std::string openssl_public_key(const std::string& key_file, bool ed25519) {
  const std::string cmd =
      ed25519 ? "openssl pkey -in '" + key_file + "' -pubout -outform DER | tail -c 32 | base64 -w0"
              : "openssl pkey -in '" + key_file + "' -pubout -outform DER | base64 -w0";
  auto r = run_process({"/bin/sh", "-c", cmd});
  if (r.exit_code != 0 || r.out.empty()) throw std::runtime_error("openssl failed: " + r.err);
  return r.out;
}

void generate_key(const std::string& path, bool ed25519) {
  std::vector<std::string> argv = {"/usr/bin/openssl", "genpkey", "-out", path, "-algorithm"};
  if (ed25519) {
    argv.push_back("ed25519");
  } else {
    argv.insert(argv.end(), {"RSA", "-pkeyopt", "rsa_keygen_bits:2048"});
  }
  auto r = run_process(argv);
  if (r.exit_code != 0) throw std::runtime_error("openssl genpkey failed: " + r.err);
}

// A --txt-record option whose text is split into strings of at most 200
// characters (a DNS character-string holds 255): long DKIM keys need it.
// No quotes: on its command line dnsmasq keeps them as text. No commas
// either: they separate the strings.
std::string txt_record(const std::string& name, const std::string& text) {
  std::string option = "--txt-record=" + name;
  for (std::size_t i = 0; i < text.size(); i += 200) {
    option += "," + text.substr(i, 200);
  }
  return option;
}

class DoctorDns : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = mailer::testing::make_temp_dir("doctor");
    rsa_key_ = dir_ + "/rsa.pem";
    ed_key_ = dir_ + "/ed25519.pem";
    other_rsa_key_ = dir_ + "/other-rsa.pem";
    generate_key(rsa_key_, false);
    generate_key(ed_key_, true);
    generate_key(other_rsa_key_, false);
    const std::string rsa_p = openssl_public_key(rsa_key_, false);
    const std::string ed_p = openssl_public_key(ed_key_, true);
    const std::string other_p = openssl_public_key(other_rsa_key_, false);

    std::vector<std::string> zone = {
        "--local=/test/", "--local=/in-addr.arpa/", "--local=/ip6.arpa/",
        // good.test: everything right for 192.0.2.10 and 198.51.100.0/24.
        txt_record("good.test", "v=spf1 ip4:192.0.2.0/28 include:_spf.good.test -all"),
        txt_record("good.test", "google-site-verification=unrelated"),
        txt_record("_spf.good.test", "v=spf1 ip4:198.51.100.0/24 -all"),
        txt_record("rsa1._domainkey.good.test", "v=DKIM1; k=rsa; p=" + rsa_p),
        txt_record("ed1._domainkey.good.test", "v=DKIM1; k=ed25519; p=" + ed_p),
        txt_record("stale._domainkey.good.test", "v=DKIM1; k=rsa; p=" + other_p),
        txt_record("revoked._domainkey.good.test", "v=DKIM1; k=rsa; p="),
        txt_record("_dmarc.good.test", "v=DMARC1; p=reject; rua=mailto:dmarc@good.test"),
        "--mx-host=good.test,mail.good.test,10", "--host-record=mail.good.test,192.0.2.10",
        // 192.0.2.11 has a PTR that does not resolve back; 192.0.2.12 none.
        "--ptr-record=11.2.0.192.in-addr.arpa,liar.good.test",
        "--host-record=liar.good.test,203.0.113.99",
        // soft.test: ~all, p=none, no MX but an address.
        txt_record("soft.test", "v=spf1 ip4:203.0.113.0/24 ~all"),
        txt_record("_dmarc.soft.test", "v=DMARC1; p=none"), "--host-record=soft.test,203.0.113.1",
        // hard.test: -all only; two DMARC records.
        txt_record("hard.test", "v=spf1 -all"),
        txt_record("_dmarc.hard.test", "v=DMARC1; p=reject"),
        txt_record("_dmarc.hard.test", "v=DMARC1; p=none"), "--mx-host=hard.test,mail.good.test,5",
        // bare.test: no SPF, no DMARC, null MX.
        "--dns-rr=bare.test,15,0000:00",
        // deep.test: an include chain one lookup too long.
        txt_record("deep.test", "v=spf1 include:d1.deep.test -all"),
        // listed.test: in the domain blocklist.
        "--host-record=listed.test.dbl.test,127.0.1.2", "--mx-host=listed.test,mail.good.test,10",
        // The IP blocklist: 192.0.2.10 not listed, .66 listed, .67 an error code.
        "--host-record=66.2.0.192.bl.test,127.0.0.2",
        "--host-record=67.2.0.192.bl.test,127.255.255.254"};
    for (int i = 1; i <= 10; ++i) {
      zone.push_back(txt_record(fmt::format("d{}.deep.test", i),
                                fmt::format("v=spf1 include:d{}.deep.test -all", i + 1)));
    }
    zone.push_back(txt_record("d11.deep.test", "v=spf1 +all"));
    dns_ = std::make_unique<lists::DnsmasqServer>(zone);

    config_ = dir_ + "/mailer.toml";
    write_file(config_, fmt::format(R"([[dkim]]
domain = "good.test"
selector = "rsa1"
algorithm = "rsa-sha256"
key_file = "{}"

[[dkim]]
domain = "good.test"
selector = "ed1"
algorithm = "ed25519-sha256"
key_file = "{}"

[doctor]
ip_blocklists = ["bl.test"]
domain_blocklists = ["dbl.test"]
)",
                                    rsa_key_, ed_key_));
  }
  static void TearDownTestSuite() {
    dns_.reset();
    std::filesystem::remove_all(dir_);
  }

  static DoctorRequest request(const std::string& domain, const char* ip = nullptr) {
    DoctorRequest r;
    r.domain = domain;
    if (ip != nullptr) r.ip = IpAddress::parse(ip);
    r.ip_blocklists = {"bl.test"};
    r.domain_blocklists = {"dbl.test"};
    return r;
  }

  static DkimSettings dkim(const std::string& selector, const std::string& algorithm,
                           const std::string& key_file) {
    return DkimSettings{"good.test", selector, algorithm, key_file};
  }

  // The one check named `name` of a report (fails the test if not one).
  static DoctorCheck only(const DoctorReport& report, const std::string& name) {
    std::vector<DoctorCheck> found;
    for (const auto& c : report.checks) {
      if (c.check == name) found.push_back(c);
    }
    EXPECT_EQ(found.size(), 1u) << name;
    return found.empty() ? DoctorCheck{} : found[0];
  }

  static DoctorReport doctor(const DoctorRequest& r) {
    sender::DnsResolverOptions o;
    o.dns_server = dns_->address();
    o.timeout = std::chrono::milliseconds(500);
    o.tries = 1;
    sender::BlockingDnsResolver dns(o);
    return run_doctor(dns, r);
  }

  static inline std::string dir_, rsa_key_, ed_key_, other_rsa_key_, config_;
  static inline std::unique_ptr<lists::DnsmasqServer> dns_;
};

TEST_F(DoctorDns, ClientSortsAnswersIntoRecordsNoDataNxDomainAndErrors) {
  sender::DnsResolverOptions o;
  o.dns_server = dns_->address();
  sender::BlockingDnsResolver dns(o);
  auto answers = dns.resolve({{"good.test", DnsType::kTxt},
                              {"rsa1._domainkey.good.test", DnsType::kTxt},
                              {"good.test", DnsType::kMx},
                              {"bare.test", DnsType::kMx},
                              {"mail.good.test", DnsType::kA},
                              {"10.2.0.192.in-addr.arpa", DnsType::kPtr},
                              {"mail.good.test", DnsType::kAaaa},
                              {"nowhere.test", DnsType::kA}});
  ASSERT_EQ(answers.size(), 8u);
  EXPECT_EQ(answers[0].status, DnsStatus::kOk);
  EXPECT_EQ(answers[0].records.size(), 2u);
  // The key was split into several character-strings; they come back joined.
  ASSERT_EQ(answers[1].records.size(), 1u);
  EXPECT_EQ(answers[1].records[0], "v=DKIM1; k=rsa; p=" + openssl_public_key(rsa_key_, false));
  ASSERT_EQ(answers[2].mx.size(), 1u);
  EXPECT_EQ(answers[2].mx[0].exchange, "mail.good.test");
  EXPECT_EQ(answers[2].mx[0].preference, 10);
  ASSERT_EQ(answers[3].mx.size(), 1u);
  EXPECT_EQ(answers[3].mx[0].exchange, "");  // null MX
  EXPECT_EQ(answers[4].records, std::vector<std::string>{"192.0.2.10"});
  EXPECT_EQ(answers[5].records, std::vector<std::string>{"mail.good.test"});
  EXPECT_EQ(answers[6].status, DnsStatus::kNoData);
  EXPECT_EQ(answers[7].status, DnsStatus::kNxDomain);
}

TEST_F(DoctorDns, ClientReportsASilentServerAsErrorWithinItsTimeout) {
  lists::DnsmasqServer silent({"--local=/test/"});
  sender::DnsResolverOptions o;
  o.dns_server = silent.address();
  o.timeout = std::chrono::milliseconds(200);
  o.tries = 1;
  silent.stop();
  sender::BlockingDnsResolver dns(o);
  const auto start = std::chrono::steady_clock::now();
  auto answers = dns.resolve({{"good.test", DnsType::kTxt}, {"good.test", DnsType::kMx}});
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  for (const auto& a : answers) {
    EXPECT_EQ(a.status, DnsStatus::kError);
    EXPECT_FALSE(a.error.empty());
  }
}

TEST_F(DoctorDns, EverythingRightPassesEveryCheck) {
  DoctorRequest r = request("good.test", "192.0.2.10");
  r.dkim = {dkim("rsa1", "rsa-sha256", rsa_key_), dkim("ed1", "ed25519-sha256", ed_key_)};
  DoctorReport report = doctor(r);
  for (const auto& c : report.checks) {
    EXPECT_EQ(c.result, CheckResult::kPass) << c.check << ": " << c.detail;
  }
  // spf, 2 dkim, dmarc, mx, ptr, ip and domain blocklist.
  EXPECT_EQ(report.checks.size(), 8u);
  EXPECT_NE(only(report, "ptr").detail.find("mail.good.test"), std::string::npos);
}

TEST_F(DoctorDns, SpfOutcomesForEachRecord) {
  // Through the include chain.
  EXPECT_EQ(only(doctor(request("good.test", "198.51.100.7")), "spf").result, CheckResult::kPass);
  DoctorCheck outside = only(doctor(request("good.test", "192.0.2.200")), "spf");
  EXPECT_EQ(outside.result, CheckResult::kFail);
  EXPECT_NE(outside.detail.find("-all"), std::string::npos);
  EXPECT_EQ(only(doctor(request("soft.test", "192.0.2.10")), "spf").result, CheckResult::kWarn);
  EXPECT_EQ(only(doctor(request("hard.test", "192.0.2.10")), "spf").result, CheckResult::kFail);
  DoctorCheck missing = only(doctor(request("bare.test", "192.0.2.10")), "spf");
  EXPECT_EQ(missing.result, CheckResult::kFail);
  EXPECT_NE(missing.detail.find("no v=spf1"), std::string::npos);
  DoctorCheck deep = only(doctor(request("deep.test", "192.0.2.10")), "spf");
  EXPECT_EQ(deep.result, CheckResult::kFail);
  EXPECT_NE(deep.detail.find("more than 10 DNS lookups"), std::string::npos) << deep.detail;
  // Without --ip: presence, and the whole record walked for errors.
  DoctorCheck presence = only(doctor(request("soft.test")), "spf");
  EXPECT_EQ(presence.result, CheckResult::kPass);
  EXPECT_NE(presence.detail.find("--ip"), std::string::npos);
  DoctorCheck deep_without_ip = only(doctor(request("deep.test")), "spf");
  EXPECT_EQ(deep_without_ip.result, CheckResult::kFail);
  EXPECT_NE(deep_without_ip.detail.find("more than 10 DNS lookups"), std::string::npos);
}

TEST_F(DoctorDns, DkimMatchesTheConfiguredKeysAndCatchesTheRest) {
  DoctorRequest r = request("good.test");
  r.domain_blocklists.clear();
  r.dkim = {dkim("rsa1", "rsa-sha256", rsa_key_),   dkim("ed1", "ed25519-sha256", ed_key_),
            dkim("stale", "rsa-sha256", rsa_key_),  dkim("revoked", "rsa-sha256", rsa_key_),
            dkim("absent", "rsa-sha256", rsa_key_), dkim("wrongtype", "ed25519-sha256", ed_key_)};
  DoctorReport report = doctor(r);
  std::map<std::string, DoctorCheck> by_target;
  for (const auto& c : report.checks) {
    if (c.check == "dkim") by_target[c.target] = c;
  }
  ASSERT_EQ(by_target.size(), 6u);
  EXPECT_EQ(by_target["rsa1._domainkey.good.test"].result, CheckResult::kPass);
  EXPECT_EQ(by_target["ed1._domainkey.good.test"].result, CheckResult::kPass);
  const DoctorCheck& stale = by_target["stale._domainkey.good.test"];
  EXPECT_EQ(stale.result, CheckResult::kFail);
  EXPECT_NE(stale.detail.find("does not match"), std::string::npos) << stale.detail;
  EXPECT_NE(stale.detail.find(openssl_public_key(rsa_key_, false)), std::string::npos);
  EXPECT_EQ(by_target["revoked._domainkey.good.test"].result, CheckResult::kFail);
  EXPECT_NE(by_target["revoked._domainkey.good.test"].detail.find("revoked"), std::string::npos);
  EXPECT_EQ(by_target["absent._domainkey.good.test"].result, CheckResult::kFail);
  EXPECT_EQ(by_target["wrongtype._domainkey.good.test"].result, CheckResult::kFail);
}

TEST_F(DoctorDns, DkimWithoutSelectorOrConfigurationWarns) {
  DoctorCheck none = only(doctor(request("good.test")), "dkim");
  EXPECT_EQ(none.result, CheckResult::kWarn);
  // --selector without a configured key: the record is checked on its own.
  DoctorRequest r = request("good.test");
  r.selector = "ed1";
  EXPECT_EQ(only(doctor(r), "dkim").result, CheckResult::kPass);
  r.selector = "absent";
  EXPECT_EQ(only(doctor(r), "dkim").result, CheckResult::kFail);
}

TEST_F(DoctorDns, DkimReportsAnUnreadableKeyFile) {
  DoctorRequest r = request("good.test");
  r.dkim = {dkim("rsa1", "rsa-sha256", dir_ + "/no-such.pem")};
  DoctorCheck c = only(doctor(r), "dkim");
  EXPECT_EQ(c.result, CheckResult::kFail);
  EXPECT_NE(c.detail.find("no-such.pem"), std::string::npos);
}

TEST_F(DoctorDns, DmarcPolicies) {
  DoctorCheck reject = only(doctor(request("good.test")), "dmarc");
  EXPECT_EQ(reject.result, CheckResult::kPass);
  EXPECT_NE(reject.detail.find("p=reject"), std::string::npos);
  EXPECT_EQ(only(doctor(request("soft.test")), "dmarc").result, CheckResult::kWarn);
  EXPECT_EQ(only(doctor(request("bare.test")), "dmarc").result, CheckResult::kFail);
  EXPECT_EQ(only(doctor(request("hard.test")), "dmarc").result, CheckResult::kFail);
}

TEST_F(DoctorDns, MxPresentNullAndAddressFallback) {
  EXPECT_EQ(only(doctor(request("good.test")), "mx").result, CheckResult::kPass);
  DoctorCheck null_mx = only(doctor(request("bare.test")), "mx");
  EXPECT_EQ(null_mx.result, CheckResult::kFail);
  EXPECT_NE(null_mx.detail.find("null MX"), std::string::npos);
  EXPECT_EQ(only(doctor(request("soft.test")), "mx").result, CheckResult::kWarn);
  EXPECT_EQ(only(doctor(request("nowhere.test")), "mx").result, CheckResult::kFail);
}

TEST_F(DoctorDns, PtrMustResolveBackToTheIp) {
  EXPECT_EQ(only(doctor(request("good.test", "192.0.2.10")), "ptr").result, CheckResult::kPass);
  DoctorCheck liar = only(doctor(request("good.test", "192.0.2.11")), "ptr");
  EXPECT_EQ(liar.result, CheckResult::kFail);
  EXPECT_NE(liar.detail.find("liar.good.test"), std::string::npos);
  EXPECT_EQ(only(doctor(request("good.test", "192.0.2.12")), "ptr").result, CheckResult::kFail);
}

TEST_F(DoctorDns, BlocklistsListedNotListedAndErrorCodes) {
  EXPECT_EQ(only(doctor(request("good.test", "192.0.2.10")), "ip_blocklist").result,
            CheckResult::kPass);
  DoctorCheck listed = only(doctor(request("good.test", "192.0.2.66")), "ip_blocklist");
  EXPECT_EQ(listed.result, CheckResult::kFail);
  EXPECT_EQ(listed.target, "66.2.0.192.bl.test");
  EXPECT_EQ(only(doctor(request("good.test", "192.0.2.67")), "ip_blocklist").result,
            CheckResult::kWarn);
  DoctorCheck domain = only(doctor(request("listed.test")), "domain_blocklist");
  EXPECT_EQ(domain.result, CheckResult::kFail);
  EXPECT_NE(domain.detail.find("127.0.1.2"), std::string::npos);
  // A zone the server refuses to answer for: unknown, so a warning.
  DoctorRequest r = request("good.test");
  r.domain_blocklists = {"unanswered.example"};
  EXPECT_EQ(only(doctor(r), "domain_blocklist").result, CheckResult::kWarn);
}

TEST_F(DoctorDns, BinaryExitsZeroAndPrintsJsonWhenAllPass) {
  auto r = run_mailer({"--config", config_, "doctor", "--domain", "good.test", "--ip", "192.0.2.10",
                       "--dns", dns_->address(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["domain"], "good.test");
  EXPECT_EQ(j["summary"]["pass"], 8);
  EXPECT_EQ(j["summary"]["warn"], 0);
  EXPECT_EQ(j["summary"]["fail"], 0);
  std::set<std::string> names;
  for (const auto& c : j["checks"]) {
    names.insert(c["check"].get<std::string>());
    EXPECT_EQ(c["result"], "pass") << c.dump();
    EXPECT_TRUE(c.contains("detail"));
  }
  EXPECT_EQ(names, (std::set<std::string>{"spf", "dkim", "dmarc", "mx", "ptr", "ip_blocklist",
                                          "domain_blocklist"}));
}

TEST_F(DoctorDns, BinaryExitsOneOnAnyFailureAndPrintsTheTable) {
  auto r = run_mailer({"--config", config_, "doctor", "--domain", "bare.test", "--ip", "192.0.2.66",
                       "--dns", dns_->address()});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("CHECK"), std::string::npos);
  EXPECT_NE(r.out.find("null MX"), std::string::npos);
  EXPECT_NE(r.out.find("LISTED"), std::string::npos);
  EXPECT_NE(r.out.find("fail"), std::string::npos);
}

TEST_F(DoctorDns, BinaryExitsZeroWithOnlyWarnings) {
  // soft.test: SPF ends in ~all and DMARC says p=none; without --ip and a
  // selector nothing can fail outright.
  auto r = run_mailer(
      {"--config", config_, "doctor", "--domain", "soft.test", "--dns", dns_->address(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["summary"]["fail"], 0) << r.out;
  EXPECT_GE(j["summary"]["warn"].get<int>(), 1) << r.out;
  int warned = 0;
  for (const auto& c : j["checks"]) {
    EXPECT_NE(c["result"], "fail") << c.dump();
    if (c["result"] == "warn") ++warned;
  }
  EXPECT_EQ(warned, j["summary"]["warn"].get<int>()) << r.out;
  EXPECT_FALSE(j.contains("ip"));
}

TEST_F(DoctorDns, BinaryRejectsBadUsageWithExitTwo) {
  for (std::vector<std::string> args :
       {std::vector<std::string>{"doctor", "--domain", "not a domain"},
        {"doctor", "--domain", "good.test", "--ip", "192.0.2.300"},
        {"doctor", "--domain", "good.test", "--selector", "bad selector"},
        {"doctor", "--domain", "good.test", "--dns", "not:a:server:at:all"},
        {"doctor", "--ip", "192.0.2.1"}}) {
    args.insert(args.begin(), {"--config", config_});
    auto r = run_mailer(args);
    EXPECT_EQ(r.exit_code, 2) << args[3] << ": " << r.out << r.err;
    EXPECT_TRUE(r.out.empty() || r.out.find("CHECK") == std::string::npos);
  }
}

}  // namespace
}  // namespace mailer::app
