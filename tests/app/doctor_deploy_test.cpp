// The shipped deployment files (deploy/): the systemd units carry the
// sandboxing and graceful-stop directives and pass `systemd-analyze verify`;
// the worker's stop timeout covers the default SMTP transaction timeout; the
// Containerfile builds through deploy/install-deps.sh and installs a package
// for every shared library the built binary needs; compose has its services,
// ordering and secrets; the compose configuration is valid mailer
// configuration; the entrypoint is valid shell.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "app/config/config.h"
#include "tests/support/process.h"

namespace mailer::app {
namespace {

using mailer::testing::run_process;

std::string source(const std::string& relative) {
  return std::string(MAILER_SOURCE_DIR) + "/" + relative;
}

std::string read(const std::string& relative) {
  std::ifstream in(source(relative), std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + relative);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The lines of a unit file, without comments.
std::set<std::string> unit_lines(const std::string& relative) {
  std::set<std::string> lines;
  std::istringstream in(read(relative));
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line[0] != '#') lines.insert(line);
  }
  return lines;
}

const char* const kUnits[] = {"deploy/systemd/mailer-worker@.service",
                              "deploy/systemd/mailer-serve.service",
                              "deploy/systemd/mailer-migrate.service"};

TEST(DeployUnits, EveryUnitIsSandboxed) {
  for (const char* unit : kUnits) {
    const auto lines = unit_lines(unit);
    for (const char* directive :
         {"NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
          "CapabilityBoundingSet=", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
          "SystemCallFilter=@system-service", "ReadOnlyPaths=/etc/mailer",
          "Environment=MAILER_CONFIG=/etc/mailer/mailer.toml"}) {
      EXPECT_TRUE(lines.count(directive)) << unit << " lacks " << directive;
    }
    EXPECT_TRUE(lines.count("User=mailer") || lines.count("DynamicUser=yes")) << unit;
    EXPECT_FALSE(lines.count("User=root")) << unit;
  }
}

// "6min", "30s", "1h" -> seconds (the forms the units use).
std::chrono::seconds systemd_seconds(const std::string& value) {
  std::smatch m;
  const std::regex form("([0-9]+)(s|min|h)");
  if (!std::regex_match(value, m, form)) throw std::runtime_error("unexpected time " + value);
  const long n = std::stol(m[1]);
  if (m[2] == "h") return std::chrono::hours(n);
  if (m[2] == "min") return std::chrono::minutes(n);
  return std::chrono::seconds(n);
}

std::string value_of(const std::set<std::string>& lines, const std::string& key) {
  for (const auto& l : lines) {
    if (l.rfind(key + "=", 0) == 0) return l.substr(key.size() + 1);
  }
  return "";
}

// The directives only: that the worker and serve really drain on SIGTERM is
// checked through the binary (CampaignCliTest.SigtermDrainsFlushesAndReleasesLeases,
// DispatchTest.SigtermDrainsInFlightSendsAndReleasesTheRest, ServeProcess).
TEST(DeployUnits, WorkerAndServeUnitsSetKillSignalSigtermAStopTimeoutAndRequireMigrate) {
  const auto worker = unit_lines(kUnits[0]);
  const auto serve = unit_lines(kUnits[1]);
  EXPECT_EQ(value_of(worker, "KillSignal"), "SIGTERM");
  EXPECT_EQ(value_of(serve, "KillSignal"), "SIGTERM");
  EXPECT_EQ(value_of(worker, "ExecStart"),
            "/usr/local/bin/mailer --log-format json run --worker-id %i");
  EXPECT_EQ(value_of(serve, "ExecStart"), "/usr/local/bin/mailer --log-format json serve");
  // Draining waits for SMTP transactions in flight: the stop timeout must
  // cover the default transaction timeout.
  const Config defaults;
  EXPECT_GT(systemd_seconds(value_of(worker, "TimeoutStopSec")),
            std::chrono::duration_cast<std::chrono::seconds>(defaults.sender.transaction_timeout));
  EXPECT_FALSE(value_of(serve, "TimeoutStopSec").empty());
  // Migrations run once, before the others.
  const auto migrate = unit_lines(kUnits[2]);
  EXPECT_EQ(value_of(migrate, "Type"), "oneshot");
  EXPECT_EQ(value_of(migrate, "ExecStart"), "/usr/local/bin/mailer --log-format json migrate");
  EXPECT_EQ(value_of(worker, "Requires"), "mailer-migrate.service");
  EXPECT_EQ(value_of(serve, "Requires"), "mailer-migrate.service");
}

TEST(DeployUnits, SystemdAnalyzeVerifiesThemCleanly) {
  if (!std::filesystem::exists("/usr/bin/systemd-analyze")) {
    GTEST_SKIP() << "systemd-analyze is not installed (Debian's systemd; deploy/install-deps.sh "
                    "installs it, and CI fails on this skip)";
  }
  const std::string dir = mailer::testing::make_temp_dir("units");
  std::vector<std::string> argv = {"/usr/bin/systemd-analyze", "verify", "--man=no"};
  for (const char* unit : kUnits) {
    std::string text = read(unit);
    // Point ExecStart at the built binary: verify checks that it exists.
    for (std::size_t at; (at = text.find("/usr/local/bin/mailer")) != std::string::npos;) {
      text.replace(at, std::string_view("/usr/local/bin/mailer").size(), MAILER_BINARY);
    }
    std::string name = std::filesystem::path(unit).filename();
    mailer::testing::write_file(dir + "/" + name, text);
    if (name == "mailer-worker@.service") {
      name = "mailer-worker@ip1.service";
      mailer::testing::write_file(dir + "/" + name, text);
    }
    if (name.find("@.") == std::string::npos) argv.push_back(dir + "/" + name);
  }
  auto r = run_process(argv);
  std::filesystem::remove_all(dir);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // Unknown keys and bad values are only warnings: any output is a defect.
  EXPECT_EQ(r.err, "");
}

// Reads the Containerfile's text; it builds nothing. Building the image for
// real was tried with Debian's podman: it installs and runs on the build
// machines, but `FROM debian:12` cannot be pulled there (no container
// registry is reachable, only Debian's package archive), so no test here
// builds the image.
TEST(DeployContainer, ContainerfileBuildStageRunsInstallDepsAndFinalUserIsNotRoot) {
  const std::string text = read("deploy/Containerfile");
  std::istringstream in(text);
  std::vector<std::string> from;
  std::string last_user;
  bool build_runs_install_deps = false;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("FROM ", 0) == 0) from.push_back(line);
    if (line.rfind("USER ", 0) == 0) last_user = line.substr(5);
    if (from.size() == 1 && line.rfind("RUN ", 0) == 0 &&
        line.find("deploy/install-deps.sh") != std::string::npos) {
      build_runs_install_deps = true;
    }
  }
  ASSERT_EQ(from.size(), 2u);
  EXPECT_EQ(from[0], "FROM debian:12 AS build");
  EXPECT_EQ(from[1], "FROM debian:12-slim");
  EXPECT_TRUE(build_runs_install_deps);
  EXPECT_NE(text.find("COPY --from=build /build/app/mailer /usr/local/bin/mailer"),
            std::string::npos);
  EXPECT_FALSE(last_user.empty());
  EXPECT_NE(last_user.rfind("root", 0), 0u);
  EXPECT_NE(last_user.rfind("0", 0), 0u);
}

