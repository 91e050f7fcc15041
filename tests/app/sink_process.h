// `mailer sink --maildir DIR` as a separate process on a free loopback port,
// for the reliability tests over real SMTP, and what arrived in its maildir
// counted per delivery (from the Message-ID mailer sets:
// <DELIVERY.CAMPAIGN@domain>).
#pragma once

#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>

#include "tests/app/queue_worker_process.h"

namespace mailer::testing {

class SinkProcess {
 public:
  // Listens on 127.0.0.1 port 0 (the sink picks a free one and prints it).
  SinkProcess(const std::string& maildir, const std::string& log_prefix) : maildir_(maildir) {
    process_ = std::make_unique<WorkerProcess>(
        std::vector<std::string>{"sink", "--listen", "127.0.0.1:0", "--maildir", maildir,
                                 "--report-every", "0ms"},
        std::map<std::string, std::string>{}, log_prefix + ".out", log_prefix + ".err");
    const std::regex listening("listening on 127\\.0\\.0\\.1:([0-9]+)");
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    std::smatch m;
    std::string err;  // outlives the loop: `m` points into it
    for (;;) {
      err = process_->err();
      if (std::regex_search(err, m, listening)) break;
      if (std::chrono::steady_clock::now() > until) {
        throw std::runtime_error("mailer sink did not start listening: " + err);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    port_ = std::stoi(m[1]);
  }
  ~SinkProcess() {
    process_->signal(SIGTERM);
    process_->wait(std::chrono::seconds(10));
  }
  SinkProcess(const SinkProcess&) = delete;
  SinkProcess& operator=(const SinkProcess&) = delete;

  std::string route() const { return "smtp://127.0.0.1:" + std::to_string(port_); }
  const std::string& maildir() const { return maildir_; }

 private:
  std::string maildir_;
  std::unique_ptr<WorkerProcess> process_;
  int port_ = 0;
};

// Messages in the maildirs' new/ (complete deliveries; tmp/ holds those being
// written).
inline std::size_t maildir_arrivals(const std::vector<std::string>& maildirs) {
  std::size_t n = 0;
  for (const auto& dir : maildirs) {
    std::error_code ec;
    for (std::filesystem::directory_iterator it(dir + "/new", ec), end; !ec && it != end;
         it.increment(ec)) {
      ++n;
    }
  }
  return n;
}

// Delivery id -> how many messages in the maildirs' new/ carry it in their
// Message-ID. Throws when a message has none (it would go uncounted).
inline std::map<long long, int> maildir_sends(const std::vector<std::string>& maildirs) {
  std::map<long long, int> sends;
  const std::regex message_id("^Message-ID: *<([0-9]+)\\.[0-9]+@", std::regex::icase);
  for (const auto& dir : maildirs) {
    for (const auto& e : std::filesystem::directory_iterator(dir + "/new")) {
      std::ifstream in(e.path(), std::ios::binary);
      std::string line;
      bool found = false;
      // The header block only: it ends at the first empty line.
      while (!found && std::getline(in, line) && line != "\r" && !line.empty()) {
        std::smatch m;
        if (std::regex_search(line, m, message_id)) {
          ++sends[std::stoll(m[1])];
          found = true;
        }
      }
      if (!found) throw std::runtime_error("no Message-ID in " + e.path().string());
    }
  }
  return sends;
}

}  // namespace mailer::testing
