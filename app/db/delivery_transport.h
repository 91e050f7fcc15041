// What the worker loop (`mailer run`) hands claimed deliveries to: "send these
// claimed deliveries, report an outcome for each". The SMTP dispatcher
// (throttle + composer + SMTP transport) implements it; so do the rehearsal
// transports (null, record) used by tests and benchmarks.
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
#include <string_view>
#include <vector>

#include "app/db/delivery_queue.h"

namespace mailer::db {

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

}  // namespace mailer::db
