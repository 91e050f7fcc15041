#include "app/base/fd_limit.h"

#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>
#include <limits>

namespace mailer::app {

FdLimit raise_open_file_limit(std::uint64_t cap) {
  FdLimit r;
  struct rlimit lim {};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return r;
  auto as_u64 = [](rlim_t v) {
    return v == RLIM_INFINITY ? std::numeric_limits<std::uint64_t>::max()
                              : static_cast<std::uint64_t>(v);
  };
  r.before = r.after = as_u64(lim.rlim_cur);
  r.hard = as_u64(lim.rlim_max);
  const std::uint64_t target = std::min(r.hard, cap);
  if (target <= r.before) return r;
  struct rlimit raised = lim;
  raised.rlim_cur = static_cast<rlim_t>(target);
  if (setrlimit(RLIMIT_NOFILE, &raised) == 0) r.after = target;
  return r;
}

void raise_open_file_limit_for(const char* what, std::uint64_t wanted) {
  const FdLimit l = raise_open_file_limit();
  if (l.after != l.before) {
    spdlog::info("{}: open-file limit raised from {} to {}", what, l.before, l.after);
  }
  if (wanted > 0 && l.after < wanted) {
    spdlog::warn(
        "{}: the open-file limit is {} (hard limit {}), under the {} the configuration may "
        "hold open; raise it (ulimit -n, or LimitNOFILE= in the systemd unit)",
        what, l.after, l.hard, wanted);
  }
}

}  // namespace mailer::app
