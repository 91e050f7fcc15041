// Asynchronous MX lookup for the `mx` route: the mail hosts of a recipient
// domain in preference order, each with its addresses, from c-ares driven by
// the caller's Boost.Asio io_context. Follows RFC 5321 section 5.1: a domain
// without MX records but with an address record is its own mail host
// (implicit MX); a null MX (RFC 7505, "MX 0 .") means the domain accepts no
// mail. Answers are cached per domain; temporary failures are not.
//
// Threading: not thread-safe; construct, use and destroy on the io_context's
// thread. Callbacks run on that thread, never from inside resolve().
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace mailer::sender {

struct MxHost {
  std::string name;  // without trailing dot
  unsigned short preference = 0;
  // IPv4 and IPv6 addresses in text form; empty when the host has none (the
  // host is kept so the caller can report it).
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
  // What went wrong, for logs; empty on kOk.
  std::string error;

  // Undeliverable for good: null MX, NXDOMAIN or no mail host at all.
  bool permanent_failure() const {
    return status == MxStatus::kNullMx || status == MxStatus::kNoSuchDomain ||
           status == MxStatus::kNoMailHost;
  }
};

struct MxResolverOptions {
  // "host:port" (or "host", port 53) of the DNS server to ask; empty means the
  // system's resolvers from /etc/resolv.conf.
  std::string dns_server;
  // Per-try timeout and number of tries per server (c-ares's own defaults are
  // 5 s and 4 tries, too slow to notice a dead resolver during a send).
  std::chrono::milliseconds timeout{std::chrono::seconds(2)};
  int tries = 2;
  // How long answers stay cached. c-ares does not hand us MX TTLs; 5 minutes
  // matches common resolver caps for MX lookups at bulk senders.
  std::chrono::seconds cache_for{std::chrono::minutes(5)};
  // How long NXDOMAIN, null MX and no-mail-host answers stay cached.
  std::chrono::seconds negative_cache_for{std::chrono::minutes(1)};
};

class MxResolver {
 public:
  using Callback = std::function<void(const MxResult&)>;

  // Throws std::runtime_error when c-ares cannot start or the DNS server is
  // not "host:port".
  MxResolver(boost::asio::io_context& io, MxResolverOptions options = {});
  // Pending lookups are abandoned without calling their callbacks.
  ~MxResolver();
  MxResolver(const MxResolver&) = delete;
  MxResolver& operator=(const MxResolver&) = delete;

  // Looks up `domain` (case-insensitive, trailing dot optional); `done` is
  // called exactly once. Concurrent lookups of one domain share one query.
  void resolve(const std::string& domain, Callback done);

  // Forgets every cached answer.
  void clear_cache();
  // Number of DNS queries sent so far (for tests of the cache).
  std::uint64_t queries_sent() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace mailer::sender