TEST(DeployContainer, RuntimeStageInstallsAPackageForEveryLibraryTheBinaryNeeds) {
  // NEEDED libraries of the built binary -> their Debian packages.
  auto needed = run_process({"/bin/sh", "-c",
                             std::string("readelf -d '") + MAILER_BINARY +
                                 "' | sed -n 's/.*Shared library: \\[\\(.*\\)\\]/\\1/p'"});
  ASSERT_EQ(needed.exit_code, 0) << needed.err;
  auto ldd = run_process({"/usr/bin/ldd", MAILER_BINARY});
  ASSERT_EQ(ldd.exit_code, 0) << ldd.err;
  const std::string containerfile = read("deploy/Containerfile");
  // Present in every Debian image, slim included; and the sanitizer
  // runtimes of a -DMAILER_SANITIZE=ON build, which is never shipped.
  const std::set<std::string> base = {"libc6", "libstdc++6", "libgcc-s1", "libasan8", "libubsan1"};
  // One dpkg query for all of them (each query scans dpkg's database). A
  // library is asked for under its ldd path and its resolved path: dpkg
  // knows only the one the package ships (/lib or /usr/lib).
  std::vector<std::pair<std::string, std::vector<std::string>>> libraries;
  std::string query = "dpkg -S";
  std::istringstream libs(needed.out);
  for (std::string lib; std::getline(libs, lib);) {
    std::smatch m;
    const std::regex path(std::regex_replace(lib, std::regex(R"([.+])"), R"(\$&)") +
                          R"( => (\S+))");
    ASSERT_TRUE(std::regex_search(ldd.out, m, path)) << lib;
    const std::string resolved = std::filesystem::canonical(m[1].str()).string();
    libraries.push_back({lib, {m[1].str(), resolved}});
    query += " '" + m[1].str() + "' '" + resolved + "'";
  }
  auto owners = run_process({"/bin/sh", "-c", query + " 2>/dev/null; true"});
  std::map<std::string, std::string> package_of;  // path -> package
  std::istringstream lines(owners.out);
  for (std::string line; std::getline(lines, line);) {
    const std::size_t sep = line.find(": ");
    if (sep == std::string::npos) continue;
    package_of[line.substr(sep + 2)] = line.substr(0, line.find(':'));
  }
  int checked = 0;
  for (const auto& [lib, paths] : libraries) {
    std::string package;
    for (const auto& p : paths) {
      if (package_of.count(p)) package = package_of[p];
    }
    ASSERT_FALSE(package.empty()) << lib << ": no Debian package owns it";
    if (base.count(package)) continue;
    const std::string escaped = std::regex_replace(package, std::regex(R"([.+])"), R"(\$&)");
    EXPECT_TRUE(std::regex_search(containerfile, std::regex("\\s" + escaped + "\\s")))
        << lib << " comes from " << package << ", not installed by the runtime stage";
    ++checked;
  }
  EXPECT_GE(checked, 8);
}

