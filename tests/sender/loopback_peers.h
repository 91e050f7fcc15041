// Real peers on loopback for the transport, sink and resolver tests: a free
// port, a child process (Postfix's smtp-sink, dnsmasq) killed when the test
// ends, and a wait until it listens.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace mailer::testing {

// A TCP port on 127.0.0.1 nobody listens on right now.
inline unsigned short free_tcp_port() {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor a(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

// A port free for both UDP and TCP (DNS servers bind both).
inline unsigned short free_udp_tcp_port() {
  for (int attempt = 0; attempt < 50; ++attempt) {
    boost::asio::io_context io;
    boost::asio::ip::udp::socket u(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
    unsigned short port = u.local_endpoint().port();
    boost::system::error_code ec;
    boost::asio::ip::tcp::acceptor a(io);
    a.open(boost::asio::ip::tcp::v4(), ec);
    a.bind({boost::asio::ip::make_address("127.0.0.1"), port}, ec);
    if (!ec) return port;
  }
  throw std::runtime_error("free_udp_tcp_port: none found");
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

 private:
  pid_t pid_ = -1;
};

// Postfix's smtp-sink on a free loopback port, with extra options (e.g.
// {"-r", "MAIL"}).
class PostfixSmtpSink {
 public:
  explicit PostfixSmtpSink(std::vector<std::string> options = {})
      : port_(free_tcp_port()), process_(argv(port_, std::move(options))) {
    if (!wait_listening(port_, std::chrono::seconds(5))) {
      throw std::runtime_error("smtp-sink did not start on port " + std::to_string(port_));
    }
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
  unsigned short port_;
  ChildProcess process_;
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
