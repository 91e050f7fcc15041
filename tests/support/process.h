// Runs a program (usually the mailer binary) as a child process with extra
// environment, optional stdin and a time limit, and captures what it printed.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace mailer::testing {

struct ProcessResult {
  int exit_code = -1;  // -1: killed by a signal or by the time limit
  std::string out;
  std::string err;
};

// argv[0] is the program path. `env` entries are added to (or replace in) the
// current environment; an empty value removes the variable.
ProcessResult run_process(const std::vector<std::string>& argv,
                          const std::map<std::string, std::string>& env = {},
                          const std::string& stdin_text = "",
                          std::chrono::seconds limit = std::chrono::seconds(60),
                          const std::string& cwd = "");

// run_process with the built mailer binary as argv[0].
ProcessResult run_mailer(const std::vector<std::string>& args,
                         const std::map<std::string, std::string>& env = {},
                         const std::string& stdin_text = "",
                         std::chrono::seconds limit = std::chrono::seconds(60));

// A fresh empty directory under the system temp dir, removed by the caller.
std::string make_temp_dir(const std::string& tag);

// Writes `content` to `path` (truncating).
void write_file(const std::string& path, const std::string& content);

}  // namespace mailer::testing
