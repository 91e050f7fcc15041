// `mailer import` end to end on the real PostgreSQL: counts and JSON, re-import
// idempotence, attribute updates, duplicates, suppression, every kind of bad
// row, file-level errors, and resuming an interrupted import.
#include <algorithm>
#include <exception>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "app/db/database.h"
#include "app/db/list_import_store.h"
#include "lists/list_importer.h"
#include "tests/lists/list_db_fixture.h"

namespace mailer::lists {
namespace {

class ImportTest : public ListDbTest {
 protected:
  void SetUp() override {
    ListDbTest::SetUp();
    auto r = mailer({"lists", "create", "news"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  nlohmann::json import(const std::string& file, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"import", "--list", "news", file};
    args.insert(args.end(), extra.begin(), extra.end());
    return mailer_json(args);
  }
};

TEST_F(ImportTest, CountsEveryOutcomeInTheDocumentedJsonShape) {
  ASSERT_EQ(mailer({"suppress", "add", "gone@example.com", "--reason", "unsubscribe"}).exit_code,
            0);
  auto file = write("in.csv",
                    "email,first_name\n"
                    "ann@example.com,Ann\n"
                    "bob@example.org,Bob\n"
                    "ANN@Example.com,Ann again\n"  // duplicate within the file
                    "not-an-address,X\n"           // syntax
                    "postmaster@example.com,P\n"   // role
                    "x@mailinator.com,D\n"         // disposable
                    "y@gmial.com,T\n"              // typo
                    "gone@example.com,G\n"         // suppressed
                    "too,many,fields\n");          // malformed
  auto j = import(file);
  EXPECT_EQ(j["rows"], 9);
  EXPECT_EQ(j["imported"], 2);
  EXPECT_EQ(j["updated"], 0);
  EXPECT_EQ(j["duplicates"], 1);
  EXPECT_EQ(j["suppressed"], 1);
  EXPECT_EQ(j["rejected"]["syntax"], 1);
  EXPECT_EQ(j["rejected"]["role"], 1);
  EXPECT_EQ(j["rejected"]["disposable"], 1);
  EXPECT_EQ(j["rejected"]["typo"], 1);
  EXPECT_EQ(j["rejected"]["no_mx"], 0);
  EXPECT_EQ(j["rejected"]["malformed"], 1);
  EXPECT_EQ(members("news"), 2);
  // The first row of a repeated address wins; the domain row has a provider.
  EXPECT_EQ(query("SELECT attributes->>'first_name' FROM recipients WHERE email_key = "
                  "'ann@example.com'")[0][0]
                .as<std::string>(),
            "Ann");
  EXPECT_EQ(count("SELECT count(*) FROM domains WHERE domain = 'example.org' AND provider = "
                  "'other:example.org'"),
            1);
}

TEST_F(ImportTest, ReimportingTheSameFileChangesNothing) {
  auto file = write("in.csv", "email,name\na@example.com,A\nb@example.com,B\nc@example.com,C\n");
  auto first = import(file);
  EXPECT_EQ(first["imported"], 3);
  auto before =
      query("SELECT id, email, attributes::text, updated_at::text FROM recipients ORDER BY id");
  auto again = import(file);
  EXPECT_EQ(again["rows"], 3);
  EXPECT_EQ(again["imported"], 0);
  EXPECT_EQ(again["updated"], 0);
  EXPECT_EQ(again["duplicates"], 3);
  auto after =
      query("SELECT id, email, attributes::text, updated_at::text FROM recipients ORDER BY id");
  ASSERT_EQ(before.size(), after.size());
  for (std::size_t i = 0; i < before.size(); ++i) {
    for (int c = 0; c < 4; ++c) EXPECT_EQ(before[i][c].c_str(), std::string(after[i][c].c_str()));
  }
  EXPECT_EQ(members("news"), 3);
}

TEST_F(ImportTest, NewerImportUpdatesAttributesAndKeepsOthers) {
  import(write("v1.csv", "email,name,city\na@example.com,Ann,Paris\nb@example.com,Bob,Rome\n"));
  auto j =
      import(write("v2.csv", "email,name,plan\na@example.com,Anne,gold\nb@example.com,Bob,\n"));
  EXPECT_EQ(j["updated"], 1);
  EXPECT_EQ(j["duplicates"], 1) << "an empty value never blanks stored data";
  auto attrs = nlohmann::json::parse(
      query("SELECT attributes::text FROM recipients WHERE email_key = 'a@example.com'")[0][0]
          .as<std::string>());
  EXPECT_EQ(attrs, (nlohmann::json{{"name", "Anne"}, {"city", "Paris"}, {"plan", "gold"}}));
}

TEST_F(ImportTest, AddressAlreadyInAnotherListJoinsThisOne) {
  ASSERT_EQ(mailer({"lists", "create", "other"}).exit_code, 0);
  mailer_json({"import", "--list", "other", write("o.csv", "email\na@example.com\n")});
  auto j = import(write("n.csv", "email\nA@EXAMPLE.com\n"));
  EXPECT_EQ(j["imported"], 1);
  EXPECT_EQ(count("SELECT count(*) FROM recipients"), 1);
  EXPECT_EQ(members("news"), 1);
  EXPECT_EQ(members("other"), 1);
}

// One chunk holding new addresses, a known one, a suppressed one and a repeat:
// the new ones are written without a lookup first, the known one makes that
// attempt fail and the chunk is redone with a lookup; every row gets its
// verdict, and text COPY would mangle (backslash, tab) arrives intact.
TEST_F(ImportTest, ChunkMixingNewKnownAndSuppressedAddresses) {
  ASSERT_EQ(mailer({"lists", "create", "other"}).exit_code, 0);
  mailer_json({"import", "--list", "other", write("o.csv", "email\nknown@example.com\n")});
  ASSERT_EQ(mailer({"suppress", "add", "gone@example.com", "--reason", "manual"}).exit_code, 0);
  auto j = import(write("n.csv",
                        "email,note\n"
                        "new1@example.com,\"back\\slash and\ttab\"\n"
                        "Known@example.com,k\n"
                        "gone@example.com,g\n"
                        "new2@example.com,n2\n"
                        "NEW1@example.com,repeat\n"));
  EXPECT_EQ(j["rows"], 5);
  EXPECT_EQ(j["imported"], 3);
  EXPECT_EQ(j["suppressed"], 1);
  EXPECT_EQ(j["duplicates"], 1);
  EXPECT_EQ(members("news"), 3);
  EXPECT_EQ(count("SELECT count(*) FROM recipients"), 3);
  EXPECT_EQ(
      query("SELECT attributes->>'note' FROM recipients WHERE email_key = 'new1@example.com'")[0][0]
          .as<std::string>(),
      "back\\slash and\ttab");
  EXPECT_EQ(
      query(
          "SELECT attributes->>'note' FROM recipients WHERE email_key = 'known@example.com'")[0][0]
          .as<std::string>(),
      "k")
      << "a newer import's attributes are merged over the stored ones";
}

// Two imports adding the same addresses at the same time, in small chunks:
// each address becomes one recipient, a member of both lists.
TEST_F(ImportTest, ConcurrentImportsOfOverlappingFilesAddEachAddressOnce) {
  ASSERT_EQ(mailer({"lists", "create", "other"}).exit_code, 0);
  std::string a = "email\n", b = "email\n";
  for (int i = 0; i < 3000; ++i) {
    a += "u" + std::to_string(i) + "@example.com\n";
    b += "u" + std::to_string(2999 - i) + "@example.com\n";
  }
  auto file_a = write("a.csv", a);
  auto file_b = write("b.csv", b);
  HygieneRules rules(builtin_hygiene_sources());
  throttle::ProviderClassifier classifier;
  auto run = [&](const std::string& list, const std::string& file, ImportCounts& out) {
    db::Database database(db::DatabaseOptions{db_->url()});
    db::ListImportStore store(database);
    ImportOptions o;
    o.list_name = list;
    o.file = file;
    o.chunk_rows = 100;
    out = ListImporter(store, rules, classifier, o).run();
  };
  ImportCounts ca, cb;
  std::thread other([&] { run("other", file_b, cb); });
  run("news", file_a, ca);
  other.join();
  EXPECT_EQ(ca.imported, 3000u);
  EXPECT_EQ(cb.imported, 3000u);
  EXPECT_EQ(count("SELECT count(*) FROM recipients"), 3000);
  EXPECT_EQ(members("news"), 3000);
  EXPECT_EQ(members("other"), 3000);
}

// Two imports of the same addresses into one list at once, in different
// orders and small chunks (so every chunk of one holds addresses of every
// chunk of the other): both finish, each address is added by one and
// updated by the other, and it keeps the values of whichever wrote it last.
TEST_F(ImportTest, ConcurrentImportsOfTheSameAddressesBothFinishWithTheLastWritersValues) {
  constexpr int kRows = 4000;
  std::vector<std::string> addresses;
  for (int i = 0; i < kRows; ++i) addresses.push_back("u" + std::to_string(i) + "@example.com");
  std::string a = "email,src\n";
  for (const auto& e : addresses) a += e + ",A\n";
  std::shuffle(addresses.begin(), addresses.end(), std::mt19937(7));
  std::string b = "email,src\n";
  for (const auto& e : addresses) b += e + ",B\n";
  auto file_a = write("a.csv", a);
  auto file_b = write("b.csv", b);
  HygieneRules rules(builtin_hygiene_sources());
  throttle::ProviderClassifier classifier;
  auto run = [&](const std::string& file, ImportCounts& out, std::exception_ptr& error) {
    try {
      db::Database database(db::DatabaseOptions{db_->url()});
      db::ListImportStore store(database);
      ImportOptions o;
      o.list_name = "news";
      o.file = file;
      o.chunk_rows = 100;
      out = ListImporter(store, rules, classifier, o).run();
    } catch (...) {
      error = std::current_exception();
    }
  };
  ImportCounts ca, cb;
  std::exception_ptr ea, eb;
  std::thread other([&] { run(file_b, cb, eb); });
  run(file_a, ca, ea);
  other.join();
  for (const auto& e : {ea, eb}) {
    try {
      if (e) std::rethrow_exception(e);
    } catch (const std::exception& x) {
      ADD_FAILURE() << x.what();
    }
  }
  ASSERT_FALSE(ea || eb);
  EXPECT_EQ(ca.imported + cb.imported, static_cast<std::uint64_t>(kRows));
  EXPECT_EQ(ca.updated + cb.updated, static_cast<std::uint64_t>(kRows))
      << "the other import's rows are not this one's own";
  EXPECT_EQ(ca.duplicates + cb.duplicates, 0u);
  EXPECT_EQ(count("SELECT count(*) FROM recipients"), kRows);
  EXPECT_EQ(members("news"), kRows);
  // Whoever updated an address wrote it last.
  EXPECT_EQ(count("SELECT count(*) FROM recipients WHERE attributes->>'src' = 'A'"),
            static_cast<long long>(ca.updated));
  EXPECT_EQ(count("SELECT count(*) FROM recipients WHERE attributes->>'src' = 'B'"),
            static_cast<long long>(cb.updated));
}

// An import interrupted after its first chunk; another import writes the
// same addresses; the first, run again, merges the rest of its file over
// them (they are not its own rows, whatever their time) and still counts a
// repeat of an address of its own first chunk as a duplicate.
TEST_F(ImportTest, ResumedImportUpdatesWhatAnotherImportWroteMeanwhile) {
  std::string a = "email,src\n", b = "email,src\n";
  for (int i = 0; i < 12; ++i) {
    a += "u" + std::to_string(i) + "@example.com,A\n";
    b += "u" + std::to_string(i) + "@example.com,B\n";
  }
  b += "u1@example.com,B again\n";
  auto file_a = write("a.csv", a);
  auto file_b = write("b.csv", b);
  db::Database database(db::DatabaseOptions{db_->url()});
  db::ListImportStore store(database);
  HygieneRules rules(builtin_hygiene_sources());
  throttle::ProviderClassifier classifier;
  ImportOptions o;
  o.list_name = "news";
  o.file = file_b;
  o.chunk_rows = 4;
  struct Crash {};
  EXPECT_THROW(
      ListImporter(store, rules, classifier, o).run([](const ImportProgress&) { throw Crash{}; }),
      Crash);
  database.disconnect();
  ASSERT_EQ(members("news"), 4) << "one chunk committed";

  auto ja = import(file_a);
  EXPECT_EQ(ja["imported"], 8);
  EXPECT_EQ(ja["updated"], 4);
  auto jb = import(file_b);
  EXPECT_EQ(jb["rows"], 13);
  EXPECT_EQ(jb["imported"], 4) << "its first chunk's";
  EXPECT_EQ(jb["updated"], 8);
  EXPECT_EQ(jb["duplicates"], 1) << "u1 again: its first chunk wrote u1";
  EXPECT_EQ(count("SELECT count(*) FROM recipients WHERE attributes->>'src' = 'B'"), 8);
  EXPECT_EQ(count("SELECT count(*) FROM recipients WHERE attributes->>'src' = 'A'"), 4)
      << "the first chunk's addresses keep what the other import wrote over them";
  EXPECT_EQ(members("news"), 12);
}

// The rejects file fails (a full disk): the chunk whose rejects could not be
// written is not committed, the import exits 1 naming the file, and running
// it again with a writable rejects file writes every rejected row once.
TEST_F(ImportTest, RejectsThatCannotBeWrittenAreWrittenByTheRerun) {
  write_config("[import]\nchunk_rows = 4\n");
  std::string text = "email,n\n";
  std::string expected = "line,reason,detail,email\n";
  for (int i = 0; i < 12; ++i) {
    const int line = i + 2;
    if (i % 3 == 1) {
      text += "bad" + std::to_string(i) + ",x\n";
      expected += std::to_string(line) + ",syntax,missing @,bad" + std::to_string(i) + "\n";
    } else {
      text += "u" + std::to_string(i) + "@example.com,x\n";
    }
  }
  auto file = write("in.csv", text);
  auto full = mailer({"import", "--list", "news", file, "--rejects", "/dev/full"});
  EXPECT_EQ(full.exit_code, 1) << full.err;
  EXPECT_NE(full.err.find("/dev/full: cannot write rejects file: No space left on device"),
            std::string::npos)
      << full.err;
  EXPECT_EQ(members("news"), 0) << "the first chunk was not committed";

  auto j = import(file, {"--rejects", path("rejects.csv")});
  EXPECT_EQ(j["rows"], 12);
  EXPECT_EQ(j["imported"], 8);
  EXPECT_EQ(j["rejected"]["syntax"], 4);
  EXPECT_EQ(file_text(path("rejects.csv")), expected);
}

TEST_F(ImportTest, SuppressionWinsOverAnyLaterImport) {
  auto file = write("in.csv", "email\nkeep@example.com\nStop@Example.com\n");
  ASSERT_EQ(mailer({"suppress", "add", "stop@example.com", "--reason", "complaint"}).exit_code, 0);
  auto j = import(file, {"--rejects", path("rejects.csv")});
  EXPECT_EQ(j["imported"], 1);
  EXPECT_EQ(j["suppressed"], 1);
  EXPECT_EQ(count("SELECT count(*) FROM list_members m JOIN recipients r ON r.id = m.recipient_id "
                  "WHERE r.email_key = 'stop@example.com'"),
            0);
  EXPECT_EQ(count("SELECT count(*) FROM recipients WHERE email_key = 'stop@example.com'"), 0);
  EXPECT_NE(
      file_text(path("rejects.csv")).find("3,suppressed,suppressed: complaint,Stop@example.com"),
      std::string::npos)
      << file_text(path("rejects.csv"));
}

// New addresses are COPYed before any lookup; those that turn out suppressed
// are taken back: not members, not recipients, reported with their line. The
// check walks the suppressions when there are fewer than the chunk's rows and
// probes per row otherwise; both ways are run here.
TEST_F(ImportTest, SuppressedAddressesAmongNewOnesAreTakenBack) {
  for (int i = 0; i < 8; ++i) {
    ASSERT_EQ(mailer({"suppress", "add", "s" + std::to_string(i) + "@example.com", "--reason",
                      i % 2 ? "hard_bounce" : "unsubscribe"})
                  .exit_code,
              0);
  }
  HygieneRules rules(builtin_hygiene_sources());
  throttle::ProviderClassifier classifier;
  db::Database database(db::DatabaseOptions{db_->url()});
  db::ListImportStore store(database);
  // chunk of 4 rows against 8 suppressions (probe per row), then a chunk of
  // 100 against 8 (walk the suppressions)
  struct Case {
    std::string prefix;
    std::size_t chunk_rows;
    int first_suppressed;
  };
  for (const Case& c : {Case{"a", 4, 0}, Case{"b", 100, 4}}) {
    std::string csv = "email,name\n";
    for (int i = 0; i < 12; ++i) {
      csv += c.prefix + std::to_string(i) + "@example.com,n" + std::to_string(i) + "\n";
      if (i % 3 == 0) {
        csv += "S" + std::to_string(c.first_suppressed + i / 3) + "@Example.com,x\n";
      }
    }
    ImportOptions o;
    o.list_name = "news";
    o.file = write(c.prefix + ".csv", csv);
    o.rejects_file = path(c.prefix + "-rejects.csv");
    o.chunk_rows = c.chunk_rows;
    ImportCounts counts = ListImporter(store, rules, classifier, o).run();
    EXPECT_EQ(counts.imported, 12u) << c.prefix;
    EXPECT_EQ(counts.suppressed, 4u) << c.prefix;
    const std::string rejects = file_text(o.rejects_file);
    // line 3 is the first suppressed row (after the header and the first new row)
    const std::string first = "3,suppressed,suppressed: " +
                              std::string(c.first_suppressed % 2 ? "hard_bounce" : "unsubscribe") +
                              ",S" + std::to_string(c.first_suppressed) + "@example.com";
    EXPECT_NE(rejects.find(first), std::string::npos) << rejects;
    EXPECT_EQ(std::count(rejects.begin(), rejects.end(), '\n'), 5) << rejects;
  }
  EXPECT_EQ(members("news"), 24);
  EXPECT_EQ(count("SELECT count(*) FROM recipients"), 24);
  EXPECT_EQ(count("SELECT count(*) FROM recipients r JOIN suppressions s USING (email_key)"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM list_members m LEFT JOIN recipients r "
                  "ON r.id = m.recipient_id WHERE r.id IS NULL"),
            0)
      << "no membership points at a recipient that was taken back";
}

// New recipients' ids are drawn from the sequence as one block; when they are
// not consecutive (another session drew ids at the same moment; here the
// sequence steps by 3, so no two are), they come back as runs and every row
// still gets its own id, its attributes and its membership.
TEST_F(ImportTest, IdsThatAreNotConsecutiveStillMatchTheirRows) {
  {
    pqxx::connection c(db_->url());
    pqxx::work w(c);
    w.exec("ALTER SEQUENCE recipients_id_seq INCREMENT BY 3");
    w.commit();
  }
  ASSERT_EQ(mailer({"suppress", "add", "u7@example.com", "--reason", "manual"}).exit_code, 0);
  std::string csv = "email,name\n";
  for (int i = 0; i < 40; ++i)
    csv += "U" + std::to_string(i) + "@example.com,u" + std::to_string(i) + "\n";
  auto j = import(write("gaps.csv", csv));
  EXPECT_EQ(j["imported"], 39);
  EXPECT_EQ(j["suppressed"], 1);
  EXPECT_EQ(members("news"), 39);
  EXPECT_EQ(count("SELECT count(*) FROM recipients WHERE attributes->>'name' || '@example.com' = "
                  "email_key"),
            39)
      << "each recipient carries its own row's attributes";
  EXPECT_EQ(count("SELECT count(*) FROM recipients WHERE email_key = 'u7@example.com'"), 0);
  EXPECT_EQ(count("SELECT count(DISTINCT id % 3) FROM recipients"), 1)
      << query("SELECT string_agg(id::text, ' ' ORDER BY id) FROM recipients")[0][0].c_str();
}

TEST_F(ImportTest, BadRowsOfEveryKindAreRejectedWithLineAndReason) {
  std::string text =
      "email,name\n"                           // 1
      "ok1@example.com,One\n"                  // 2
      "a@example.com,Two,extra\n"              // 3 wrong field count
      "b@example.com,\"bad \xC3\x28 utf8\"\n"  // 4 invalid UTF-8
      "c@example.com,nul@here\n"               // 5 NUL byte (patched below)
      "d@example.com," +
      std::string(70000, 'z') +
      "\n"                      // 6 over-long field
      "e@example.com,ab\"cd\n"  // 7 stray quote
      "ok2@example.com,Two\n";  // 8
  text[text.find("nul@here") + 3] = '\0';
  auto file = write("bad.csv", text);
  auto j = import(file, {"--rejects", path("rejects.csv")});
  EXPECT_EQ(j["rows"], 7);
  EXPECT_EQ(j["imported"], 2);
  EXPECT_EQ(j["rejected"]["malformed"], 5);
  std::string rejects = file_text(path("rejects.csv"));
  EXPECT_EQ(rejects,
            "line,reason,detail,email\n"
            "3,malformed,\"expected 2 fields, found 3\",a@example.com\n"
            "4,malformed,invalid UTF-8 in field 2,b@example.com\n"
            "5,malformed,NUL byte in field 2,c@example.com\n"
            "6,malformed,field 2 longer than 65536 bytes,d@example.com\n"
            "7,malformed,quote inside unquoted field 2,e@example.com\n");
}

// A malformed record whose email field is itself broken: the rejects file
// shows its text as far as it was read, bounded, as valid UTF-8.
TEST_F(ImportTest, RejectsFileShowsTheTextOfBrokenEmailFields) {
  std::string text =
      "name,email\n"                     // 1
      "A,\"bad\xC3\x28@example.com\"\n"  // 2 invalid UTF-8 in the email field
      "B,\"nul@here.com\"\n"             // 3 NUL byte in it (patched below)
      "C,\"" +
      std::string(70000, 'w') +
      "\"\n"                  // 4 over-long email field
      "D\"x,y@example.com\n"  // 5 broken before the email field
      "E,ok@example.com\n";   // 6
  text[text.find("nul@here") + 3] = '\0';
  auto j = import(write("broken.csv", text), {"--rejects", path("rejects.csv")});
  EXPECT_EQ(j["rows"], 5);
  EXPECT_EQ(j["imported"], 1);
  EXPECT_EQ(file_text(path("rejects.csv")),
            "line,reason,detail,email\n"
            "2,malformed,invalid UTF-8 in field 2,bad\xEF\xBF\xBD(@example.com\n"
            "3,malformed,NUL byte in field 2,nul\xEF\xBF\xBDhere.com\n"
            "4,malformed,field 2 longer than 65536 bytes," +
                std::string(256, 'w') +
                "\n"
                "5,malformed,quote inside unquoted field 1,D\n");
}

// `--rejects` naming the input (the same path, a symlink or a hard link to
// it) would truncate the file being imported: refused, the input intact.
TEST_F(ImportTest, RejectsPathThatIsTheInputIsRefusedAndTheInputKept) {
  const std::string text = "email,name\nok1@example.com,a\nbad@@x,b\nok2@example.com,c\n";
  const std::string file = write("r3.csv", text);
  std::filesystem::create_symlink(file, path("link.csv"));
  std::filesystem::create_hard_link(file, path("hard.csv"));
  for (const std::string& rejects : {file, path("link.csv"), path("hard.csv")}) {
    auto r = mailer({"import", "--list", "news", file, "--rejects", rejects});
    EXPECT_EQ(r.exit_code, 2) << rejects;
    EXPECT_NE(r.err.find("--rejects " + rejects + ": is the input file " + file), std::string::npos)
        << r.err;
    EXPECT_EQ(file_text(file), text) << rejects;
  }
  std::filesystem::remove(file);
  write("r3.csv", text);  // a new file: the links name the old one
  auto j = import(file, {"--rejects", path("hard.csv")});
  EXPECT_EQ(j["imported"], 2) << "another file is a fine rejects file";
  EXPECT_EQ(count("SELECT count(*) FROM imports"), 1);
}

// A quoted field over the size limit that closes later: its lines (an
// address among them) never become rows, the row after it is imported.
TEST_F(ImportTest, OversizeQuotedFieldNeverBecomesRows) {
  std::string note;
  for (int i = 0; i < 7000; ++i) note += "note line\n";
  auto file = write("r2.csv", "email,note\nvictim@example.com,\"" + note +
                                  "injected@example.com,Mallory\nend\"\nlast@example.com,x\n");
  auto j = import(file, {"--rejects", path("rejects.csv")});
  EXPECT_EQ(j["rows"], 2);
  EXPECT_EQ(j["imported"], 1);
  EXPECT_EQ(j["rejected"]["malformed"], 1);
  EXPECT_EQ(count("SELECT count(*) FROM recipients WHERE email_key = 'injected@example.com'"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM recipients WHERE email_key = 'last@example.com'"), 1);
  EXPECT_EQ(file_text(path("rejects.csv")),
            "line,reason,detail,email\n"
            "2,malformed,field 2 longer than 65536 bytes,victim@example.com\n");
}

// A quote that never closes takes only its own line: every other line is
// imported, and the count of rows is the file's.
TEST_F(ImportTest, UnterminatedQuoteRejectsItsLineAndImportsTheRest) {
  auto file =
      write("r1.csv", "email,name\n\"a@example.com,Ann\nb@example.com,Bob\nc@example.com,Cy\n");
  auto j = import(file, {"--rejects", path("rejects.csv")});
  EXPECT_EQ(j["rows"], 3);
  EXPECT_EQ(j["imported"], 2);
  EXPECT_EQ(j["rejected"]["malformed"], 1);
  EXPECT_EQ(members("news"), 2);
  EXPECT_EQ(file_text(path("rejects.csv")),
            "line,reason,detail,email\n"
            "2,malformed,unterminated quoted field 1,\"a@example.com,Ann\"\n");
}

TEST_F(ImportTest, CrOnlyLineEndingsReportEachRejectAtItsLine) {
  auto file =
      write("mac.csv", "email,name\rok@example.com,a\rbad@@x,b\rx\"y,c\rok2@example.com,d\r");
  auto j = import(file, {"--rejects", path("rejects.csv")});
  EXPECT_EQ(j["imported"], 2);
  EXPECT_EQ(file_text(path("rejects.csv")),
            "line,reason,detail,email\n"
            "3,syntax,more than one @,bad@@x\n"
            "4,malformed,quote inside unquoted field 1,x\n");
}

TEST_F(ImportTest, LineBreakInsideAnAddressIsNamedAsSuch) {
  auto file = write("lb.csv", "email,name\n\"a@example.com\nb@example.com\",x\n");
  import(file, {"--rejects", path("rejects.csv")});
  EXPECT_EQ(file_text(path("rejects.csv")),
            "line,reason,detail,email\n"
            "2,syntax,line break in address,\"a@example.com\nb@example.com\"\n");
}

TEST_F(ImportTest, Utf16FileExitsTwoNamingTheEncoding) {
  const std::string utf8 = "email,name\na@example.com,A\n";
  std::string le = "\xFF\xFE";
  for (char c : utf8) {
    le.push_back(c);
    le.push_back('\0');
  }
  auto file = write("utf16.csv", le);
  auto r = mailer({"import", "--list", "news", file});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(file + ": file is UTF-16 (UTF-16LE); convert it to UTF-8"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(count("SELECT count(*) FROM imports"), 0);
}

TEST_F(ImportTest, RejectsFileCarriesReasonDetailAndOriginalEmail) {
  auto file = write("in.csv", "email\nsomeone@gmial.com\nbad@@x\nx@example.com\nX@example.com\n");
  import(file, {"--rejects", path("r.csv")});
  EXPECT_EQ(file_text(path("r.csv")),
            "line,reason,detail,email\n"
            "2,typo,did you mean someone@gmail.com?,someone@gmial.com\n"
            "3,syntax,more than one @,bad@@x\n"
            "5,duplicate,repeated in file,X@example.com\n");
}

TEST_F(ImportTest, NameFieldWithLineBreaksAndHeaderLikeTextIsStoredAsData) {
  std::string evil = "Mallory\r\nemail,name\r\nevil@example.com,Injected\n\"quoted\"";
  std::string quoted = "\"Mallory\r\nemail,name\r\nevil@example.com,Injected\n\"\"quoted\"\"\"";
  auto file =
      write("evil.csv", "email,name\r\nm@example.com," + quoted + "\r\nn@example.com,N\r\n");
  auto j = import(file);
  EXPECT_EQ(j["rows"], 2);
  EXPECT_EQ(j["imported"], 2);
  EXPECT_EQ(count("SELECT count(*) FROM recipients WHERE email_key = 'evil@example.com'"), 0);
  EXPECT_EQ(
      query("SELECT attributes->>'name' FROM recipients WHERE email_key = 'm@example.com'")[0][0]
          .as<std::string>(),
      evil);
}

TEST_F(ImportTest, ReadsBomCrlfAndAnotherDelimiter) {
  auto file = write("semi.csv",
                    "\xEF\xBB\xBF"
                    "Name;EMAIL\r\n\"Doe; J\";j@example.com\r\n");
  auto j = import(file, {"--delimiter", ";"});
  EXPECT_EQ(j["imported"], 1);
  EXPECT_EQ(query("SELECT attributes->>'Name' FROM recipients")[0][0].as<std::string>(), "Doe; J");
}

TEST_F(ImportTest, DelimiterTabReadsTabSeparatedFields) {
  auto file = write("tabs.tsv",
                    "email\tname\tcity\n"
                    "t1@example.com\tAnn, Jr\tParis\n"
                    "t2@example.com\t\"Bob\tTab\"\tBerlin\n");
  auto j = import(file, {"--delimiter", "tab"});
  EXPECT_EQ(j["rows"], 2);
  EXPECT_EQ(j["imported"], 2);
  // A comma is an ordinary character; a quoted field may hold a tab.
  EXPECT_EQ(
      query("SELECT attributes->>'name' FROM recipients WHERE email_key = 't1@example.com'")[0][0]
          .as<std::string>(),
      "Ann, Jr");
  EXPECT_EQ(
      query("SELECT attributes->>'name' FROM recipients WHERE email_key = 't2@example.com'")[0][0]
          .as<std::string>(),
      "Bob\tTab");
  EXPECT_EQ(
      query("SELECT attributes->>'city' FROM recipients WHERE email_key = 't2@example.com'")[0][0]
          .as<std::string>(),
      "Berlin");
}

TEST_F(ImportTest, FileLevelProblemsExitTwoNamingTheFileAndChangeNothing) {
  std::string no_email = write("noemail.csv", "name,phone\nA,1\n");
  std::string binary = write("data.xlsx", std::string("PK\x03\x04\x14\0\x06\0binary\xff\xfe", 16));
  std::string empty = write("empty.csv", "");
  std::string good = write("good.csv", "email\na@example.com\n");
  struct Case {
    std::vector<std::string> args;
    std::string message;
  } cases[] = {
      {{"import", "--list", "news", no_email}, no_email + ": line 1: no \"email\" column"},
      {{"import", "--list", "news", binary}, binary + ": not a CSV text file"},
      {{"import", "--list", "news", empty}, empty + ": empty file"},
      {{"import", "--list", "news", path("missing.csv")}, path("missing.csv") + ": cannot read"},
      {{"import", "--list", "news", dir_}, dir_ + ": not a regular file"},
      {{"import", "--list", "nope", good}, "list \"nope\" does not exist"},
      {{"import", "--list", "news", good, "--rejects", "/nonexistent/dir/r.csv"},
       "/nonexistent/dir/r.csv: cannot write rejects file"},
      {{"import", "--list", "news", good, "--delimiter", "ab"}, "--delimiter"},
  };
  for (const auto& c : cases) {
    auto r = mailer(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args[3];
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
  }
  EXPECT_EQ(count("SELECT count(*) FROM recipients"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM imports"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM domains"), 0);
}

TEST_F(ImportTest, InterruptedImportResumesWhereItStopped) {
  std::string text = "email,n\n";
  for (int i = 0; i < 10; ++i)
    text += "u" + std::to_string(i) + "@example.com," + std::to_string(i) + "\n";
  text += "u3@example.com,again\n";
  auto file = write("big.csv", text);
  db::Database database(db::DatabaseOptions{db_->url()});
  db::ListImportStore store(database);
  HygieneRules rules(builtin_hygiene_sources());
  throttle::ProviderClassifier classifier;
  ImportOptions o;
  o.list_name = "news";
  o.file = file;
  o.chunk_rows = 4;
  struct Crash {};
  {
    ListImporter importer(store, rules, classifier, o);
    int chunks = 0;
    // The progress callback runs after each committed chunk: fail after two.
    EXPECT_THROW(importer.run([&](const ImportProgress& p) {
      if (p.rows % 4 == 0 && p.rows > 0 && ++chunks == 2) throw Crash{};
    }),
                 Crash);
  }
  EXPECT_EQ(members("news"), 8) << "two whole chunks committed, nothing of the third";
  database.disconnect();  // releases the session lock, as a crashed process would
  auto j = mailer_json({"import", "--list", "news", file});
  EXPECT_EQ(j["rows"], 11);
  EXPECT_EQ(j["imported"], 10);
  EXPECT_EQ(j["duplicates"], 1) << "a repeat of a row committed before the crash";
  EXPECT_EQ(members("news"), 10);
  EXPECT_EQ(count("SELECT count(*) FROM imports WHERE status = 'finished'"), 1);
}

}  // namespace
}  // namespace mailer::lists
