// What the worker loop (`mailer run`) hands claimed deliveries to: "send these
// claimed deliveries, report an outcome for each", with the value types that
// cross it (a claimed delivery, its outcome). The SMTP dispatcher (throttle +
// composer + SMTP transport) implements it; so do the rehearsal transports
// (null, record) used by tests and benchmarks.
//
// Why it is declared here: sender/ sits below app/ and never includes an
// app/ header. The dispatcher needs only these types from the queue, so
// sender/ declares them and app/db's DeliveryQueue, which knows the schema and
// holds all the SQL, claims and records in these terms.
//
// Contract:
//  - The loop asks capacity(provider) before claiming, claims at most that
//    many deliveries of that provider, and submit()s them. Pacing, connection
//    limits and suspensions live behind capacity(): 0 means "not now", and a
//    throttled provider never blocks the others.
//  - Every submitted delivery gets exactly one DeliveryOutcome through poll(),
//    sooner or later: sent only after the server accepted the end of DATA;
//    deferred with next_attempt_at (the implementation applies the retry
//    schedule, including expiry to failed after max age); bounced; failed; or
//    released when it was never attempted.
//  - drain() asks the transport to start nothing new: in-flight sends finish,
//    deliveries not yet started come back as released.
//  - All calls come from the loop's thread; an implementation that sends on
//    other threads hands results over internally.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailer::sender {

using SysTime = std::chrono::system_clock::time_point;

// One delivery a worker holds under its lease: what the composer and the
// transport need, nothing more.
struct ClaimedDelivery {
  std::int64_t id = 0;
  std::int64_t campaign_id = 0;
  std::int64_t recipient_id = 0;
  std::string provider;
  std::string email;
  // The recipient's attributes, a JSON object text (merge fields).
  std::string attributes_json = "{}";
  // Attempts made before this one (0 for a first attempt).
  int attempts = 0;
  // When the first attempt was made; nullopt for a first attempt.
  std::optional<SysTime> first_attempt_at;
  // The worker whose lease on this delivery had expired when it was claimed
  // (it died or hung); empty for a delivery nobody held.
  std::string expired_lease_of;
};

// What became of one claimed delivery.
enum class OutcomeKind {
  kSent,      // the server accepted the end of DATA
  kDeferred,  // temporary failure: retry at next_attempt_at (attempts + 1)
  kBounced,   // permanent failure: the address is suppressed as hard_bounce
  kFailed,    // given up (expired after max age, or unusable address)
  kReleased,  // never attempted (drain): back to the queue untouched
};

struct DeliveryOutcome {
  std::int64_t delivery_id = 0;
  OutcomeKind kind = OutcomeKind::kSent;
  // Required for kDeferred: when the delivery becomes sendable again.
  std::optional<SysTime> next_attempt_at;
  // The last SMTP reply (code 0 / empty when there was none, e.g. timeout).
  int reply_code = 0;
  std::string reply;
  // The throttle signal name of the reply ("throttle", "hard_bounce", ...).
  std::string signal;
};

class DeliveryTransport {
 public:
  virtual ~DeliveryTransport() = default;

  // How many more deliveries for `provider` it would accept now.
  virtual std::size_t capacity(std::string_view provider) = 0;

  // Takes the claimed deliveries (all of one provider); each is in flight
  // until its outcome comes out of poll().
  virtual void submit(std::vector<ClaimedDelivery> deliveries) = 0;

  // Waits at most `timeout` for outcomes and appends those ready to `out`.
  // May return early with none.
  virtual void poll(std::chrono::milliseconds timeout, std::vector<DeliveryOutcome>& out) = 0;

  // Deliveries submitted whose outcome poll() has not returned yet.
  virtual std::size_t in_flight() const = 0;

  // Start nothing new; see the contract above.
  virtual void drain() = 0;
};

}  // namespace mailer::sender
