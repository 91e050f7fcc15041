// `mailer run` end to end against Postfix's smtp-sink, an SMTP server that is
// not ours: a campaign of a few thousand recipients goes through the real
// worker binary and the PostgreSQL queue to smtp-sink, which dumps every
// transaction to a file. The dumps are read by Python's email package (an
// independent parser), and what arrived is compared with the database:
// everyone exactly once, merge fields rendered, the bulk-sender headers
// present and well formed.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "sender/unsubscribe_token.h"
#include "tests/sender/dispatch_fixture.h"
#include "tests/sender/loopback_peers.h"

namespace mailer::sender {
namespace {

using mailer::testing::PostfixSmtpSink;
using mailer::testing::run_process;

class DispatchPostfixTest : public mailer::testing::DispatchFixture {
 protected:
  DispatchPostfixTest() : DispatchFixture("dispatch_postfix") {}

  // A list of `n` recipients over the four seed domains, with a non-ASCII
  // first name and a city holding HTML's special characters.
  std::int64_t seed_rich_list(int n) {
    pqxx::connection c(t_.url());
    pqxx::work w(c);
    w.exec(
        "INSERT INTO domains (domain, provider) VALUES ('gmail.com', 'gmail'),"
        " ('outlook.com', 'outlook'), ('yahoo.com', 'yahoo') ON CONFLICT DO NOTHING");
    const auto list =
        w.exec1("INSERT INTO lists (name) VALUES ('pf') RETURNING id")[0].as<std::int64_t>();
    w.exec_params(
        "WITH r AS (INSERT INTO recipients (email, email_key, domain, attributes)"
        " SELECT 'pf-' || i || '@' || d, 'pf-' || i || '@' || d, d,"
        "  jsonb_build_object('first_name', 'Zoë ' || i, 'city', 'A<&>B-' || i)"
        " FROM generate_series(1, $1::int) i,"
        "  LATERAL (SELECT (ARRAY['gmail.com','outlook.com','yahoo.com','example.org'])[1 + i % 4]"
        "   AS d) x RETURNING id)"
        " INSERT INTO list_members (list_id, recipient_id) SELECT $2, id FROM r",
        n, list);
    const auto id =
        w.exec_params1(
             "INSERT INTO campaigns (name, list_id, from_header, subject, text_body, html_body)"
             " VALUES ('pf', $1, 'Nöws Desk <news@example.com>', 'Für {{first_name}}',"
             " 'Hi {{first_name}} from {{city}}. Unsubscribe: {{unsubscribe_url}}',"
             " '<p>Hi {{first_name}} from {{city}}</p><a href=\"{{unsubscribe_url}}\">x</a>')"
             " RETURNING id",
             list)[0]
            .as<std::int64_t>();
    w.commit();
    return id;
  }

