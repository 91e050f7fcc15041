// The open-file limit a process that holds many connections needs. A worker
// keeps up to the sum of its providers' connection limits open at once (1,000
// and more is normal), the inbound server and the sink as many as their peers
// open, yet a login shell's soft limit is often 1,024. The hard limit is what
// the administrator allows, so the soft limit is raised to it, as Postfix and
// nginx do; systemd units set it with LimitNOFILE=.
#pragma once

#include <cstdint>

namespace mailer::app {

struct FdLimit {
  std::uint64_t before = 0;  // soft limit found
  std::uint64_t after = 0;   // soft limit now
  std::uint64_t hard = 0;    // hard limit (unlimited is reported as UINT64_MAX)
};

// Raises the soft RLIMIT_NOFILE to the hard limit, at most `cap` (an unlimited
// hard limit is taken as `cap`). Never lowers it. Returns what it found and
// what it set; `after == before` when nothing changed or the call failed.
FdLimit raise_open_file_limit(std::uint64_t cap = 1u << 20);

// Raises the limit and logs it at info when it changed, or warns when the
// limit stays under `wanted` (what the configuration may open at once).
void raise_open_file_limit_for(const char* what, std::uint64_t wanted);

}  // namespace mailer::app
