#include "app/worker/rehearsal_transport.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <thread>

#include "throttle/duration.h"

namespace mailer::app {

RehearsalSpec parse_rehearsal_spec(std::string_view spec) {
  RehearsalSpec out;
  std::string_view head = spec, options;
  if (auto comma = spec.find(','); comma != std::string_view::npos) {
    head = spec.substr(0, comma);
    options = spec.substr(comma + 1);
  }
  if (head.rfind("record:", 0) == 0) {
    out.record_file = std::string(head.substr(7));
    if (out.record_file.empty()) throw std::invalid_argument("record: needs a file name");
  } else if (head != "null") {
    throw std::invalid_argument(
        fmt::format("expected \"null\" or \"record:FILE\", got \"{}\"", head));
  }
  while (!options.empty()) {
    std::string_view opt = options;
    if (auto comma = options.find(','); comma != std::string_view::npos) {
      opt = options.substr(0, comma);
      options = options.substr(comma + 1);
    } else {
      options = {};
    }
    const auto eq = opt.find('=');
    const std::string_view key = opt.substr(0, eq);
    if (eq == std::string_view::npos || (key != "defer-first" && key != "delay")) {
      throw std::invalid_argument(
          fmt::format("unknown option \"{}\" (expected defer-first=DUR or delay=DUR)", opt));
    }
    auto d = throttle::parse_duration(opt.substr(eq + 1));
    if (!d) throw std::invalid_argument(fmt::format("bad duration in \"{}\"", opt));
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
    if (key == "delay") {
      out.delay = ms;
    } else {
      out.defer_first = ms;
    }
  }
  return out;
}

RehearsalTransport::RehearsalTransport(RehearsalSpec spec) : spec_(std::move(spec)) {
  if (!spec_.record_file.empty()) {
    fd_ = ::open(spec_.record_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      throw std::runtime_error(
          fmt::format("{}: cannot open record file: {}", spec_.record_file, std::strerror(errno)));
    }
  }
}

RehearsalTransport::~RehearsalTransport() {
  if (fd_ >= 0) ::close(fd_);
}

std::size_t RehearsalTransport::capacity(std::string_view) {
  return std::numeric_limits<std::size_t>::max();
}

void RehearsalTransport::submit(std::vector<db::ClaimedDelivery> deliveries) {
  line_buffer_.clear();
  if (spec_.delay.count() > 0) std::this_thread::sleep_for(spec_.delay);
  const auto now = std::chrono::system_clock::now();
  for (const db::ClaimedDelivery& d : deliveries) {
    db::DeliveryOutcome o;
    o.delivery_id = d.id;
    if (spec_.defer_first && d.attempts == 0) {
      o.kind = db::OutcomeKind::kDeferred;
      o.next_attempt_at = now + *spec_.defer_first;
      o.reply_code = 451;
      o.reply = "451 4.3.0 rehearsal: try again later";
      o.signal = "transient";
    } else {
      o.kind = db::OutcomeKind::kSent;
      o.reply_code = 250;
      o.reply = "250 2.0.0 rehearsal: accepted";
      o.signal = "accepted";
      if (fd_ >= 0) line_buffer_ += fmt::format("{} {} {}\n", d.id, d.campaign_id, d.email);
    }
    ready_.push_back(std::move(o));
  }
  // One write per batch: what is in the file was "accepted by the server".
  std::size_t written = 0;
  while (written < line_buffer_.size()) {
    const ssize_t n = ::write(fd_, line_buffer_.data() + written, line_buffer_.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      throw std::runtime_error(
          fmt::format("{}: cannot write record file: {}", spec_.record_file, std::strerror(errno)));
    }
    written += static_cast<std::size_t>(n);
  }
}

void RehearsalTransport::poll(std::chrono::milliseconds timeout,
                              std::vector<db::DeliveryOutcome>& out) {
  if (ready_.empty()) {
    if (timeout.count() > 0) std::this_thread::sleep_for(timeout);
    return;
  }
  for (auto& o : ready_) out.push_back(std::move(o));
  ready_.clear();
}

}  // namespace mailer::app