TEST(DeployCompose, HasPostgresMigrateWorkerAndServeInOrderWithSecrets) {
  const std::string compose = read("deploy/compose.yaml");
  for (const char* service :
       {"\n  postgres:\n", "\n  migrate:\n", "\n  worker:\n", "\n  serve:\n"}) {
    EXPECT_NE(compose.find(service), std::string::npos) << service;
  }
  EXPECT_NE(compose.find("condition: service_healthy"), std::string::npos);
  EXPECT_NE(compose.find("condition: service_completed_successfully"), std::string::npos);
  EXPECT_NE(compose.find("dockerfile: deploy/Containerfile"), std::string::npos);
  EXPECT_NE(compose.find("./compose.mailer.toml:/etc/mailer/mailer.toml:ro"), std::string::npos);
  EXPECT_NE(compose.find("POSTGRES_PASSWORD_FILE: /run/secrets/db_password"), std::string::npos);
  EXPECT_NE(compose.find("MAILER_DATABASE_PASSWORD_FILE: /run/secrets/db_password"),
            std::string::npos);
  EXPECT_NE(compose.find("\nsecrets:\n"), std::string::npos);
  EXPECT_NE(compose.find("stop_signal: SIGTERM"), std::string::npos);
  // No password in the file itself.
  EXPECT_EQ(compose.find("POSTGRES_PASSWORD:"), std::string::npos);
  EXPECT_EQ(std::regex_search(compose, std::regex("postgresql://[^@\\s]*:[^@\\s]*@")), false);
}

TEST(DeployCompose, ItsConfigurationIsValidAndReadsKeysFromSecrets) {
  const Config c = parse_config(read("deploy/compose.mailer.toml"), "deploy/compose.mailer.toml");
  ASSERT_EQ(c.dkim.size(), 1u);
  EXPECT_EQ(c.dkim[0].key_file.rfind("/run/secrets/", 0), 0u);
  EXPECT_EQ(c.unsubscribe.secret_file.rfind("/run/secrets/", 0), 0u);
  EXPECT_EQ(c.http.listen, "0.0.0.0:8080");
  EXPECT_TRUE(c.database.url.empty());  // from MAILER_DATABASE_URL
}

TEST(DeployCompose, EntrypointIsValidShellThatExecsMailer) {
  const std::string script = source("deploy/container-entrypoint.sh");
  auto r = run_process({"/bin/sh", "-n", script});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(std::filesystem::status(script).permissions() & std::filesystem::perms::owner_exec,
            std::filesystem::perms::none);
  EXPECT_NE(read("deploy/container-entrypoint.sh").find("exec /usr/local/bin/mailer \"$@\""),
            std::string::npos);
}

TEST(DeployPrometheus, ScrapesTheMetricsPath) {
  const std::string text = read("deploy/prometheus.yml");
  EXPECT_NE(text.find("metrics_path: /metrics"), std::string::npos);
  EXPECT_NE(text.find("\"127.0.0.1:8081\""), std::string::npos);  // [http] admin_listen default
  EXPECT_EQ(Config{}.http.admin_listen, "127.0.0.1:8081");
}

}  // namespace
}  // namespace mailer::app
