// DnsClient: asks DNS for TXT, MX, A, AAAA and PTR records with c-ares, many
// questions at once, each with its own timeout, and sorts every answer into
// records, "no such record" (NODATA), "no such name" (NXDOMAIN) or an error
// (timeout, SERVFAIL, REFUSED, malformed reply). Used by `mailer doctor`.
//
// Threading: one DnsClient belongs to one thread; resolve() blocks that
// thread while it drives c-ares with poll().
#pragma once

#include <ares.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mailer::app {

// Query types by their DNS code.
enum class DnsType : int { kA = 1, kPtr = 12, kMx = 15, kTxt = 16, kAaaa = 28 };
std::string_view to_string(DnsType type);

enum class DnsStatus {
  kOk,        // at least one record of the asked type
  kNoData,    // the name exists without records of that type
  kNxDomain,  // the name does not exist
  kError      // no usable answer: timeout, SERVFAIL, REFUSED, malformed
};

struct MxRecord {
  std::uint16_t preference = 0;
  // Host name without the trailing dot; "" for the root (null MX, RFC 7505).
  std::string exchange;
};

struct DnsAnswer {
  DnsStatus status = DnsStatus::kError;
  // A/AAAA: addresses in text form; TXT: one entry per record with its
  // character-strings joined (RFC 7208 3.3); PTR: names without trailing
  // dot; MX: the exchanges (see `mx` for preferences).
  std::vector<std::string> records;
  std::vector<MxRecord> mx;
  // What went wrong, for the report; empty unless status is kError.
  std::string error;

  bool ok() const { return status == DnsStatus::kOk; }
  // NODATA or NXDOMAIN: DNS answered that there is nothing.
  bool empty() const { return status == DnsStatus::kNoData || status == DnsStatus::kNxDomain; }
};

struct DnsQuestion {
  std::string name;
  DnsType type = DnsType::kA;
};

struct DnsClientOptions {
  // "host:port" (or "host" for port 53) of the server to ask; empty: the
  // resolvers of /etc/resolv.conf.
  std::string server;
  // Per-try timeout and tries per question: an unanswered question gives
  // up after about timeout * tries.
  std::chrono::milliseconds timeout{2000};
  int tries = 2;
};

class DnsClient {
 public:
  // Throws std::invalid_argument for a malformed server and
  // std::runtime_error when c-ares cannot start.
  explicit DnsClient(DnsClientOptions options = {});
  ~DnsClient();
  DnsClient(const DnsClient&) = delete;
  DnsClient& operator=(const DnsClient&) = delete;

  // Asks every question at once; returns one answer per question, in order.
  // Blocks until all are answered or have timed out.
  std::vector<DnsAnswer> resolve(const std::vector<DnsQuestion>& questions);
  // One question.
  DnsAnswer resolve(const std::string& name, DnsType type);

 private:
  struct Pending;
  static void on_socket_state(void* data, ares_socket_t fd, int readable, int writable);
  static void on_reply(void* arg, int status, int timeouts, unsigned char* abuf, int alen);
  void pump();

  ares_channel channel_ = nullptr;
  std::map<ares_socket_t, std::pair<bool, bool>> sockets_;
  std::size_t in_flight_ = 0;
};

// Parses a successful reply of `type` into `answer` (exposed for tests).
void parse_dns_reply(DnsType type, const unsigned char* abuf, int alen, DnsAnswer& answer);

}  // namespace mailer::app
