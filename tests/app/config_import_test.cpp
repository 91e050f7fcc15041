// The [import] configuration section: defaults, every key, and the exact
// error messages for bad values.
#include <gtest/gtest.h>

#include "app/base/errors.h"
#include "app/config/config.h"

namespace mailer::app {
namespace {

std::string import_error(const std::string& text) {
  try {
    parse_config(text, "mailer.toml");
  } catch (const UsageError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ConfigImport, DefaultsAreDocumented) {
  Config c = parse_config("", "mailer.toml");
  EXPECT_TRUE(c.imports.reject_role_accounts);
  EXPECT_TRUE(c.imports.reject_disposable);
  EXPECT_TRUE(c.imports.reject_typos);
  EXPECT_EQ(c.imports.dns_server, "");
  EXPECT_EQ(c.imports.mx_concurrency, 64);
  EXPECT_EQ(c.imports.mx_timeout, std::chrono::seconds(2));
  EXPECT_EQ(c.imports.mx_cache_ttl_min, std::chrono::hours(1));
  EXPECT_EQ(c.imports.chunk_rows, 25000);
  EXPECT_EQ(c.imports.max_field_bytes, 65536);
}

TEST(ConfigImport, ReadsEveryKey) {
  Config c = parse_config(
      "[import]\nreject_role_accounts = false\nextra_role_accounts = \"billing, hr\"\n"
      "reject_disposable = false\nreject_typos = false\nrole_accounts_file = \"/r\"\n"
      "disposable_domains_file = \"/d\"\ntypo_domains_file = \"/t\"\n"
      "dns_server = \"127.0.0.1:5353\"\nmx_concurrency = 8\nmx_timeout = \"500ms\"\n"
      "mx_cache_ttl_min = \"4h\"\nchunk_rows = 1000\nmax_field_bytes = 4096\n",
      "mailer.toml");
  EXPECT_FALSE(c.imports.reject_role_accounts);
  EXPECT_EQ(c.imports.extra_role_accounts, "billing, hr");
  EXPECT_EQ(c.imports.disposable_domains_file, "/d");
  EXPECT_EQ(c.imports.dns_server, "127.0.0.1:5353");
  EXPECT_EQ(c.imports.mx_concurrency, 8);
  EXPECT_EQ(c.imports.mx_timeout, std::chrono::milliseconds(500));
  EXPECT_EQ(c.imports.mx_cache_ttl_min, std::chrono::hours(4));
  EXPECT_EQ(c.imports.chunk_rows, 1000);
  EXPECT_EQ(c.imports.max_field_bytes, 4096);
}

TEST(ConfigImport, ErrorsNameFileLineAndKey) {
  EXPECT_EQ(import_error("[import]\nmx_concurrency = 0\n"),
            "mailer.toml:2: key \"import.mx_concurrency\": must be at least 1, got 0");
  EXPECT_EQ(import_error("[import]\n\nchunk_rows = 0\n"),
            "mailer.toml:3: key \"import.chunk_rows\": must be at least 1, got 0");
  EXPECT_EQ(import_error("[import]\nmax_field_bytes = 10\n"),
            "mailer.toml:2: key \"import.max_field_bytes\": must be at least 256, got 10");
  EXPECT_EQ(import_error("[import]\ndns_server = \"a:1, b:2\"\n"),
            "mailer.toml:2: key \"import.dns_server\": expected one HOST:PORT, got \"a:1, b:2\"");
  EXPECT_NE(import_error("[import]\nmx_timeout = \"soon\"\n").find("import.mx_timeout"),
            std::string::npos);
  EXPECT_NE(import_error("[import]\nreject_role_accounts = \"yes\"\n")
                .find("import.reject_role_accounts"),
            std::string::npos);
  EXPECT_NE(import_error("[import]\nrole_list = true\n").find("import.role_list"),
            std::string::npos);
}

}  // namespace
}  // namespace mailer::app
