// `mailer bounces poll` end to end against a real Dovecot that each test
// starts on loopback ports with a private configuration (passwd-file user,
// maildir under a temp dir, imaps with a certificate openssl makes here, and
// plain imap), and a real PostgreSQL: reports are applied and then leave the
// mailbox, a failed apply leaves them for the next poll, a message that is
// no report is moved aside (or flagged), bad credentials and bad URLs exit
// with clear errors, and the loop polls until SIGTERM.
#include <grp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "sender/verp.h"
#include "tests/app/queue_seed.h"
#include "tests/app/queue_worker_process.h"
#include "tests/app/report_messages.h"
#include "tests/support/pg_fixture.h"
#include "tests/support/process.h"

namespace mailer::app {
namespace {

namespace fs = std::filesystem;
using mailer::testing::exec_sql;
using mailer::testing::query_int;
using mailer::testing::run_mailer;
using mailer::testing::run_process;
using mailer::testing::seed_campaign;
using mailer::testing::seed_list;
using mailer::testing::write_file;

constexpr const char* kSecret = "0123456789abcdef0123456789abcdef-bounces-poll";
constexpr const char* kVerpDomain = "bounces.example.com";
constexpr const char* kImapUser = "bounces";
constexpr const char* kImapPassword = "poll-Secret-4711";

const char* dovecot_binary() {
  for (const char* p : {"/usr/sbin/dovecot", "/usr/local/sbin/dovecot"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  return nullptr;
}

// A port nothing listens on right now.
unsigned short free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

bool accepts(unsigned short port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Dovecot on 127.0.0.1 with one passwd-file user whose INBOX is the maildir
// home/bounces/Maildir; never the system service or its configuration.
class Dovecot {
 public:
  explicit Dovecot(const std::string& dir) : dir_(dir) {
    const bool root = ::geteuid() == 0;
    const passwd* me = ::getpwuid(::geteuid());
    const std::string self = me != nullptr ? me->pw_name : "root";
    // As root, Dovecot's own unprivileged users run the login and mail
    // processes (mail is never read as root); otherwise everything runs as us.
    const std::string login_user = root ? "dovenull" : self;
    const std::string internal_user = root ? "dovecot" : self;
    const passwd* mail = ::getpwnam(internal_user.c_str());
    if (mail == nullptr) {
      error_ = "no user " + internal_user + " (the dovecot-core package creates it)";
      return;
    }
    uid_ = mail->pw_uid;
    gid_ = mail->pw_gid;
    fs::permissions(dir_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                              fs::perms::others_read | fs::perms::others_exec);
    for (const char* sub : {"new", "cur", "tmp"}) fs::create_directories(maildir() + "/" + sub);
    chown_tree(dir_ + "/home");

    auto cert = run_process({"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                             "-days", "2", "-subj", "/CN=localhost", "-addext",
                             "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout",
                             dir_ + "/key.pem", "-out", dir_ + "/cert.pem"});
    if (cert.exit_code != 0) {
      error_ = "openssl req failed: " + cert.err;
      return;
    }
    write_file(dir_ + "/passwd", std::string(kImapUser) + ":{PLAIN}" + kImapPassword + "::::::\n");

    for (int attempt = 0; attempt < 5; ++attempt) {
      imap_port_ = free_port();
      imaps_port_ = free_port();
      if (imap_port_ == imaps_port_) continue;
      write_config(login_user, internal_user);
      if (start()) return;
    }
    if (error_.empty()) error_ = "dovecot did not start: " + slurp(dir_ + "/dovecot.log");
  }

  ~Dovecot() { stop(); }

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  unsigned short imap_port() const { return imap_port_; }
  unsigned short imaps_port() const { return imaps_port_; }
  std::string ca_file() const { return dir_ + "/cert.pem"; }
  std::string maildir() const { return dir_ + "/home/" + kImapUser + "/Maildir"; }

  // Delivers `message` into INBOX the way an MDA does: tmp/, then new/.
  void deliver(const std::string& name, const std::string& message) {
    const std::string tmp = maildir() + "/tmp/" + name;
    write_file(tmp, message);
    if (::chown(tmp.c_str(), uid_, gid_) != 0 && ::geteuid() == 0) ADD_FAILURE() << "chown " << tmp;
    fs::rename(tmp, maildir() + "/new/" + name);
  }

  // Messages in INBOX (new/ and cur/), and in another folder of the maildir.
  int inbox_count() const { return count_in(maildir()); }
  int folder_count(const std::string& folder) const { return count_in(maildir() + "/." + folder); }

  std::string log() const { return slurp(dir_ + "/dovecot.log"); }

 private:
  static int count_in(const std::string& dir) {
    int n = 0;
    for (const char* sub : {"new", "cur"}) {
      std::error_code ec;
      for (fs::directory_iterator it(dir + "/" + sub, ec), end; !ec && it != end;
           it.increment(ec)) {
        if (it->is_regular_file()) ++n;
      }
    }
    return n;
  }

  void chown_tree(const std::string& top) {
    if (::geteuid() != 0) return;
    for (const auto& entry : fs::recursive_directory_iterator(top)) {
      if (::chown(entry.path().c_str(), uid_, gid_) != 0) ADD_FAILURE() << "chown " << entry.path();
    }
    if (::chown(top.c_str(), uid_, gid_) != 0) ADD_FAILURE() << "chown " << top;
  }

  void write_config(const std::string& login_user, const std::string& internal_user) {
    std::string dh;
    if (fs::exists("/usr/share/dovecot/dh.pem")) dh = "ssl_dh = </usr/share/dovecot/dh.pem\n";
    write_file(
        dir_ + "/dovecot.conf",
        "base_dir = " + dir_ + "/run\n" + "state_dir = " + dir_ + "/state\n" +
            "log_path = " + dir_ + "/dovecot.log\n" + "protocols = imap\n" +
            "listen = 127.0.0.1\n" + "ssl = yes\n" + "ssl_cert = <" + dir_ + "/cert.pem\n" +
            "ssl_key = <" + dir_ + "/key.pem\n" + dh + "disable_plaintext_auth = no\n" +
            "auth_mechanisms = plain login\n" + "first_valid_uid = 1\nfirst_valid_gid = 1\n" +
            "default_login_user = " + login_user + "\n" +
            "default_internal_user = " + internal_user + "\n" +
            "passdb {\n  driver = passwd-file\n  args = scheme=PLAIN " + dir_ + "/passwd\n}\n" +
            "userdb {\n  driver = static\n  args = uid=" + std::to_string(uid_) +
            " gid=" + std::to_string(gid_) + " home=" + dir_ + "/home/%u\n}\n" +
            "mail_location = maildir:~/Maildir\n" + "service imap-login {\n  chroot =\n" +
            "  inet_listener imap {\n    address = 127.0.0.1\n    port = " +
            std::to_string(imap_port_) + "\n  }\n" +
            "  inet_listener imaps {\n    address = 127.0.0.1\n    port = " +
            std::to_string(imaps_port_) + "\n    ssl = yes\n  }\n}\n" +
            "service anvil {\n  chroot =\n}\n");
  }

  bool start() {
    pid_ = ::fork();
    if (pid_ == 0) {
      const std::string out = dir_ + "/dovecot.out";
      std::FILE* f = std::freopen(out.c_str(), "w", stdout);
      (void)f;
      ::dup2(::fileno(stdout), 2);
      const std::string conf = dir_ + "/dovecot.conf";
      ::execl(dovecot_binary(), "dovecot", "-F", "-c", conf.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        error_ = "dovecot exited at start: " + slurp(dir_ + "/dovecot.out") + log();
        // A port taken between free_port() and bind: try other ports.
        if (error_.find("in use") != std::string::npos) error_.clear();
        return false;
      }
      if (accepts(imap_port_) && accepts(imaps_port_)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    error_ = "dovecot did not listen within 20s: " + log();
    stop();
    return false;
  }

  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) != pid_) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    pid_ = -1;
  }

  std::string dir_;
  std::string error_;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  pid_t pid_ = -1;
  unsigned short imap_port_ = 0;
  unsigned short imaps_port_ = 0;
};

// An RFC 3464 report about `rcpt`, sent to return path `to`.
std::string dsn(const std::string& id, const std::string& to, const std::string& rcpt,
                const std::string& action, const std::string& status) {
  return mailer::testing::dsn(id, to, rcpt, action, status, "550 " + status + " mailbox problem");
}

// An ARF complaint (RFC 5965) whose quoted message carries our return path.
std::string complaint(const std::string& id, const std::string& return_path,
                      const std::string& rcpt) {
  return "From: feedback@fbl.example.net\r\nTo: fbl@example.com\r\nSubject: complaint\r\n"
         "Message-ID: <" +
         id +
         "@fbl.example.net>\r\nMIME-Version: 1.0\r\n"
         "Content-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\r\n\r\n"
         "--F\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n\r\n"
         "--F\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
         "User-Agent: Example-FBL/1.0\r\nVersion: 1\r\nOriginal-Rcpt-To: " +
         rcpt +
         "\r\n\r\n"
         "--F\r\nContent-Type: message/rfc822\r\n\r\nReturn-Path: <" +
         return_path + ">\r\nFrom: News <news@example.com>\r\nTo: " + rcpt +
         "\r\nSubject: Hello\r\n\r\nHi\r\n--F--\r\n";
}

const std::string kNewsletter =
    "From: someone@example.org\r\nTo: bounces@example.com\r\nSubject: lunch?\r\n"
    "Message-ID: <lunch@example.org>\r\n\r\nAre you free today?\r\n";

class BouncesPollTest : public ::testing::Test {
 protected:
  BouncesPollTest() : dir_(mailer::testing::make_temp_dir("bounces-poll")) {
    write_file(dir_ + "/secret.key", kSecret);
    write_file(dir_ + "/imap.password", std::string(kImapPassword) + "\n");
    fs::create_directories(dir_ + "/dovecot");
    // Dovecot's unprivileged processes must reach the maildir below it.
    fs::permissions(dir_, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  }
  ~BouncesPollTest() override {
    dovecot_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void SetUp() override {
    if (dovecot_binary() == nullptr) {
      GTEST_SKIP() << "dovecot is not installed (deploy/install-deps.sh installs dovecot-imapd)";
    }
    dovecot_ = std::make_unique<Dovecot>(dir_ + "/dovecot");
    ASSERT_TRUE(dovecot_->ok()) << dovecot_->error();
  }

  std::string imaps_url() const {
    return "imaps://" + std::string(kImapUser) +
           "@127.0.0.1:" + std::to_string(dovecot_->imaps_port()) + "/INBOX";
  }
  std::string imap_url() const {
    return "imap://" + std::string(kImapUser) +
           "@127.0.0.1:" + std::to_string(dovecot_->imap_port()) + "/INBOX";
  }

  // The configuration: [bounces] as given by `bounces`.
  void write_config(const std::string& bounces, const std::string& database = "") {
    write_file(dir_ + "/mailer.toml", "[database]\nreconnect_for = \"0s\"\n" + database +
                                          "[sender]\nverp_domain = \"" + kVerpDomain +
                                          "\"\n[unsubscribe]\nsecret_file = \"" + dir_ +
                                          "/secret.key\"\n[bounces]\n" + bounces);
  }
  std::string bounces_section(const std::string& url, const std::string& extra = "") const {
    return "imap_url = \"" + url + "\"\nimap_password_file = \"" + dir_ +
           "/imap.password\"\nimap_ca_file = \"" + dovecot_->ca_file() + "\"\n" + extra;
  }

  mailer::testing::ProcessResult mailer(std::vector<std::string> args,
                                        const std::string& database_url = "") {
    args.insert(args.begin(), {"--config", dir_ + "/mailer.toml"});
    return run_mailer(args,
                      {{"MAILER_DATABASE_URL", database_url.empty() ? t_.url() : database_url},
                       {"MAILER_IMAP_PASSWORD", ""}});
  }

  nlohmann::json poll_once(int expect_exit = 0, const std::string& database_url = "") {
    auto r = mailer({"bounces", "poll", "--once", "--json"}, database_url);
    EXPECT_EQ(r.exit_code, expect_exit) << r.out << r.err << dovecot_->log();
    last_err_ = r.err;
    if (r.out.empty()) return {};
    return nlohmann::json::parse(r.out);
  }

  // A running campaign over `n` recipients, every delivery sent.
  std::int64_t sent_campaign(int n) {
    const auto list = seed_list(t_.url(), "news", n);
    const auto campaign = seed_campaign(t_.url(), list, "running");
    exec_sql(t_.url(),
             "INSERT INTO deliveries (campaign_id, recipient_id, provider, state, attempts, "
             "sent_at) SELECT " +
                 std::to_string(campaign) +
                 ", recipient_id, 'other', 'sent', 1, now() FROM list_members ORDER BY "
                 "recipient_id");
    pqxx::connection c(t_.url());
    pqxx::work w(c);
    for (const auto& row :
         w.exec("SELECT d.id, r.email FROM deliveries d JOIN recipients r ON r.id = d.recipient_id "
                "ORDER BY d.id")) {
      ids_.push_back(row[0].as<std::int64_t>());
      emails_.push_back(row[1].as<std::string>());
    }
    return campaign;
  }

  std::string verp(std::int64_t delivery) const {
    return sender::VerpCodec("bounce", kVerpDomain, kSecret).ReturnPath(delivery).envelope_form();
  }

  std::string state_of(std::int64_t delivery) {
    pqxx::connection c(t_.url());
    pqxx::work w(c);
    return w.exec_params1("SELECT state FROM deliveries WHERE id = $1", delivery)[0]
        .as<std::string>();
  }

  std::string suppression_of(const std::string& email) {
    pqxx::connection c(t_.url());
    pqxx::work w(c);
    const auto r =
        w.exec_params("SELECT reason FROM suppressions WHERE email_key = lower($1)", email);
    return r.empty() ? "" : r[0][0].as<std::string>();
  }

  mailer::testing::TestDatabase t_{"bounces_poll"};
  std::string dir_;
  std::unique_ptr<Dovecot> dovecot_;
  std::vector<std::int64_t> ids_;
  std::vector<std::string> emails_;
  std::string last_err_;
};

TEST_F(BouncesPollTest, ImapsPollAppliesDsnsAndComplaintThenRemovesThemAndMovesANonReport) {
  sent_campaign(4);
  dovecot_->deliver("1.hard", dsn("h1", verp(ids_[0]), emails_[0], "failed", "5.1.1"));
  dovecot_->deliver("2.soft", dsn("s1", verp(ids_[1]), emails_[1], "delayed", "4.2.2"));
  dovecot_->deliver("3.complaint", complaint("c1", verp(ids_[2]), emails_[2]));
  dovecot_->deliver("4.newsletter", kNewsletter);
  ASSERT_EQ(dovecot_->inbox_count(), 4);
  write_config(bounces_section(imaps_url()));

  const auto s = poll_once();
  EXPECT_EQ(s["found"], 4) << s;
  EXPECT_EQ(s["applied"], 3) << s;
  EXPECT_EQ(s["not_reports"], 1) << s;
  EXPECT_EQ(s["left"], 0) << s;
  EXPECT_EQ(s["hard"], 1) << s;
  EXPECT_EQ(s["soft"], 1) << s;
  EXPECT_EQ(s["complaints"], 1) << s;

  EXPECT_EQ(state_of(ids_[0]), "bounced");
  EXPECT_EQ(suppression_of(emails_[0]), "hard_bounce");
  EXPECT_EQ(suppression_of(emails_[1]), "");  // one soft bounce is below soft_limit
  EXPECT_EQ(suppression_of(emails_[2]), "complaint");
  EXPECT_EQ(query_int(t_.url(), "SELECT count(*) FROM feedback_reports"), 3);

  // The reports left the mailbox; the newsletter went to the default folder.
  EXPECT_EQ(dovecot_->inbox_count(), 0);
  EXPECT_EQ(dovecot_->folder_count("mailer-not-reports"), 1);

  // Nothing left to do on the next poll.
  const auto again = poll_once();
  EXPECT_EQ(again["found"], 0) << again;
}

TEST_F(BouncesPollTest, PlainImapWithoutNotReportFolderLeavesANonReportFlaggedAndSkipsItLater) {
  sent_campaign(1);
  dovecot_->deliver("1.hard", dsn("h1", verp(ids_[0]), emails_[0], "failed", "5.1.1"));
  dovecot_->deliver("2.newsletter", kNewsletter);
  write_config(bounces_section(imap_url(), "imap_not_report_folder = \"\"\n"));

  const auto s = poll_once();
  EXPECT_EQ(s["found"], 2) << s;
  EXPECT_EQ(s["applied"], 1) << s;
  EXPECT_EQ(s["not_reports"], 1) << s;
  EXPECT_EQ(state_of(ids_[0]), "bounced");
  EXPECT_EQ(dovecot_->inbox_count(), 1);  // the newsletter stays

  const auto again = poll_once();
  EXPECT_EQ(again["found"], 0) << again;  // flagged $MailerNotReport: not fetched again
  EXPECT_EQ(dovecot_->inbox_count(), 1);
}

TEST_F(BouncesPollTest, DatabaseDownLeavesMessagesInTheMailboxAndTheNextPollAppliesThem) {
  sent_campaign(2);
  dovecot_->deliver("1.hard", dsn("h1", verp(ids_[0]), emails_[0], "failed", "5.1.1"));
  dovecot_->deliver("2.complaint", complaint("c1", verp(ids_[1]), emails_[1]));
  write_config(bounces_section(imaps_url()));

  const std::string down =
      "postgresql://mailer@127.0.0.1:" + std::to_string(free_port()) + "/mailer";
  const auto failed = poll_once(1, down);
  EXPECT_EQ(failed["applied"], 0) << failed;
  EXPECT_EQ(failed["failed"], 1) << failed;
  EXPECT_EQ(failed["left"], 2) << failed;
  EXPECT_NE(last_err_.find("PostgreSQL"), std::string::npos) << last_err_;
  EXPECT_EQ(dovecot_->inbox_count(), 2);
  EXPECT_EQ(state_of(ids_[0]), "sent");

  const auto s = poll_once();
  EXPECT_EQ(s["applied"], 2) << s;
  EXPECT_EQ(s["hard"], 1) << s;
  EXPECT_EQ(s["complaints"], 1) << s;
  EXPECT_EQ(state_of(ids_[0]), "bounced");
  EXPECT_EQ(suppression_of(emails_[1]), "complaint");
  EXPECT_EQ(dovecot_->inbox_count(), 0);
}

TEST_F(BouncesPollTest, WrongPasswordExitsOneNamingTheRefusedLoginWithoutThePassword) {
  dovecot_->deliver("1.newsletter", kNewsletter);
  write_file(dir_ + "/imap.password", "not-the-Password-99\n");
  write_config(bounces_section(imaps_url()));
  auto r = mailer({"bounces", "poll", "--once"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("IMAP login as \"bounces\""), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("refused"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("not-the-Password-99"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("not-the-Password-99"), std::string::npos) << r.out;
  EXPECT_EQ(dovecot_->inbox_count(), 1);
}

TEST_F(BouncesPollTest, PasswordFromEnvironmentWhenNoPasswordFile) {
  sent_campaign(1);
  dovecot_->deliver("1.hard", dsn("h1", verp(ids_[0]), emails_[0], "failed", "5.1.1"));
  write_config("imap_url = \"" + imaps_url() + "\"\nimap_ca_file = \"" + dovecot_->ca_file() +
               "\"\n");
  auto r = run_mailer({"--config", dir_ + "/mailer.toml", "bounces", "poll", "--once"},
                      {{"MAILER_DATABASE_URL", t_.url()}, {"MAILER_IMAP_PASSWORD", kImapPassword}});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("1 messages: 1 applied and removed"), std::string::npos) << r.out;
  EXPECT_EQ(dovecot_->inbox_count(), 0);
}

TEST_F(BouncesPollTest, UntrustedCertificateExitsOneNamingImapCaFile) {
  dovecot_->deliver("1.newsletter", kNewsletter);
  write_config("imap_url = \"" + imaps_url() + "\"\nimap_password_file = \"" + dir_ +
               "/imap.password\"\n");
  auto r = mailer({"bounces", "poll", "--once"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("imap_ca_file"), std::string::npos) << r.err;
  EXPECT_EQ(dovecot_->inbox_count(), 1);
}

TEST_F(BouncesPollTest, BadImapSettingsExitTwoNamingTheKey) {
  struct Case {
    std::string bounces;
    std::string expect;
  };
  const std::string pw = "imap_password_file = \"" + dir_ + "/imap.password\"\n";
  const std::vector<Case> cases = {
      {"imap_url = \"imaps://bounces:hunter2@127.0.0.1/INBOX\"\n" + pw, "holds a password"},
      {"imap_url = \"imaps://127.0.0.1/INBOX\"\n" + pw, "names no user"},
      {"imap_url = \"imaps://bounces@127.0.0.1/\"\n" + pw, "names no mailbox"},
      {"imap_url = \"imaps://bounces@127.0.0.1/INBOX;UID=3\"\n" + pw, "mailbox only"},
      {"imap_url = \"https://bounces@127.0.0.1/INBOX\"\n" + pw, "imap_url"},
      {"imap_url = \"imaps://bounces@127.0.0.1/INBOX\"\nimap_password_file = \"" + dir_ +
           "/missing\"\n",
       "imap_password_file"},
      {"imap_url = \"imaps://bounces@127.0.0.1/INBOX\"\nimap_password_file = \"/dev/zero\"\n",
       "imap_password_file /dev/zero: larger than"},
      {"imap_url = \"imaps://bounces@127.0.0.1/INBOX\"\nimap_password_file = \"" + dir_ + "\"\n",
       "imap_password_file " + dir_ + ": is a directory"},
      {"imap_url = \"imaps://bounces@127.0.0.1/INBOX\"\n" + pw + "imap_ca_file = \"/dev/zero\"\n",
       "imap_ca_file /dev/zero: larger than"},
      {"imap_url = \"imaps://bounces@127.0.0.1/INBOX\"\n" + pw + "imap_ca_file = \"" + dir_ +
           "\"\n",
       "imap_ca_file " + dir_ + ": is a directory"},
      {"imap_url = \"imaps://bounces@127.0.0.1/INBOX\"\n", "no IMAP password"},
      {pw, "imap_url is not set"},
  };
  for (const Case& c : cases) {
    write_config(c.bounces);
    auto r = mailer({"bounces", "poll", "--once"});
    EXPECT_EQ(r.exit_code, 2) << c.bounces << r.out << r.err;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.bounces << r.err;
    EXPECT_EQ(r.err.find("hunter2"), std::string::npos) << r.err;
  }
}

TEST_F(BouncesPollTest, WithoutOncePollsEveryPollEveryUntilSigterm) {
  sent_campaign(2);
  write_config(bounces_section(imaps_url(), "poll_every = \"1s\"\n"));
  mailer::testing::WorkerProcess poller({"--config", dir_ + "/mailer.toml", "bounces", "poll"},
                                        {{"MAILER_DATABASE_URL", t_.url()}}, dir_ + "/poll.out",
                                        dir_ + "/poll.err");

  // Messages that arrive while it runs are applied by a later poll.
  auto wait_until = [&](const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return done();
  };
  dovecot_->deliver("1.hard", dsn("h1", verp(ids_[0]), emails_[0], "failed", "5.1.1"));
  ASSERT_TRUE(wait_until([&] { return state_of(ids_[0]) == "bounced"; })) << poller.err();
  ASSERT_TRUE(wait_until([&] { return dovecot_->inbox_count() == 0; })) << poller.err();
  dovecot_->deliver("2.complaint", complaint("c1", verp(ids_[1]), emails_[1]));
  ASSERT_TRUE(wait_until([&] { return suppression_of(emails_[1]) == "complaint"; }))
      << poller.err();
  ASSERT_TRUE(wait_until([&] { return dovecot_->inbox_count() == 0; })) << poller.err();

  poller.signal(SIGTERM);
  EXPECT_EQ(poller.wait(std::chrono::seconds(20)), 0) << poller.err();
  EXPECT_EQ(poller.err().find(kImapPassword), std::string::npos);
}

}  // namespace
}  // namespace mailer::app
