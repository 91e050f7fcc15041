// `mailer inbound` end to end: a campaign sent through `mailer sink` by
// `mailer run --until-idle`, then bounces, complaints and auto-replies about
// those very sends delivered over SMTP to the `mailer inbound` binary, with a
// real PostgreSQL behind it. Also the server's refusals (foreign domains,
// size, long lines, connection limit, timeouts), the database going away
// mid-stream (451, then applied once it is back), and the drain on SIGTERM.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "sender/verp.h"
#include "tests/app/inbound_support.h"
#include "tests/app/report_messages.h"
#include "tests/sender/dispatch_fixture.h"

namespace mailer::testing {
namespace {

constexpr const char* kVerpDomain = "bounces.example.test";

// An ARF report (RFC 5965); `fields` go into the machine-readable part,
// `quoted` is the header block of the original message.
std::string arf(const std::string& id, const std::string& fields, const std::string& quoted) {
  return "From: feedback@fbl.example.net\r\nTo: fbl@" + std::string(kVerpDomain) +
         "\r\nSubject: Abuse report\r\nMessage-ID: <" + id +
         "@fbl.example.net>\r\nMIME-Version: 1.0\r\n"
         "Content-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\r\n\r\n"
         "--F\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n\r\n"
         "--F\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
         "User-Agent: ExampleFBL/1.0\r\nVersion: 1\r\n" +
         fields + "\r\n--F\r\nContent-Type: message/rfc822-headers\r\n\r\n" + quoted +
         "\r\n--F--\r\n";
}

std::string human_reply(const std::string& to) {
  return "From: Reader <reader@example.org>\r\nTo: " + to +
         "\r\nSubject: Re: Hello\r\nMessage-ID: <human-1@example.org>\r\n\r\n"
         "Thanks, but please call me instead.\r\n.\r\nA line with a dot.\r\n";
}

class InboundTest : public DispatchFixture {
 protected:
  InboundTest() : DispatchFixture("inbound") {}

  // The configuration: every provider to `route`, VERP under kVerpDomain,
  // `inbound` lines appended to [inbound].
  void configure_inbound(const std::string& route, const std::string& inbound = "") {
    configure_all(route, std::string("[inbound]\nlisten = \"127.0.0.1:0\"\n") + inbound);
    // [sender] comes first in the fixture's file; verp_domain joins it.
    std::string toml = WorkerProcess::slurp(dir_ + "/mailer.toml");
    const std::string anchor = "[sender]\n";
    toml.insert(toml.find(anchor) + anchor.size(),
                "verp_domain = \"" + std::string(kVerpDomain) + "\"\n");
    write_file(dir_ + "/mailer.toml", toml);
  }

  std::unique_ptr<ListeningProcess> start_inbound() {
    auto p = std::make_unique<ListeningProcess>(
        std::vector<std::string>{"--config", dir_ + "/mailer.toml", "--log-level", "debug",
                                 "inbound"},
        t_.url(), dir_, "inbound");
    auto port = p->wait_listening();
    EXPECT_TRUE(port.has_value()) << p->log();
    inbound_port_ = port.value_or(0);
    return p;
  }

  // A greeted connection to the inbound server.
  std::unique_ptr<SmtpTestClient> client() {
    auto c = std::make_unique<SmtpTestClient>(inbound_port_);
    EXPECT_EQ(c->reply().code, 220);
    EXPECT_EQ(c->command("EHLO reporter.example.net").code, 250);
    return c;
  }

