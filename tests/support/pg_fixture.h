// A fresh PostgreSQL database per test suite on the test server that
// tests/run.sh starts (URL in MAILER_TEST_DATABASE_URL), dropped afterwards,
// so suites never depend on each other.
#pragma once

#include <string>

namespace mailer::testing {

// The server URL from MAILER_TEST_DATABASE_URL. Aborts the test binary with a
// clear message when unset: integration tests need the real server.
std::string server_url();

class TestDatabase {
 public:
  // Creates database "mailer_test_<tag>_<pid>_<n>"; with `migrate`, applies
  // the embedded migrations too.
  explicit TestDatabase(const std::string& tag, bool migrate = true);
  ~TestDatabase();
  TestDatabase(const TestDatabase&) = delete;
  TestDatabase& operator=(const TestDatabase&) = delete;

  const std::string& url() const { return url_; }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  std::string url_;
};

// `base` with its database name replaced by `dbname` (URL or key=value form).
std::string with_database(const std::string& base, const std::string& dbname);

}  // namespace mailer::testing