  // The dumps as Python's email package reads them, every `every`th one in
  // full.
  nlohmann::json read_dumps(const std::string& folder, int every) {
    auto r = run_process({"/usr/bin/python3",
                          std::string(MAILER_SOURCE_DIR) + "/tests/sender/read_sink_dumps.py",
                          folder, "--every", std::to_string(every)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out);
  }
};

std::size_t files_in(const std::filesystem::path& folder) {
  std::size_t n = 0;
  if (!std::filesystem::exists(folder)) return 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(folder)) {
    if (e.is_regular_file()) ++n;
  }
  return n;
}

TEST_F(DispatchPostfixTest, DeliversAThousandsStrongCampaignOnceEachWithParseableHeaders) {
  // smtp-sink drops root for nobody, who must be able to write the dumps.
  const std::filesystem::path dumps = dir_ + "/dumps";
  std::filesystem::create_directories(dumps);
  std::filesystem::permissions(dir_, std::filesystem::perms::all);
  std::filesystem::permissions(dumps, std::filesystem::perms::all);
  PostfixSmtpSink peer({"-d", dumps.string() + "/%H%M%S."});

  std::string rates;
  for (const auto& p : mailer::testing::kDispatchProviders) {
    rates += fmt::format("[providers.{}]\ninitial_rate = 1500\nmax_rate = 2000\n", p);
  }
  configure_all(peer.route(), rates);
  const int n = 2000;
  const auto campaign = seed_rich_list(n);
  start(campaign);

  const auto began = std::chrono::steady_clock::now();
  auto run = mailer({"run", "--worker-id", "w1", "--until-idle"}, std::chrono::seconds(90));
  ASSERT_EQ(run.exit_code, 0) << run.err << unsent();
  const auto took = std::chrono::duration<double>(std::chrono::steady_clock::now() - began);
  std::cout << fmt::format("[          ] {} messages to smtp-sink in {:.1f} s\n", n, took.count());

  // The database says everyone was sent, at the first attempt.
  EXPECT_EQ(count("state = 'sent' AND attempts = 1"), n) << unsent();
  // smtp-sink finishes a dump file when the transaction ends.
  wait_for([&] { return files_in(dumps) >= static_cast<std::size_t>(n); }, std::chrono::seconds(5));
  // Every dump counts for exactly-once; one in kEvery (spread over all
  // providers by the random file names) is parsed in full.
  constexpr int kEvery = 8;
  const nlohmann::json messages = read_dumps(dumps.string(), kEvery);
  ASSERT_EQ(messages.size(), static_cast<std::size_t>(n));

  // Delivery id -> (email, first name, city) from the database.
  struct Expected {
    std::string email, first_name, city;
  };
  std::map<std::int64_t, Expected> expected;
  {
    pqxx::connection c(t_.url());
    pqxx::work w(c);
    for (const auto& row :
         w.exec("SELECT d.id, r.email, r.attributes->>'first_name', r.attributes->>'city'"
                " FROM deliveries d JOIN recipients r ON r.id = d.recipient_id")) {
      expected[row[0].as<std::int64_t>()] = {row[1].as<std::string>(), row[2].as<std::string>(),
                                             row[3].as<std::string>()};
    }
  }
  ASSERT_EQ(expected.size(), static_cast<std::size_t>(n));

  const UnsubscribeTokenCodec codec(mailer::testing::kDispatchSecret);
  const std::regex unsubscribe_url("^<(https://mail\\.example\\.com/u/([A-Za-z0-9_-]+))>");
  std::map<std::string, int> arrivals;  // RCPT address -> transactions
  std::set<std::string> message_ids;
  int checked = 0;
  for (const auto& m : messages) {
    SCOPED_TRACE(m["file"].get<std::string>());
    // One recipient per transaction, and the Message-ID names its delivery.
    ASSERT_EQ(m["rcpt_to"].size(), 1u);
    const std::string rcpt = m["rcpt_to"][0];
    ++arrivals[rcpt];
    ASSERT_TRUE(m["message_id"].is_string());
    message_ids.insert(m["message_id"].get<std::string>());
    if (!m["full"].get<bool>()) continue;

    // The header To is the envelope's.
    EXPECT_TRUE(m["defects"].empty()) << m["defects"].dump();
    ASSERT_EQ(m["to"].size(), 1u);
    EXPECT_EQ("<" + m["to"][0]["addr_spec"].get<std::string>() + ">", rcpt);
    ASSERT_EQ(m["from"].size(), 1u);
    EXPECT_EQ(m["from"][0]["display_name"], "Nöws Desk");
    EXPECT_EQ(m["from"][0]["addr_spec"], "news@example.com");
    EXPECT_TRUE(m["date_parsed"].get<bool>());
    EXPECT_EQ(m["mime_version"], "1.0");
    EXPECT_EQ(m["content_type"], "multipart/alternative");
    EXPECT_EQ(m["list_unsubscribe_post"], "List-Unsubscribe=One-Click");

    // The unsubscribe token names this very delivery, of this recipient.
    ASSERT_TRUE(m["list_unsubscribe"].is_string());
    const std::string lu = m["list_unsubscribe"];
    std::smatch u;
    ASSERT_TRUE(std::regex_search(lu, u, unsubscribe_url)) << lu;
    const auto identity = codec.Verify(u[2].str());
    ASSERT_TRUE(identity.has_value()) << lu;
    EXPECT_EQ(identity->campaign_id, campaign);
    ASSERT_TRUE(expected.count(identity->delivery_id)) << identity->delivery_id;
    const Expected& e = expected[identity->delivery_id];
    EXPECT_EQ(rcpt, "<" + e.email + ">");
    // Deterministic per delivery, and unique.
    EXPECT_EQ(m["message_id"], fmt::format("<{}.{}@example.com>", identity->delivery_id, campaign));
    EXPECT_EQ(m["feedback_id"], fmt::format("{}:pf:mailer", campaign));
    // The envelope sender is a VERP address of the From domain.
    ASSERT_EQ(m["mail_from"].size(), 1u);
    EXPECT_NE(m["mail_from"][0].get<std::string>().find("@example.com>"), std::string::npos)
        << m["mail_from"][0];

    // Merge fields rendered: the subject (RFC 2047 decoded by the parser),
    // the text part verbatim, the HTML part escaped.
    EXPECT_EQ(m["subject"], "Für " + e.first_name);
    ASSERT_EQ(m["parts"].size(), 2u);
    EXPECT_EQ(m["parts"][0]["content_type"], "text/plain");
    EXPECT_EQ(m["parts"][1]["content_type"], "text/html");
    const std::string text = m["parts"][0]["content"];
    const std::string html = m["parts"][1]["content"];
    EXPECT_NE(
        text.find(fmt::format("Hi {} from {}. Unsubscribe: {}", e.first_name, e.city, u[1].str())),
        std::string::npos)
        << text;
    std::string escaped_city = e.city;
    escaped_city = std::regex_replace(escaped_city, std::regex("&"), "&amp;");
    escaped_city = std::regex_replace(escaped_city, std::regex("<"), "&lt;");
    escaped_city = std::regex_replace(escaped_city, std::regex(">"), "&gt;");
    EXPECT_NE(html.find(fmt::format("<p>Hi {} from {}</p>", e.first_name, escaped_city)),
              std::string::npos)
        << html;
    EXPECT_EQ(html.find(e.city), std::string::npos) << "unescaped merge field in HTML";
    for (const auto& part : m["parts"]) {
      EXPECT_EQ(part["charset"], "utf-8");
      EXPECT_TRUE(part["defects"].empty()) << part["defects"].dump();
    }
    ++checked;
    if (::testing::Test::HasFailure()) break;  // one message's failures are enough to read
  }
  EXPECT_EQ(checked, (n + kEvery - 1) / kEvery);

  // Exactly once each: every recipient of the database arrived, none twice.
  EXPECT_EQ(arrivals.size(), static_cast<std::size_t>(n));
  int not_once = 0;
  std::string example;
  for (const auto& [id, e] : expected) {
    const auto it = arrivals.find("<" + e.email + ">");
    if (it == arrivals.end() || it->second != 1) {
      ++not_once;
      example = e.email;
    }
  }
  EXPECT_EQ(not_once, 0) << "e.g. " << example;
  EXPECT_EQ(message_ids.size(), static_cast<std::size_t>(n));
}

}  // namespace
}  // namespace mailer::sender