  nlohmann::json show(std::int64_t campaign) {
    auto r = mailer({"campaign", "show", std::to_string(campaign), "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out);
  }

  std::string suppression_of(const std::string& email) {
    pqxx::connection c(t_.url());
    pqxx::work w(c);
    const auto r =
        w.exec_params("SELECT reason FROM suppressions WHERE email_key = lower($1)", email);
    return r.empty() ? "" : r[0][0].as<std::string>();
  }

  // A running campaign over `n` recipients with every delivery marked sent
  // by SQL (for the tests about the server rather than the sends); returns
  // (delivery id, email) in order.
  std::vector<std::pair<std::int64_t, std::string>> seeded_sends(int n) {
    const auto list = seed_list(t_.url(), "news", n);
    const auto campaign = seed_campaign(t_.url(), list, "running");
    exec_sql(t_.url(),
             "INSERT INTO deliveries (campaign_id, recipient_id, provider, state, attempts,"
             " sent_at) SELECT " +
                 std::to_string(campaign) +
                 ", recipient_id, 'other', 'sent', 1, now() FROM list_members ORDER BY "
                 "recipient_id");
    pqxx::connection c(t_.url());
    pqxx::work w(c);
    std::vector<std::pair<std::int64_t, std::string>> out;
    for (const auto& row :
         w.exec("SELECT d.id, r.email FROM deliveries d JOIN recipients r ON r.id = d.recipient_id "
                "ORDER BY d.id")) {
      out.emplace_back(row[0].as<std::int64_t>(), row[1].as<std::string>());
    }
    campaign_ = campaign;
    return out;
  }

  std::string verp(std::int64_t delivery) const {
    return sender::VerpCodec("bounce", kVerpDomain, kDispatchSecret)
        .ReturnPath(delivery)
        .envelope_form();
  }

  unsigned short inbound_port_ = 0;
  std::int64_t campaign_ = 0;
};

TEST_F(InboundTest, ReportsOverSmtpSuppressExactlyTheReportedSendsAndTheNextCampaignSkipsThem) {
  ListeningProcess sink(
      {"sink", "--listen", "127.0.0.1:0", "--maildir", dir_ + "/maildir", "--report-every", "0ms"},
      t_.url(), dir_, "sink");
  const auto sink_port = sink.wait_listening();
  ASSERT_TRUE(sink_port) << sink.log();
  configure_inbound("smtp://127.0.0.1:" + std::to_string(*sink_port));

  const auto list = seed_list(t_.url(), "news", 8);
  const auto campaign = seed_campaign(t_.url(), list);
  start(campaign);
  auto run =
      mailer({"run", "--until-idle", "--campaign", std::to_string(campaign), "--worker-id", "w1"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  ASSERT_EQ(count("state = 'sent'"), 8) << unsent();

  auto sends = stored_sends(dir_ + "/maildir");
  ASSERT_EQ(sends.size(), 8u);
  std::sort(sends.begin(), sends.end(),
            [](const auto& a, const auto& b) { return a.recipient < b.recipient; });
  for (const auto& s : sends) {
    ASSERT_TRUE(s.return_path.starts_with("bounce+")) << s.headers;
    ASSERT_TRUE(s.return_path.ends_with(std::string("@") + kVerpDomain)) << s.return_path;
    ASSERT_FALSE(s.message_id.empty()) << s.headers;
    ASSERT_NE(s.list_unsubscribe.find("/u/"), std::string::npos) << s.headers;
  }

  auto inbound = start_inbound();
  ASSERT_NE(inbound_port_, 0);
  auto c = client();
  const std::string fbl = std::string("fbl@") + kVerpDomain;

  // 0: a hard bounce to its VERP return path.
  const std::string hard = dsn("hard-0", sends[0].return_path, sends[0].recipient, "failed",
                               "5.1.1", "550 5.1.1 user unknown");
  EXPECT_EQ(c->send_message("", {sends[0].return_path}, hard).code, 250);
  // 1: a delay notice (soft).
  EXPECT_EQ(c->send_message("", {sends[1].return_path},
                            dsn("soft-1", sends[1].return_path, sends[1].recipient, "delayed",
                                "4.2.2", "452 4.2.2 mailbox full"))
                .code,
            250);
  // 2: a complaint naming its recipient, quoting our Message-ID.
  EXPECT_EQ(
      c->send_message("", {fbl},
                      arf("arf-2", "Original-Rcpt-To: <" + sends[2].recipient + ">\r\n",
                          "From: News <news@example.com>\r\nTo: " + sends[2].recipient +
                              "\r\nSubject: Hello\r\nMessage-ID: " + sends[2].message_id + "\r\n"))
          .code,
      250);
  // 3: recipient redacted; only the quoted Return-Path names the send.
  EXPECT_EQ(c->send_message("", {fbl},
                            arf("arf-3", "",
                                "Return-Path: <" + sends[3].return_path +
                                    ">\r\nFrom: News <news@example.com>\r\nTo: "
                                    "<redacted>\r\nSubject: Hello\r\n"))
                .code,
            250);
  // 4: recipient redacted, no return path: the quoted List-Unsubscribe
  //    token mailer put in finds it.
  EXPECT_EQ(c->send_message("", {fbl},
                            arf("arf-4", "",
                                "From: News <news@example.com>\r\nTo: <redacted>\r\nSubject: "
                                "Hello\r\nList-Unsubscribe: " +
                                    sends[4].list_unsubscribe + "\r\n"))
                .code,
            250);
  // 5: an out-of-office reply to the return path.
  EXPECT_EQ(c->send_message(sends[5].recipient, {sends[5].return_path},
                            auto_reply("ooo-5", sends[5].recipient, sends[5].return_path))
                .code,
            250);
  // 6: a hard bounce to a return path whose tag was tampered with.
  std::string tampered = sends[6].return_path;
  const std::size_t at = tampered.rfind('@');
  tampered[at - 1] = tampered[at - 1] == 'a' ? 'b' : 'a';
  EXPECT_EQ(c->send_message("", {tampered},
                            dsn("forged-6", tampered, sends[6].recipient, "failed", "5.1.1",
                                "550 5.1.1 user unknown"))
                .code,
            250);
  // Not a report at all: accepted, nothing applied.
  EXPECT_EQ(c->send_message("reader@example.org", {fbl}, human_reply(fbl)).code, 250);
  // The first bounce again: accepted, counted once.
  EXPECT_EQ(c->send_message("", {sends[0].return_path}, hard).code, 250);
  EXPECT_EQ(c->command("QUIT").code, 221);

  const auto shown = show(campaign);
  EXPECT_EQ(
      shown["feedback"],
      (nlohmann::json{
          {"hard", 1}, {"soft", 1}, {"complaints", 3}, {"auto_replies", 1}, {"unmatched", 1}}))
      << shown.dump() << inbound->log();
  EXPECT_EQ(shown["counts"]["bounced"], 1) << shown.dump();
  EXPECT_EQ(suppression_of(sends[0].recipient), "hard_bounce");
  EXPECT_EQ(suppression_of(sends[2].recipient), "complaint");
  EXPECT_EQ(suppression_of(sends[3].recipient), "complaint");
  EXPECT_EQ(suppression_of(sends[4].recipient), "complaint");
  EXPECT_EQ(scalar("SELECT count(*) FROM suppressions"), 4);
  EXPECT_EQ(count("state = 'bounced'"), 1);

  // A second campaign to the same list skips the four suppressed addresses.
  const auto second = seed_campaign(t_.url(), list);
  start(second);
  run = mailer({"run", "--until-idle", "--campaign", std::to_string(second), "--worker-id", "w1"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::string in_second = "campaign_id = " + std::to_string(second);
  EXPECT_EQ(count(in_second + " AND state = 'sent'"), 4) << unsent();
  EXPECT_EQ(count(in_second + " AND state = 'skipped'"), 4);
  EXPECT_EQ(scalar("SELECT count(*) FROM deliveries d JOIN recipients r ON r.id = d.recipient_id"
                   " JOIN suppressions s ON s.email_key = r.email_key WHERE d.campaign_id = " +
                   std::to_string(second) + " AND d.state = 'sent'"),
            0);

  inbound->signal(SIGTERM);
  EXPECT_EQ(inbound->wait(std::chrono::seconds(20)), 0) << inbound->log();
  sink.signal(SIGTERM);
  sink.wait(std::chrono::seconds(10));
}

TEST_F(InboundTest, RefusesForeignDomainsOversizeMessagesAndLongLines) {
  const auto sends = seeded_sends(1);
  configure_inbound("smtp://127.0.0.1:9", "max_message_size = 4096\n");
  auto inbound = start_inbound();
  auto c = client();
  EXPECT_EQ(c->command("MAIL FROM:<>").code, 250);
  const SmtpReply foreign = c->command("RCPT TO:<postmaster@example.com>");
  EXPECT_EQ(foreign.code, 550) << foreign.text;
  EXPECT_EQ(c->command("RCPT TO:<bounce+1-x@" + std::string(kVerpDomain) + ".evil.test>").code,
            550);
  // Domains match case-insensitively.
  EXPECT_EQ(c->command("RCPT TO:<fbl@BOUNCES.Example.TEST>").code, 250);
  EXPECT_EQ(c->command("RSET").code, 250);
  EXPECT_EQ(c->command("MAIL FROM:<> SIZE=5000").code, 552);
  const std::string big = std::string(5000, 'x');
  std::string body = "Subject: big\r\n\r\n";
  for (int i = 0; i < 80; ++i) body += std::string(70, 'y') + "\r\n";
  EXPECT_EQ(c->send_message("", {"fbl@" + std::string(kVerpDomain)}, body).code, 552);
  EXPECT_EQ(c->command("NOOP " + big).code, 500);
  EXPECT_EQ(c->command("NOOP").code, 250);
  EXPECT_EQ(c->command("QUIT").code, 221);
  EXPECT_EQ(scalar("SELECT count(*) FROM suppressions"), 0);
  inbound->signal(SIGTERM);
  EXPECT_EQ(inbound->wait(std::chrono::seconds(20)), 0) << inbound->log();
}

TEST_F(InboundTest, ConnectionsOverTheLimitGet421AndIdleClientsTimeOutWith421) {
  seeded_sends(1);
  configure_inbound("smtp://127.0.0.1:9", "max_connections = 1\ncommand_timeout = \"2s\"\n");
  auto inbound = start_inbound();
  auto first = std::make_unique<SmtpTestClient>(inbound_port_);
  EXPECT_EQ(first->reply().code, 220);
  SmtpTestClient second(inbound_port_);
  const SmtpReply refused = second.reply();
  EXPECT_EQ(refused.code, 421) << refused.text;
  EXPECT_TRUE(second.closed());
  // The first client says nothing: the command timeout closes it.
  const SmtpReply timeout = first->reply();
  EXPECT_EQ(timeout.code, 421) << timeout.text;
  EXPECT_NE(timeout.text.find("4.4.2"), std::string::npos) << timeout.text;
  EXPECT_TRUE(first->closed());
  inbound->signal(SIGTERM);
  EXPECT_EQ(inbound->wait(std::chrono::seconds(20)), 0) << inbound->log();
}

TEST_F(InboundTest, DatabaseAwayAnswers451AndTheResentReportIsAppliedOnceItIsBack) {
  const auto sends = seeded_sends(2);
  configure_inbound("smtp://127.0.0.1:9");
  auto inbound = start_inbound();
  auto c = client();
  const std::string first = dsn("db-0", verp(sends[0].first), sends[0].second, "failed", "5.1.1",
                                "550 5.1.1 user unknown");
  EXPECT_EQ(c->send_message("", {verp(sends[0].first)}, first).code, 250);
  ASSERT_EQ(suppression_of(sends[0].second), "hard_bounce");

  // The database refuses connections and its sessions are cut.
  const std::string admin = with_database(server_url(), "postgres");
  exec_sql(admin, "ALTER DATABASE " + t_.name() + " ALLOW_CONNECTIONS false");
  exec_sql(admin, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" +
                      t_.name() + "'");
  const std::string second = dsn("db-1", verp(sends[1].first), sends[1].second, "failed", "5.1.1",
                                 "550 5.1.1 user unknown");
  const SmtpReply away = c->send_message("", {verp(sends[1].first)}, second);
  EXPECT_EQ(away.code, 451) << away.text << inbound->log();
  EXPECT_NE(away.text.find("4.3.0"), std::string::npos) << away.text;

  exec_sql(admin, "ALTER DATABASE " + t_.name() + " ALLOW_CONNECTIONS true");
  const SmtpReply back = c->send_message("", {verp(sends[1].first)}, second);
  EXPECT_EQ(back.code, 250) << back.text << inbound->log();
  EXPECT_EQ(suppression_of(sends[1].second), "hard_bounce");
  EXPECT_EQ(show(campaign_)["feedback"]["hard"], 2);
  EXPECT_EQ(c->command("QUIT").code, 221);
  inbound->signal(SIGTERM);
  EXPECT_EQ(inbound->wait(std::chrono::seconds(20)), 0) << inbound->log();
}

TEST_F(InboundTest, SigtermLetsTheTransactionInFlightFinishRefusesIdleClientsAndExitsZero) {
  const auto sends = seeded_sends(1);
  configure_inbound("smtp://127.0.0.1:9");
  auto inbound = start_inbound();
  auto busy = client();
  auto idle = client();
  const std::string report = dsn("drain-0", verp(sends[0].first), sends[0].second, "failed",
                                 "5.1.1", "550 5.1.1 user unknown");
  ASSERT_EQ(busy->command("MAIL FROM:<>").code, 250);
  ASSERT_EQ(busy->command("RCPT TO:<" + verp(sends[0].first) + ">").code, 250);
  ASSERT_EQ(busy->command("DATA").code, 354);
  const std::string stuffed = SmtpTestClient::dot_stuff(report);
  busy->write(stuffed.substr(0, stuffed.size() / 2));

  inbound->signal(SIGTERM);
  const SmtpReply bye = idle->reply();
  EXPECT_EQ(bye.code, 421) << bye.text;
  EXPECT_TRUE(idle->closed());
  // The listener is closed by now.
  EXPECT_THROW(SmtpTestClient late(inbound_port_), std::runtime_error);

  busy->write(stuffed.substr(stuffed.size() / 2) + ".\r\n");
  const SmtpReply done = busy->reply();
  EXPECT_EQ(done.code, 250) << done.text << inbound->log();
  // Its transaction done, the connection is closed with 421 as well.
  const SmtpReply after = busy->reply();
  EXPECT_EQ(after.code, 421) << after.text;
  EXPECT_TRUE(busy->closed());
  EXPECT_EQ(inbound->wait(std::chrono::seconds(20)), 0) << inbound->log();
  EXPECT_EQ(suppression_of(sends[0].second), "hard_bounce");
}

// One reply read from `stream` (all its lines).
template <typename Stream>
std::string read_reply(Stream& stream, boost::asio::streambuf& buf) {
  std::string text;
  for (;;) {
    const std::size_t n = boost::asio::read_until(stream, buf, "\r\n");
    std::string line(boost::asio::buffers_begin(buf.data()),
                     boost::asio::buffers_begin(buf.data()) + static_cast<long>(n));
    buf.consume(n);
    text += line;
    if (line.size() < 4 || line[3] != '-') return text;
  }
}

TEST_F(InboundTest, TlsFilesThatAreDevicesOrDirectoriesExitTwoNamingTheKey) {
  ASSERT_EQ(std::system(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
                         "-nodes -keyout '" +
                         dir_ + "/tls.key' -out '" + dir_ + "/tls.pem' -subj /CN=inbound.test " +
                         "-days 2 >/dev/null 2>&1")
                            .c_str()),
            0);
  struct Case {
    std::string cert, key, expect;
  };
  const std::vector<Case> cases = {
      {"/dev/zero", dir_ + "/tls.key", "tls_cert_file: /dev/zero: larger than"},
      {dir_, dir_ + "/tls.key", "tls_cert_file: " + dir_ + ": is a directory"},
      {dir_ + "/tls.pem", "/dev/zero", "tls_key_file: /dev/zero: larger than"},
      {dir_ + "/tls.pem", dir_ + "/missing.key", "tls_key_file: " + dir_ + "/missing.key"},
  };
  for (const Case& c : cases) {
    configure_inbound("smtp://127.0.0.1:9",
                      "tls_cert_file = \"" + c.cert + "\"\ntls_key_file = \"" + c.key + "\"\n");
    // A configuration error ends the command before it listens, at once.
    auto r = mailer({"inbound"}, std::chrono::seconds(20));
    EXPECT_EQ(r.exit_code, 2) << c.cert << " " << c.key << r.err;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << r.err;
  }
}

TEST_F(InboundTest, StartTlsUpgradesTheSessionAndAReportSentOverItIsApplied) {
  namespace asio = boost::asio;
  const auto sends = seeded_sends(1);
  const std::string cmd = "cd '" + dir_ +
                          "' && openssl req -x509 -newkey ec -pkeyopt "
                          "ec_paramgen_curve:prime256v1 -nodes -keyout tls.key -out tls.pem "
                          "-subj '/CN=inbound.test' -days 2 >openssl.log 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << WorkerProcess::slurp(dir_ + "/openssl.log");
  configure_inbound(
      "smtp://127.0.0.1:9",
      "tls_cert_file = \"" + dir_ + "/tls.pem\"\ntls_key_file = \"" + dir_ + "/tls.key\"\n");
  auto inbound = start_inbound();
  ASSERT_NE(inbound_port_, 0);

  asio::io_context io;
  asio::ip::tcp::socket socket(io);
  socket.connect({asio::ip::make_address("127.0.0.1"), inbound_port_});
  asio::streambuf buf;
  EXPECT_EQ(read_reply(socket, buf).substr(0, 3), "220");
  asio::write(socket, asio::buffer(std::string("EHLO client.test\r\n")));
  EXPECT_NE(read_reply(socket, buf).find("250-STARTTLS"), std::string::npos);
  asio::write(socket, asio::buffer(std::string("STARTTLS\r\n")));
  EXPECT_EQ(read_reply(socket, buf).substr(0, 3), "220");
  ASSERT_EQ(buf.size(), 0u);

  asio::ssl::context client_tls(asio::ssl::context::tls_client);
  client_tls.set_verify_mode(asio::ssl::verify_none);
  asio::ssl::stream<asio::ip::tcp::socket&> tls(socket, client_tls);
  tls.handshake(asio::ssl::stream_base::client);
  auto say = [&](const std::string& line) {
    asio::write(tls, asio::buffer(line));
    return read_reply(tls, buf);
  };
  const std::string ehlo = say("EHLO client.test\r\n");
  EXPECT_EQ(ehlo.substr(0, 3), "250");
  EXPECT_EQ(ehlo.find("STARTTLS"), std::string::npos) << ehlo;
  EXPECT_EQ(say("MAIL FROM:<>\r\n").substr(0, 3), "250");
  EXPECT_EQ(say("RCPT TO:<" + verp(sends[0].first) + ">\r\n").substr(0, 3), "250");
  EXPECT_EQ(say("DATA\r\n").substr(0, 3), "354");
  const std::string report = dsn("tls-0", verp(sends[0].first), sends[0].second, "failed", "5.1.1",
                                 "550 5.1.1 user unknown");
  EXPECT_EQ(say(SmtpTestClient::dot_stuff(report) + ".\r\n").substr(0, 3), "250") << inbound->log();
  EXPECT_EQ(say("QUIT\r\n").substr(0, 3), "221");
  EXPECT_EQ(suppression_of(sends[0].second), "hard_bounce");
  inbound->signal(SIGTERM);
  EXPECT_EQ(inbound->wait(std::chrono::seconds(20)), 0) << inbound->log();
}

}  // namespace
}  // namespace mailer::testing
