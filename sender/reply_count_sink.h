// ReplyCountSink: where the dispatcher adds the replies it counted per
// (provider, egress, signal) since its last flush; the counters only grow,
// and `mailer serve` reads them for /metrics.
//
// Why an interface declared here: sender/ sits below app/ and never includes
// an app/ header. The dispatcher declares what it needs; app/db's
// ReplyCounters implements it, because all SQL lives in app/db, which knows
// the schema (table reply_counters).
//
// Threading: the dispatcher calls it from the worker loop's thread only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mailer::sender {

struct ReplyCount {
  std::string provider;
  std::string egress;
  // A throttle signal name ("accepted", "throttle", "hard_bounce", ...).
  std::string signal;
  std::int64_t count = 0;
};

class ReplyCountSink {
 public:
  virtual ~ReplyCountSink() = default;

  // Adds each row's count to its counter (one write). Throws
  // sender::StoreUnavailable (sender/throttle_state_store.h) when the store
  // cannot be reached now, other exceptions for other failures.
  virtual void add_counts(const std::vector<ReplyCount>& increments) = 0;
};

}  // namespace mailer::sender
