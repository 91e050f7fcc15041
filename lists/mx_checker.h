// MxChecker: can a domain receive mail? Asks DNS for its MX records with
// c-ares, many domains at once with a bound on lookups in flight, and sorts
// the answer into the states of the `domains` table:
//   ok          MX records name at least one host
//   a_fallback  no MX, but an A or AAAA record: the domain is its own mail
//               host (RFC 5321 section 5.1 implicit MX)
//   null_mx     "MX 0 ." alone: the domain accepts no mail (RFC 7505)
//   nxdomain    the domain does not exist
//   no_address  the domain exists with neither MX nor address records
//   error       timeout, SERVFAIL, REFUSED: unknown, try again later
// Each answer carries the smallest TTL of the records it used (0 when DNS
// gave none), for the caller's cache.
//
// Threading: one MxChecker belongs to one thread; check() blocks that thread
// while it drives c-ares with poll().
#pragma once

#include <ares.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mailer::lists {

enum class MxStatus { kOk, kAFallback, kNullMx, kNxDomain, kNoAddress, kError };

// The `domains.mx_status` spelling: "ok", "a_fallback", "null_mx", ...
std::string_view to_string(MxStatus status);
// Inverse of to_string; kError for anything unknown.
MxStatus mx_status_from_string(std::string_view text);

struct MxAnswer {
  MxStatus status = MxStatus::kError;
  // Mail hosts by preference (no trailing dot); the domain itself for
  // a_fallback; empty otherwise.
  std::vector<std::string> hosts;
  std::chrono::seconds ttl{0};
  // What went wrong, for logs and rejects files; empty on success.
  std::string error;

  // The domain can never receive mail (as far as DNS says now).
  bool undeliverable() const {
    return status == MxStatus::kNullMx || status == MxStatus::kNxDomain ||
           status == MxStatus::kNoAddress;
  }
};

struct MxCheckerOptions {
  // "host:port" (or "host" for port 53) of the DNS server to ask; empty:
  // the system resolvers of /etc/resolv.conf.
  std::string dns_server;
  // Lookups in flight at once. Enough to hide DNS latency on a million-row
  // import without flooding a resolver.
  std::size_t concurrency = 64;
  // Per-try timeout and tries per server.
  std::chrono::milliseconds timeout{2000};
  int tries = 2;
};

class MxChecker {
 public:
  // Throws std::runtime_error when c-ares cannot start or dns_server is
  // malformed.
  explicit MxChecker(MxCheckerOptions options = {});
  ~MxChecker();
  MxChecker(const MxChecker&) = delete;
  MxChecker& operator=(const MxChecker&) = delete;

  // Looks up every domain (lower-case A-labels) and returns one answer per
  // domain. Blocks until all are answered or timed out.
  std::map<std::string, MxAnswer> check(const std::vector<std::string>& domains);

 private:
  struct Lookup;
  static void on_socket_state(void* data, ares_socket_t fd, int readable, int writable);
  static void on_mx(void* arg, int status, int timeouts, unsigned char* abuf, int alen);
  static void on_address(void* arg, int status, int timeouts, unsigned char* abuf, int alen);
  void finish(Lookup* lookup, MxAnswer answer);
  void pump();

  MxCheckerOptions options_;
  ares_channel channel_ = nullptr;
  std::map<ares_socket_t, std::pair<bool, bool>> sockets_;
  std::map<std::string, MxAnswer>* results_ = nullptr;
  std::size_t in_flight_ = 0;
};

}  // namespace mailer::lists
