// A throwaway PostgreSQL cluster of deploy/pg-local.sh, so that a test can
// stop and restart the server without disturbing any other suite.
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>

#include "tests/support/process.h"

namespace mailer::testing {

class ThrowawayCluster {
 public:
  ThrowawayCluster() : dir_(make_temp_dir("pg-restart")) {
    // As root the cluster runs as an unprivileged user that must reach its
    // socket folder inside this one.
    std::filesystem::permissions(dir_, std::filesystem::perms(0755));
    auto r = control("start");
    if (r.exit_code != 0) throw std::runtime_error("pg-local start failed: " + r.err);
    url_ = r.out.substr(0, r.out.find('\n'));
  }
  ~ThrowawayCluster() { control("destroy"); }
  ThrowawayCluster(const ThrowawayCluster&) = delete;
  ThrowawayCluster& operator=(const ThrowawayCluster&) = delete;

  ProcessResult control(const std::string& verb) {
    return run_process({"/bin/bash", std::string(MAILER_SOURCE_DIR) + "/deploy/pg-local.sh", verb},
                       {{"MAILER_PG_DIR", dir_}}, "", std::chrono::seconds(120));
  }
  const std::string& url() const { return url_; }

 private:
  std::string dir_;
  std::string url_;
};

}  // namespace mailer::testing
