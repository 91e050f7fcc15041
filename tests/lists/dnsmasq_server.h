// A real DNS server for tests: dnsmasq on a free loopback UDP port, serving
// only the records given on its command line (no upstream, no /etc/hosts),
// stopped when the object goes away.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace mailer::lists {

class DnsmasqServer {
 public:
  // `records`: dnsmasq options such as "--mx-host=a.test,mail.a.test,10".
  explicit DnsmasqServer(const std::vector<std::string>& records) {
    // The port is free when picked but may be taken (UDP or TCP: dnsmasq binds
    // both) before dnsmasq binds it, by a parallel test's connection; dnsmasq
    // then exits at once, and another port is tried.
    std::string last_error;
    for (int attempt = 0; attempt < 8; ++attempt) {
      port_ = free_port();
      launch(records);
      last_error = wait_until_answering();
      if (last_error.empty()) return;
      stop();
    }
    throw std::runtime_error(last_error);
  }
  ~DnsmasqServer() { stop(); }
  DnsmasqServer(const DnsmasqServer&) = delete;
  DnsmasqServer& operator=(const DnsmasqServer&) = delete;

  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  void launch(const std::vector<std::string>& records) {
    std::vector<std::string> args = {"dnsmasq",
                                     "--no-daemon",
                                     "--port=" + std::to_string(port_),
                                     "--listen-address=127.0.0.1",
                                     "--bind-interfaces",
                                     "--no-resolv",
                                     "--no-hosts",
                                     "--pid-file=",
                                     "--log-facility=/dev/null",
                                     "--local-ttl=300"};
    // As root, dnsmasq would switch to user "nobody"; stay as we are.
    if (::geteuid() == 0) args.push_back("--user=root");
    args.insert(args.end(), records.begin(), records.end());
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, 1);
      ::dup2(null, 2);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execvp("dnsmasq", argv.data());
      ::_exit(127);
    }
  }

  // A port free for both UDP and TCP on 127.0.0.1 at the time of the call.
  static int free_port() {
    for (;;) {
      int udp = ::socket(AF_INET, SOCK_DGRAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      ::bind(udp, reinterpret_cast<sockaddr*>(&a), sizeof a);
      socklen_t len = sizeof a;
      ::getsockname(udp, reinterpret_cast<sockaddr*>(&a), &len);
      int tcp = ::socket(AF_INET, SOCK_STREAM, 0);
      const bool tcp_free = ::bind(tcp, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
      ::close(tcp);
      ::close(udp);
      if (tcp_free) return ntohs(a.sin_port);
    }
  }

  // Sends a query for "probe.test" until any reply comes back (at most 20 s,
  // for loaded sanitizer runs). Returns an error text, empty once answering.
  std::string wait_until_answering() {
    const unsigned char query[] = {0,   1,   1,   0,   0, 1,   0,   0,   0,   0, 0, 0, 5, 'p',
                                   'r', 'o', 'b', 'e', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1};
    int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    timeval tv{0, 100'000};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port_));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    std::string error = "dnsmasq did not start answering on " + address();
    while (std::chrono::steady_clock::now() < deadline) {
      ::sendto(fd, query, sizeof query, 0, reinterpret_cast<sockaddr*>(&a), sizeof a);
      unsigned char reply[512];
      if (::recv(fd, reply, sizeof reply, 0) > 0) {
        error.clear();
        break;
      }
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        error = "dnsmasq exited before answering on " + address() +
                (WIFEXITED(status) ? " (exit " + std::to_string(WEXITSTATUS(status)) + ")" : "");
        break;
      }
    }
    ::close(fd);
    return error;
  }

  int port_ = 0;
  pid_t pid_ = -1;
};

// The zone every MX test uses: one domain per DNS situation.
inline std::vector<std::string> mx_test_zone() {
  return {"--local=/test/",
          "--mx-host=good.test,mail.good.test,10",
          "--mx-host=good.test,backup.good.test,20",
          "--host-record=mail.good.test,127.0.0.1",
          "--mx-host=corp.test,aspmx.l.google.com,1",
          "--dns-rr=nullmx.test,15,0000:00",
          "--host-record=aonly.test,127.0.0.2",
          "--host-record=v6only.test,::1",
          "--txt-record=empty.test,nothing here"};
}

}  // namespace mailer::lists
