// A `mailer` worker process started in the background, for the tests that
// kill it, signal it, or run two at once. Output goes to files in `dir`.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace mailer::testing {

class WorkerProcess {
 public:
  WorkerProcess(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
                const std::string& out_file, const std::string& err_file)
      : out_file_(out_file), err_file_(err_file) {
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      const int out = ::open(out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      const int err = ::open(err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(out, 1);
      dup2(err, 2);
      for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
      std::vector<char*> argv;
      std::string binary = MAILER_BINARY;
      argv.push_back(binary.data());
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
  }
  ~WorkerProcess() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  void signal(int sig) { kill(pid_, sig); }

  // SIGSTOP; returns once the process is stopped, false when it exited
  // instead (its exit is then kept for wait()).
  bool pause() {
    if (reaped_) return false;
    kill(pid_, SIGSTOP);
    int status = 0;
    if (waitpid(pid_, &status, WUNTRACED) != pid_) return false;
    if (WIFSTOPPED(status)) return true;
    reaped_ = true;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return false;
  }
  void resume() { kill(pid_, SIGCONT); }

  // Exit code, or -1 when killed by a signal or still running at `limit`
  // (then it is killed).
  int wait(std::chrono::seconds limit) {
    if (reaped_) return exit_code_;
    const auto deadline = std::chrono::steady_clock::now() + limit;
    int status = 0;
    for (;;) {
      const pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) break;
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        reaped_ = true;
        return -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    reaped_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  std::string err() const { return slurp(err_file_); }
  std::string out() const { return slurp(out_file_); }

  static std::string slurp(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int exit_code_ = -1;
  std::string out_file_, err_file_;
};

// Delivery id -> how many times the record files list it.
inline std::map<long long, int> recorded_sends(const std::vector<std::string>& files) {
  std::map<long long, int> sends;
  for (const auto& f : files) {
    std::ifstream in(f);
    long long id = 0, campaign = 0;
    std::string email;
    while (in >> id >> campaign >> email) ++sends[id];
  }
  return sends;
}

}  // namespace mailer::testing
