// An import killed outright (SIGKILL, a crash, the machine's power) loses
// nothing and writes nothing twice once it is run again: every row of the
// file becomes one member with its own attributes, and each rejected row is
// in the rejects file once, including when the kill came after a chunk's
// rejects were written and before the chunk committed.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "app/db/database.h"
#include "app/db/list_import_store.h"
#include "lists/list_importer.h"
#include "tests/app/queue_worker_process.h"
#include "tests/lists/list_db_fixture.h"

namespace mailer::lists {
namespace {

// A CSV of `rows` data rows, one in `bad_every` without an @ (a reject),
// and the rejects file a whole import of it writes.
struct Input {
  std::string text = "email,n\n";
  std::string rejects = "line,reason,detail,email\n";
  long long good = 0;
};

Input make_input(int rows, int bad_every) {
  Input in;
  for (int i = 0; i < rows; ++i) {
    const int line = i + 2;
    if (i % bad_every == bad_every - 1) {
      in.text += "bad" + std::to_string(i) + "," + std::to_string(i) + "\n";
      in.rejects += std::to_string(line) + ",syntax,missing @,bad" + std::to_string(i) + "\n";
    } else {
      in.text += "k" + std::to_string(i) + "@example.com," + std::to_string(i) + "\n";
      ++in.good;
    }
  }
  return in;
}

// The store of a process that dies once the `die_at`-th chunk's progress is
// ready (its rejects written), before that chunk commits: the moment a
// SIGKILL leaves rows of an uncommitted chunk in the rejects file.
class DiesBeforeCommit : public ImportStore {
 public:
  DiesBeforeCommit(ImportStore& inner, int die_at) : inner_(inner), die_at_(die_at) {}
  std::optional<std::int64_t> find_list(const std::string& name) override {
    return inner_.find_list(name);
  }
  std::optional<ImportRecord> find_running(std::int64_t list_id,
                                           const std::string& identity) override {
    return inner_.find_running(list_id, identity);
  }
  ImportRecord start(std::int64_t list_id, const std::string& file, const std::string& identity,
                     std::uint64_t offset, std::uint64_t line) override {
    return inner_.start(list_id, file, identity, offset, line);
  }
  bool lock(std::int64_t import_id) override { return inner_.lock(import_id); }
  void finish(std::int64_t import_id, const std::string& counts_json) override {
    inner_.finish(import_id, counts_json);
  }
  std::vector<CachedDomain> cached_domains(const std::vector<std::string>& domains) override {
    return inner_.cached_domains(domains);
  }
  void store_domains(const std::vector<DomainAnswer>& answers) override {
    inner_.store_domains(answers);
  }
  ChunkOutcome write_chunk(
      const ImportRecord& import, const ChunkToWrite& chunk,
      const std::function<ChunkProgress(const ChunkOutcome&)>& before_commit) override {
    return inner_.write_chunk(import, chunk, [&](const ChunkOutcome& out) {
      ChunkProgress progress = before_commit(out);
      if (++chunks_ == die_at_) ::_exit(9);
      return progress;
    });
  }

