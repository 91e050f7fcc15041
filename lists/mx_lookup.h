// MxLookup: how the import's MX check reaches DNS, and the states of a
// domain's answer as the `domains` table records them:
//   ok          MX records name at least one host
//   a_fallback  no MX, but an A or AAAA record: the domain is its own mail
//               host (RFC 5321 section 5.1 implicit MX)
//   null_mx     "MX 0 ." alone: the domain accepts no mail (RFC 7505)
//   nxdomain    the domain does not exist
//   no_address  the domain exists with neither MX nor address records
//   error       timeout, SERVFAIL, REFUSED: unknown, try again later
//
// Why an interface: the one DNS resolver lives in sender/ (it delivers to MX
// hosts), and lists/ sits beside sender/ on the same floor, so neither
// includes the other. lists/ declares what its MX check needs here; app/
// implements it with the sender resolver (app/cli/import_mx_lookup.h) and hands
// it to the import. The policy (concurrency, what is undeliverable, what is
// cached in `domains`) stays in lists/.
#pragma once

#include <chrono>
#include <functional>
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
  // The smallest TTL of the records the answer used (0 when DNS gave none),
  // for the caller's cache.
  std::chrono::seconds ttl{0};
  // What went wrong, for logs and rejects files; empty on success.
  std::string error;

  // The domain can never receive mail (as far as DNS says now).
  bool undeliverable() const {
    return status == MxStatus::kNullMx || status == MxStatus::kNxDomain ||
           status == MxStatus::kNoAddress;
  }
};

// Asynchronous MX lookups driven by the caller's thread: start() any number,
// then wait() until they have answered. Not thread-safe: one thread at a time.
class MxLookup {
 public:
  using Done = std::function<void(const MxAnswer&)>;

  virtual ~MxLookup() = default;

  // Starts looking up the mail hosts of `domain` (a lower-case A-label);
  // `done` is called exactly once, from inside a later wait(). Failures come
  // as answers with status kError, never as exceptions.
  virtual void start(const std::string& domain, Done done) = 0;

  // Blocks until at least one started lookup has called its `done` (each
  // lookup gives up after the implementation's timeout); returns at once
  // when no lookup is pending.
  virtual void wait() = 0;
};

}  // namespace mailer::lists
