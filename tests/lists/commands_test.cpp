// `mailer lists` and `mailer suppress` through the binary: JSON shapes of
// CLI.md, exit codes, and the suppression list's behaviour.
#include "tests/lists/list_db_fixture.h"

namespace mailer::lists {
namespace {

class CommandsTest : public ListDbTest {};

TEST_F(CommandsTest, ListsCreateListAndShow) {
  auto created = mailer_json({"lists", "create", "weekly"});
  EXPECT_TRUE(created["id"].is_number());
  auto again = mailer({"lists", "create", "weekly"});
  EXPECT_EQ(again.exit_code, 2);
  EXPECT_NE(again.err.find("list \"weekly\" already exists"), std::string::npos) << again.err;
  EXPECT_EQ(mailer({"lists", "create", ""}).exit_code, 2);

  mailer_json(
      {"import", "--list", "weekly", write("in.csv", "email\na@example.com\nb@example.com\n")});
  mailer_json({"suppress", "add", "b@example.com", "--reason", "hard_bounce"});
  auto shown = mailer_json({"lists", "show", "weekly"});
  EXPECT_EQ(shown["name"], "weekly");
  EXPECT_EQ(shown["members"], 2);
  EXPECT_EQ(shown["suppressed"], 1);
  EXPECT_EQ(shown["sendable"], 1);
  auto all = mailer_json({"lists", "list"});
  ASSERT_EQ(all["lists"].size(), 1u);
  EXPECT_EQ(all["lists"][0]["members"], 2);
  auto missing = mailer({"lists", "show", "nope"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("no list named \"nope\""), std::string::npos);
}

TEST_F(CommandsTest, SuppressAddListRemove) {
  auto added = mailer_json({"suppress", "add", "Someone@Example.COM", "--reason", "unsubscribe"});
  EXPECT_EQ(added["email"], "someone@example.com");
  EXPECT_EQ(added["added"], true);
  auto twice = mailer_json({"suppress", "add", "someone@example.com", "--reason", "manual"});
  EXPECT_EQ(twice["added"], false);
  EXPECT_EQ(twice["reason"], "unsubscribe") << "the first suppression is kept";
  auto listed = mailer_json({"suppress", "list"});
  ASSERT_EQ(listed["suppressions"].size(), 1u);
  EXPECT_EQ(listed["suppressions"][0]["reason"], "unsubscribe");
  EXPECT_EQ(listed["suppressions"][0]["source"], "cli");
  auto removed = mailer_json({"suppress", "remove", "SOMEONE@example.com"});
  EXPECT_EQ(removed["removed"], true);
  EXPECT_EQ(mailer_json({"suppress", "list"})["suppressions"].size(), 0u);
}

TEST_F(CommandsTest, SuppressRejectsBadInputWithExitTwo) {
  auto bad_reason = mailer({"suppress", "add", "a@example.com", "--reason", "bored"});
  EXPECT_EQ(bad_reason.exit_code, 2);
  EXPECT_NE(bad_reason.err.find("expected unsubscribe, hard_bounce, complaint or manual"),
            std::string::npos);
  auto bad_address = mailer({"suppress", "add", "not-an-address"});
  EXPECT_EQ(bad_address.exit_code, 2);
  EXPECT_NE(bad_address.err.find("not a valid address: missing @"), std::string::npos);
  auto no_column = mailer({"suppress", "import", write("x.csv", "mail\na@example.com\n")});
  EXPECT_EQ(no_column.exit_code, 2);
  EXPECT_NE(no_column.err.find("x.csv: line 1: no \"email\" column"), std::string::npos);
  EXPECT_EQ(count("SELECT count(*) FROM suppressions"), 0);
}

TEST_F(CommandsTest, SuppressImportAddsNewOnesAndReportsBadRows) {
  mailer_json({"suppress", "add", "old@example.com"});
  auto file = write("s.csv",
                    "email,reason,detail\n"
                    "old@example.com,complaint,\n"
                    "new@example.com,hard_bounce,550 5.1.1 no such user\n"
                    "NEW@example.com,,\n"
                    "bad,manual,\n"
                    "x@example.com,whatever,\n"
                    "plain@example.com,,\n");
  auto r = mailer({"suppress", "import", file, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["rows"], 6);
  EXPECT_EQ(j["added"], 2);
  EXPECT_EQ(j["already"], 2);
  EXPECT_EQ(j["rejected"], 2);
  EXPECT_NE(r.err.find(file + ":5: rejected: invalid address: missing @"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find(file + ":6: rejected: unknown reason \"whatever\""), std::string::npos);
  EXPECT_EQ(query("SELECT reason || '|' || source || '|' || detail FROM suppressions WHERE "
                  "email_key = 'new@example.com'")[0][0]
                .as<std::string>(),
            "hard_bounce|import|550 5.1.1 no such user");
  EXPECT_EQ(query("SELECT reason FROM suppressions WHERE email_key = 'plain@example.com'")[0][0]
                .as<std::string>(),
            "manual");
}

}  // namespace
}  // namespace mailer::lists