 private:
  ImportStore& inner_;
  int die_at_;
  int chunks_ = 0;
};

class ImportKillTest : public ListDbTest {
 protected:
  void SetUp() override {
    ListDbTest::SetUp();
    auto r = mailer({"lists", "create", "news"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  // Waits until no other session uses the test database: a killed
  // process's backend has gone, and with it the import's session lock.
  void wait_for_sessions_to_end() {
    for (int i = 0; i < 500; ++i) {
      if (count("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()") == 0) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << "a session of the killed import is still open after 10 s";
  }

  // Runs the killed import again, which must succeed and log `marker`;
  // returns its JSON summary.
  nlohmann::json rerun(const std::string& file, const std::string& rejects,
                       const std::string& marker) {
    auto r = mailer({"import", "--list", "news", file, "--rejects", rejects, "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find(marker), std::string::npos) << r.err;
    try {
      return nlohmann::json::parse(r.out);
    } catch (const std::exception&) {
      ADD_FAILURE() << "not JSON: " << r.out;
      return nlohmann::json::object();
    }
  }

  // Every member once, with the attribute of its own row.
  void expect_every_good_row_once(const Input& in) {
    EXPECT_EQ(members("news"), in.good);
    EXPECT_EQ(count("SELECT count(*) FROM recipients"), in.good);
    EXPECT_EQ(count("SELECT count(*) FROM recipients WHERE attributes->>'n' <> "
                    "substring(email FROM '^k([0-9]+)@')"),
              0)
        << "a recipient with another row's attributes";
    EXPECT_EQ(count("SELECT count(*) FROM imports WHERE status = 'finished'"), 1);
    EXPECT_EQ(count("SELECT count(*) FROM imports WHERE status = 'running'"), 0);
  }
};

TEST_F(ImportKillTest, SigkilledImportProcessResumesWithEveryRowOnceAndEachRejectOnce) {
  write_config("[import]\nchunk_rows = 500\n");
  const Input in = make_input(60000, 53);
  const auto file = write("in.csv", in.text);
  const auto rejects = path("rejects.csv");

  long long at_kill = 0;
  {
    testing::WorkerProcess victim({"--config", path("mailer.toml"), "import", "--list", "news",
                                   file, "--rejects", rejects, "--json"},
                                  {{"MAILER_DATABASE_URL", db_->url()}}, path("victim.out"),
                                  path("victim.err"));
    // Kill it once some chunks committed and before the last one did.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline && members("news") < 2000) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    victim.signal(SIGKILL);
    EXPECT_EQ(victim.wait(std::chrono::seconds(10)), -1) << "killed, not exited";
    at_kill = members("news");
  }
  ASSERT_GE(at_kill, 2000) << file_text(path("victim.err"));
  ASSERT_LT(at_kill, in.good) << "the import finished before the kill; the test kills nothing";
  EXPECT_EQ(count("SELECT count(*) FROM imports WHERE status = 'running'"), 1);
  wait_for_sessions_to_end();

  const auto j = rerun(file, rejects, "resuming import");
  EXPECT_EQ(j["rows"], 60000) << j;
  EXPECT_EQ(j["imported"], in.good) << j;
  EXPECT_EQ(j["duplicates"], 0) << j;
  EXPECT_EQ(j["rejected"]["syntax"], 60000 - in.good) << j;
  expect_every_good_row_once(in);
  EXPECT_EQ(file_text(rejects), in.rejects) << "each rejected row once, in line order";
}

// The kill lands after the third chunk's rejects are in the file and before
// that chunk commits: the rerun cuts those rows off and writes them again
// with the chunk, so none appears twice.
TEST_F(ImportKillTest, KillBetweenWritingAChunksRejectsAndItsCommitLeavesEachRejectOnce) {
  const Input in = make_input(40, 4);
  const auto file = write("in.csv", in.text);
  const auto rejects = path("rejects.csv");

  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // A process of its own, with its own connection, that dies in the window.
    try {
      db::Database database(db::DatabaseOptions{db_->url()});
      db::ListImportStore inner(database);
      DiesBeforeCommit store(inner, 3);
      HygieneRules rules(builtin_hygiene_sources());
      throttle::ProviderClassifier classifier;
      ImportOptions o;
      o.list_name = "news";
      o.file = file;
      o.rejects_file = rejects;
      o.chunk_rows = 8;
      ListImporter(store, rules, classifier, o).run({});
    } catch (...) {
      ::_exit(2);
    }
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 9) << "the importer did not reach the third chunk's commit";
  EXPECT_EQ(members("news"), 12) << "two chunks of 8 rows, 6 good each, committed";
  const auto recorded = count("SELECT rejects_bytes FROM imports WHERE status = 'running'");
  const auto left = file_text(rejects);
  ASSERT_GT(static_cast<long long>(left.size()), recorded)
      << "the third chunk's rejects are in the file beyond what the import committed";
  wait_for_sessions_to_end();

  write_config("[import]\nchunk_rows = 8\n");
  const auto j = rerun(file, rejects, "cut back");
  EXPECT_EQ(j["rows"], 40) << j;
  EXPECT_EQ(j["imported"], in.good) << j;
  expect_every_good_row_once(in);
  EXPECT_EQ(file_text(rejects), in.rejects) << "each rejected row once, in line order";
}

}  // namespace
}  // namespace mailer::lists
