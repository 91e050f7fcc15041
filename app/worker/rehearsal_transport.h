// Transports for rehearsals, tests and benchmarks of the delivery queue: they
// implement db::DeliveryTransport without any network. `null` accepts every
// delivery at once; `record:FILE` also appends one line per accepted delivery
// ("DELIVERY_ID CAMPAIGN_ID EMAIL") to FILE before reporting it sent, so a
// test can count what a worker sent, even across kill -9. Options:
// `,defer-first=DUR` defers every first attempt (451) with a retry after DUR;
// `,delay=DUR` takes DUR per submitted batch, like a slow peer.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "app/db/delivery_transport.h"

namespace mailer::app {

struct RehearsalSpec {
  // Empty: discard; else the record file.
  std::string record_file;
  std::optional<std::chrono::milliseconds> defer_first;
  std::chrono::milliseconds delay{0};
};

// Parses "null", "record:FILE", each optionally followed by
// ",defer-first=DUR" and ",delay=DUR". Throws std::invalid_argument naming the problem.
RehearsalSpec parse_rehearsal_spec(std::string_view spec);

class RehearsalTransport : public db::DeliveryTransport {
 public:
  // Opens the record file (append); throws std::runtime_error when it cannot.
  explicit RehearsalTransport(RehearsalSpec spec);
  ~RehearsalTransport() override;

  std::size_t capacity(std::string_view provider) override;
  void submit(std::vector<db::ClaimedDelivery> deliveries) override;
  void poll(std::chrono::milliseconds timeout, std::vector<db::DeliveryOutcome>& out) override;
  std::size_t in_flight() const override { return ready_.size(); }
  void drain() override {}

 private:
  RehearsalSpec spec_;
  int fd_ = -1;
  std::vector<db::DeliveryOutcome> ready_;
  std::string line_buffer_;
};

}  // namespace mailer::app
