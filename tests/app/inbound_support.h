// Pieces of the `mailer inbound` suites: a blocking SMTP client over a POSIX
// socket with a receive deadline, the binary started in the background with
// its port read from its log, and the messages `mailer sink` stored.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/app/queue_worker_process.h"

namespace mailer::testing {

// One SMTP reply: its code (0 when the connection closed or nothing came
// within the deadline) and its text (all lines).
struct SmtpReply {
  int code = 0;
  std::string text;
};

class SmtpTestClient {
 public:
  // Connects to 127.0.0.1:port; throws when it cannot.
  explicit SmtpTestClient(unsigned short port,
                          std::chrono::milliseconds deadline = std::chrono::seconds(20)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) throw std::runtime_error("socket failed");
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(deadline.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((deadline.count() % 1000) * 1000);
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd_);
      fd_ = -1;
      throw std::runtime_error("connect to 127.0.0.1:" + std::to_string(port) + " failed");
    }
  }
  ~SmtpTestClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  SmtpTestClient(const SmtpTestClient&) = delete;
  SmtpTestClient& operator=(const SmtpTestClient&) = delete;

  void write(const std::string& bytes) {
    std::size_t sent = 0;
    while (sent < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return;
      sent += static_cast<std::size_t>(n);
    }
  }

  // The next complete reply.
  SmtpReply reply() {
    SmtpReply r;
    for (;;) {
      std::string line;
      if (!read_line(line)) return SmtpReply{0, r.text};
      r.text += line + "\n";
      if (line.size() < 4 || line[3] != '-') {
        r.code = line.size() >= 3 ? std::atoi(line.substr(0, 3).c_str()) : 0;
        return r;
      }
    }
  }

  SmtpReply command(const std::string& line) {
    write(line + "\r\n");
    return reply();
  }

  // MAIL, RCPT (each), DATA and the dot-stuffed message; the first reply
  // that is not a success, or the reply to the final dot.
  SmtpReply send_message(const std::string& from, const std::vector<std::string>& rcpts,
                         const std::string& message) {
    SmtpReply r = command("MAIL FROM:<" + from + ">");
    if (r.code != 250) return r;
    for (const auto& rcpt : rcpts) {
      r = command("RCPT TO:<" + rcpt + ">");
      if (r.code != 250) return r;
    }
    r = command("DATA");
    if (r.code != 354) return r;
    write(dot_stuff(message) + ".\r\n");
    return reply();
  }

  // True when the server closed the connection (EOF within the deadline).
  bool closed() {
    char c = 0;
    return buffer_.empty() && ::recv(fd_, &c, 1, 0) == 0;
  }

  static std::string dot_stuff(const std::string& message) {
    std::string out;
    std::size_t pos = 0;
    while (pos < message.size()) {
      std::size_t eol = message.find('\n', pos);
      std::string line = message.substr(pos, eol == std::string::npos ? eol : eol - pos);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.empty() && line.front() == '.') out += '.';
      out += line + "\r\n";
      if (eol == std::string::npos) break;
      pos = eol + 1;
    }
    return out;
  }

 private:
  bool read_line(std::string& line) {
    for (;;) {
      const std::size_t lf = buffer_.find('\n');
      if (lf != std::string::npos) {
        line = buffer_.substr(0, lf);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        buffer_.erase(0, lf + 1);
        return true;
      }
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return false;
      buffer_.append(buf, static_cast<std::size_t>(n));
    }
  }

  int fd_ = -1;
  std::string buffer_;
};

// A `mailer` process whose log names the port it listens on.
class ListeningProcess {
 public:
  ListeningProcess(const std::vector<std::string>& args, const std::string& database_url,
                   const std::string& dir, const std::string& name)
      : process_(args, {{"MAILER_DATABASE_URL", database_url}}, dir + "/" + name + ".out",
                 dir + "/" + name + ".err") {}

  // Waits for "listening on 127.0.0.1:PORT" in the log; nullopt when the
  // process did not get there within `limit`.
  std::optional<unsigned short> wait_listening(
      std::chrono::seconds limit = std::chrono::seconds(20)) {
    const std::regex line(R"(listening on 127\.0\.0\.1:(\d+))");
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      std::smatch m;
      const std::string err = process_.err();
      if (std::regex_search(err, m, line)) return static_cast<unsigned short>(std::stoi(m[1]));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return std::nullopt;
  }

  void signal(int sig) { process_.signal(sig); }
  int wait(std::chrono::seconds limit) { return process_.wait(limit); }
  std::string log() const { return process_.err(); }

 private:
  WorkerProcess process_;
};

// What one message the sink stored says about its send.
struct StoredSend {
  std::string recipient;    // Delivered-To
  std::string return_path;  // the VERP address, without brackets
  std::string message_id;   // with brackets
  std::string list_unsubscribe;
  std::string headers;  // the message's header block, CRLF lines
};

// The value of top-level header `name` in `text` (first occurrence, unfolded).
inline std::string header_value(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string line;
  std::string value;
  bool found = false;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) break;
    if (found) {
      if (line.front() == ' ' || line.front() == '\t') {
        value += line;
        continue;
      }
      break;
    }
    if (line.size() > name.size() && line[name.size()] == ':' &&
        strncasecmp(line.c_str(), name.c_str(), name.size()) == 0) {
      value = line.substr(name.size() + 1);
      found = true;
    }
  }
  const std::size_t b = value.find_first_not_of(" \t");
  return b == std::string::npos ? "" : value.substr(b);
}

// Every message in maildir `dir`/new.
inline std::vector<StoredSend> stored_sends(const std::string& dir) {
  std::vector<StoredSend> out;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/new")) {
    const std::string text = WorkerProcess::slurp(e.path().string());
    StoredSend s;
    s.recipient = header_value(text, "Delivered-To");
    s.return_path = header_value(text, "Return-Path");
    if (s.return_path.size() >= 2)
      s.return_path = s.return_path.substr(1, s.return_path.size() - 2);
    s.message_id = header_value(text, "Message-ID");
    s.list_unsubscribe = header_value(text, "List-Unsubscribe");
    const std::size_t end = text.find("\r\n\r\n");
    s.headers = text.substr(0, end == std::string::npos ? text.size() : end + 2);
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace mailer::testing
