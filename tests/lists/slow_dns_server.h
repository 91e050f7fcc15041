// A DNS server on loopback that holds every query for a fixed delay before
// answering NXDOMAIN, and remembers how many queries it held at once: the
// peer for checking how many lookups a client keeps in flight. It binds port
// 0 itself, so no other process can take its port between pick and bind.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace mailer::lists {

class SlowDnsServer {
 public:
  explicit SlowDnsServer(std::chrono::milliseconds delay) : delay_(delay) {
    fd_ = ::socket(AF_INET, SOCK_DGRAM, 0);
    if (fd_ < 0) throw std::runtime_error("socket failed");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ::close(fd_);
      throw std::runtime_error("bind failed");
    }
    port_ = ntohs(a.sin_port);
    timeval tv{0, 5'000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    thread_ = std::thread([this] { loop(); });
  }
  ~SlowDnsServer() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  SlowDnsServer(const SlowDnsServer&) = delete;
  SlowDnsServer& operator=(const SlowDnsServer&) = delete;

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  std::size_t most_in_flight() const {
    std::lock_guard lock(mutex_);
    return most_in_flight_;
  }
  // Distinct question names asked, in order of arrival.
  std::vector<std::string> names() const {
    std::lock_guard lock(mutex_);
    return names_;
  }

 private:
  struct Held {
    std::chrono::steady_clock::time_point due;
    std::vector<std::uint8_t> reply;
    sockaddr_in to;
  };

  void loop() {
    std::deque<Held> held;
    while (!stop_) {
      std::uint8_t buf[512];
      sockaddr_in from{};
      socklen_t len = sizeof from;
      const ssize_t n =
          ::recvfrom(fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n > 12) answer_later(buf, static_cast<std::size_t>(n), from, held);
      const auto now = std::chrono::steady_clock::now();
      while (!held.empty() && held.front().due <= now) {
        const Held& h = held.front();
        ::sendto(fd_, h.reply.data(), h.reply.size(), 0, reinterpret_cast<const sockaddr*>(&h.to),
                 sizeof h.to);
        held.pop_front();
      }
    }
  }

  // The reply: the query's header and first question, QR set, NXDOMAIN, no
  // other sections (an EDNS record the query carried is dropped).
  void answer_later(const std::uint8_t* q, std::size_t n, const sockaddr_in& from,
                    std::deque<Held>& held) {
    std::size_t at = 12;
    std::string name;
    while (at < n && q[at] != 0) {
      const std::size_t label = q[at];
      if (label > 63 || at + 1 + label > n) return;
      if (!name.empty()) name += '.';
      name.append(reinterpret_cast<const char*>(q + at + 1), label);
      at += 1 + label;
    }
    at += 1 + 4;  // the root label, QTYPE and QCLASS
    if (at > n) return;
    std::vector<std::uint8_t> reply(q, q + at);
    reply[2] = static_cast<std::uint8_t>(0x80 | (q[2] & 0x01));  // QR, RD copied
    reply[3] = 0x80 | 3;                                         // RA, NXDOMAIN
    reply[4] = 0;
    reply[5] = 1;
    for (std::size_t i = 6; i < 12; ++i) reply[i] = 0;
    held.push_back({std::chrono::steady_clock::now() + delay_, std::move(reply), from});
    std::lock_guard lock(mutex_);
    most_in_flight_ = std::max(most_in_flight_, held.size());
    if (std::find(names_.begin(), names_.end(), name) == names_.end()) names_.push_back(name);
  }

  std::chrono::milliseconds delay_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  mutable std::mutex mutex_;
  std::size_t most_in_flight_ = 0;
  std::vector<std::string> names_;
  std::thread thread_;
};

}  // namespace mailer::lists
