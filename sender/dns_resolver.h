// DnsResolver: the one DNS client of mailer, on c-ares driven by the caller's
// Boost.Asio io_context. It answers
//   - single questions (A, AAAA, MX, TXT, PTR), each sorted into records,
//     "no such record" (NODATA), "no such name" (NXDOMAIN) or an error;
//   - the mail hosts of a domain (RFC 5321 section 5.1): MX records by
//     preference, each with its addresses; without MX, the domain's own A or
//     AAAA records (implicit MX); a null MX (RFC 7505, "MX 0 .") means the
//     domain accepts no mail.
// Answers are cached per (name, type) for as long as their TTL says (capped),
// NODATA and NXDOMAIN for the SOA's negative TTL (RFC 2308, capped); errors
// are never cached. Concurrent questions for one name and type share one query.
//
// Where it lives: sender/ delivers to MX hosts and is the lowest floor that
// does I/O, so the resolver is here. app/ (`mailer doctor`) uses it directly;
// lists/ may not include sender/, so it declares the lookup its MX check
// needs (lists/mx_lookup.h) and app/ implements that with this resolver.
// Callers keep their policy: which hosts to try, what counts as
// undeliverable, how many lookups run at once, what a check concludes.
//
// Threading: DnsResolver is not thread-safe; construct, use and destroy it on
// the io_context's thread. Callbacks run on that thread, never from inside
// the call that asked. BlockingDnsResolver owns its io_context and blocks the
// calling thread; one thread at a time.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mailer::sender {

// Query types by their DNS code (RFC 1035, RFC 3596).
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
  // Host name without the trailing dot, lower case; "" for the root (null
  // MX, RFC 7505).
  std::string exchange;
};

struct DnsAnswer {
  DnsStatus status = DnsStatus::kError;
  // A/AAAA: addresses in text form; TXT: one entry per record with its
  // character-strings joined (RFC 7208 3.3); PTR: names without trailing
  // dot; MX: the exchanges (see `mx` for preferences).
  std::vector<std::string> records;
  std::vector<MxRecord> mx;
  // How long the answer may be kept: the smallest TTL of its records; for
  // NODATA and NXDOMAIN the negative TTL of the zone's SOA; 0 when DNS gave
  // none or on error.
  std::chrono::seconds ttl{0};
  // What went wrong, for reports and logs; empty unless status is kError.
  std::string error;

  bool ok() const { return status == DnsStatus::kOk; }
  // NODATA or NXDOMAIN: DNS answered that there is nothing.
  bool empty() const { return status == DnsStatus::kNoData || status == DnsStatus::kNxDomain; }
};

struct DnsQuestion {
  std::string name;
  DnsType type = DnsType::kA;
};

struct MxHost {
  std::string name;  // without trailing dot, lower case
  unsigned short preference = 0;
  // IPv4 addresses, then IPv6, in text form; empty when the host has none or
  // its addresses were not asked for (the host is kept so the caller can
  // report it).
  std::vector<std::string> addresses;
};

enum class MxStatus {
  kOk,                // `hosts` holds at least one host
  kNullMx,            // RFC 7505: the domain says it accepts no mail
  kNoSuchDomain,      // NXDOMAIN
  kNoMailHost,        // the domain exists but has neither MX nor address records
  kTemporaryFailure,  // timeout, SERVFAIL, refused: try again later
};

std::string_view to_string(MxStatus status);

struct MxResult {
  MxStatus status = MxStatus::kTemporaryFailure;
  // Sorted by preference, then name.
  std::vector<MxHost> hosts;
  // No MX records: the only host is the domain itself (address fallback).
  bool implicit = false;
  // The smallest TTL of the records the result rests on (the MX records, or
  // the domain's address records for an implicit MX); 0 on a temporary
  // failure.
  std::chrono::seconds ttl{0};
  // What went wrong, for logs and rejects files; empty on kOk.
  std::string error;

  // Undeliverable for good: null MX, NXDOMAIN or no mail host at all.
  bool permanent_failure() const {
    return status == MxStatus::kNullMx || status == MxStatus::kNoSuchDomain ||
           status == MxStatus::kNoMailHost;
  }
};

// Whether resolve_mx() also looks up the addresses of the MX hosts (an
// implicit MX always has its addresses: they decide that it exists).
enum class HostAddresses { kLookUp, kSkip };

struct DnsResolverOptions {
  // "host:port" (or "host", port 53) of the DNS server to ask; empty means the
  // system's resolvers from /etc/resolv.conf.
  std::string dns_server;
  // Per-try timeout and number of tries per server: an unanswered question
  // gives up after about timeout * tries (c-ares's own defaults are 5 s and
  // 4 tries, too slow to notice a dead resolver during a send).
  std::chrono::milliseconds timeout{std::chrono::seconds(2)};
  int tries = 2;
  // Longest time a positive answer stays cached, whatever its TTL: a zone's
  // week-long TTL must not pin a host that has since moved.
  std::chrono::seconds max_cache_ttl{std::chrono::hours(1)};
  // Longest time NODATA and NXDOMAIN stay cached, and how long when the
  // answer carries no SOA to say.
  std::chrono::seconds negative_cache_for{std::chrono::minutes(1)};
  // Cached answers kept at most; past it, expired answers are dropped, then
  // all if that is not enough. About 200 bytes each.
  std::size_t max_cache_entries = 100'000;
  // The cache's clock; empty means std::chrono::steady_clock::now (tests
  // inject one to expire answers without waiting).
  std::function<std::chrono::steady_clock::time_point()> clock;
};

class DnsResolver {
 public:
  using AnswerCallback = std::function<void(const DnsAnswer&)>;
  using MxCallback = std::function<void(const MxResult&)>;

  // Throws std::invalid_argument when the DNS server is not "host:port" and
  // std::runtime_error when c-ares cannot start.
  DnsResolver(boost::asio::io_context& io, DnsResolverOptions options = {});
  // Pending lookups are abandoned without calling their callbacks.
  ~DnsResolver();
  DnsResolver(const DnsResolver&) = delete;
  DnsResolver& operator=(const DnsResolver&) = delete;

  // Asks for the `type` records of `name` (case-insensitive, trailing dot
  // optional); `done` is called exactly once.
  void query(const std::string& name, DnsType type, AnswerCallback done);

  // The mail hosts of `domain` (case-insensitive, trailing dot optional);
  // `done` is called exactly once.
  void resolve_mx(const std::string& domain, MxCallback done,
                  HostAddresses addresses = HostAddresses::kLookUp);

  // Forgets every cached answer.
  void clear_cache();
  // Number of DNS queries sent so far (for tests of the cache).
  std::uint64_t queries_sent() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// A DnsResolver on an io_context of its own, for callers without one: each
// call asks its questions at once and blocks until all are answered or have
// timed out. The cache lives as long as the object.
class BlockingDnsResolver {
 public:
  // Throws as DnsResolver's constructor does.
  explicit BlockingDnsResolver(DnsResolverOptions options = {});
  ~BlockingDnsResolver();

  // One answer per question, in order.
  std::vector<DnsAnswer> resolve(const std::vector<DnsQuestion>& questions);
  DnsAnswer resolve(const std::string& name, DnsType type);
  MxResult resolve_mx(const std::string& domain, HostAddresses addresses = HostAddresses::kLookUp);

  DnsResolver& resolver() { return *resolver_; }
  // Runs ready handlers, waiting for at least one; false when nothing is
  // pending (no lookup in flight).
  bool run_one();

 private:
  boost::asio::io_context io_;
  std::unique_ptr<DnsResolver> resolver_;
};

}  // namespace mailer::sender
