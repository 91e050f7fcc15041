// Real peers on loopback for the transport, sink and resolver tests: a free
// port, a child process (Postfix's smtp-sink, dnsmasq) killed when the test
// ends, and a wait until it listens, with another port tried on a clash.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace mailer::testing {

// A TCP port on 127.0.0.1 nobody listens on right now. Bound and released:
// another process may take it before the caller does, so a peer started on
// it must check that it really listens there (see PostfixSmtpSink), and a
// test that wants a refused connection must tolerate the rare clash.
inline unsigned short free_tcp_port() {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor a(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

// True once something accepts TCP connections on 127.0.0.1:port.
inline bool wait_listening(unsigned short port, std::chrono::milliseconds limit) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    boost::asio::io_context io;
    boost::asio::ip::tcp::socket s(io);
    boost::system::error_code ec;
    s.connect({boost::asio::ip::make_address("127.0.0.1"), port}, ec);
    if (!ec) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// A child process, killed (SIGTERM, then SIGKILL) and reaped on destruction.
class ChildProcess {
 public:
  explicit ChildProcess(std::vector<std::string> argv) {
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
  }
  ~ChildProcess() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 100; ++i) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  pid_t pid() const { return pid_; }
  // False once the process has exited (it is reaped then).
  bool alive() {
    if (pid_ <= 0) return false;
    if (::waitpid(pid_, nullptr, WNOHANG) != pid_) return true;
    pid_ = -1;
    return false;
  }

 private:
  pid_t pid_ = -1;
};

// True once a connection to 127.0.0.1:port is greeted with an SMTP 220 line
// within `limit`: the peer listening there is an SMTP server.
inline bool greets_with_220(unsigned short port, std::chrono::milliseconds limit) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket s(io);
  boost::system::error_code ec;
  s.connect({boost::asio::ip::make_address("127.0.0.1"), port}, ec);
  if (ec) return false;
  s.non_blocking(true);
  std::string got;
  char buf[512];
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until && got.find('\n') == std::string::npos) {
    const std::size_t n = s.read_some(boost::asio::buffer(buf), ec);
    if (ec == boost::asio::error::would_block) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      continue;
    }
    if (ec) break;
    got.append(buf, n);
  }
  return got.rfind("220", 0) == 0;
}

// Postfix's smtp-sink on a free loopback port, with extra options (e.g.
// {"-r", "MAIL"}). The port is free when picked but may be taken before
// smtp-sink binds it (by a parallel test); smtp-sink then exits, and another
// port is tried, as DnsmasqServer does. It counts as started only while it
// is alive and something greets with 220 on its port.
class PostfixSmtpSink {
 public:
  explicit PostfixSmtpSink(std::vector<std::string> options = {}) {
    for (int attempt = 0; attempt < 8; ++attempt) {
      port_ = free_tcp_port();
      process_ = std::make_unique<ChildProcess>(argv(port_, options));
      if (wait_listening(port_, std::chrono::seconds(5)) &&
          greets_with_220(port_, std::chrono::seconds(5)) && process_->alive()) {
        return;
      }
      process_.reset();
    }
    throw std::runtime_error("smtp-sink did not start on a free port in 8 attempts");
  }
  unsigned short port() const { return port_; }
  std::string route() const { return "smtp://127.0.0.1:" + std::to_string(port_); }

 private:
  static std::vector<std::string> argv(unsigned short port, std::vector<std::string> options) {
    std::vector<std::string> a{"/usr/sbin/smtp-sink"};
    if (::geteuid() == 0) a.insert(a.end(), {"-u", "nobody"});
    a.insert(a.end(), options.begin(), options.end());
    a.push_back("127.0.0.1:" + std::to_string(port));
    a.push_back("100");
    return a;
  }
  unsigned short port_ = 0;
  std::unique_ptr<ChildProcess> process_;
};

// Runs `io` until `done()` holds or `limit` passes; returns done().
inline bool run_until(boost::asio::io_context& io, const std::function<bool()>& done,
                      std::chrono::milliseconds limit) {
  auto until = std::chrono::steady_clock::now() + limit;
  io.restart();
  while (!done() && std::chrono::steady_clock::now() < until) {
    io.run_for(std::chrono::milliseconds(10));
    io.restart();
  }
  return done();
}

}  // namespace mailer::testing
