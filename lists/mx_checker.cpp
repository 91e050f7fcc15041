#include "lists/mx_checker.h"

#include <arpa/nameser.h>
#include <fmt/format.h>
#include <poll.h>

#include <algorithm>
#include <limits>
#include <stdexcept>

namespace mailer::lists {
namespace {

constexpr int kClassIn = 1;
constexpr int kTypeA = 1;
constexpr int kTypeMx = 15;
constexpr int kTypeAaaa = 28;

struct Record {
  int type = 0;
  std::uint32_t ttl = 0;
  std::uint16_t preference = 0;
  std::string exchange;  // MX only; "" for the root (null MX)
};

std::uint16_t read16(const unsigned char* p) {
  return static_cast<std::uint16_t>(p[0] << 8 | p[1]);
}
std::uint32_t read32(const unsigned char* p) {
  return static_cast<std::uint32_t>(p[0]) << 24 | static_cast<std::uint32_t>(p[1]) << 16 |
         static_cast<std::uint32_t>(p[2]) << 8 | p[3];
}

// The answer-section records of a DNS reply; false when it is malformed.
bool parse_answers(const unsigned char* abuf, int alen, std::vector<Record>& out) {
  if (alen < 12) return false;
  int qdcount = read16(abuf + 4);
  int ancount = read16(abuf + 6);
  const unsigned char* p = abuf + 12;
  const unsigned char* end = abuf + alen;
  auto skip_name = [&]() {
    char* name = nullptr;
    long len = 0;
    if (ares_expand_name(p, abuf, alen, &name, &len) != ARES_SUCCESS) return false;
    ares_free_string(name);
    p += len;
    return p <= end;
  };
  for (int i = 0; i < qdcount; ++i) {
    if (!skip_name() || end - p < 4) return false;
    p += 4;
  }
  for (int i = 0; i < ancount; ++i) {
    if (!skip_name() || end - p < 10) return false;
    Record r;
    r.type = read16(p);
    int cls = read16(p + 2);
    r.ttl = read32(p + 4);
    int rdlen = read16(p + 8);
    p += 10;
    if (end - p < rdlen) return false;
    if (r.type == kTypeMx && cls == kClassIn) {
      if (rdlen < 3) return false;
      r.preference = read16(p);
      char* name = nullptr;
      long len = 0;
      if (ares_expand_name(p + 2, abuf, alen, &name, &len) != ARES_SUCCESS) return false;
      r.exchange = name;
      ares_free_string(name);
      while (!r.exchange.empty() && r.exchange.back() == '.') r.exchange.pop_back();
      std::transform(r.exchange.begin(), r.exchange.end(), r.exchange.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    }
    p += rdlen;
    out.push_back(std::move(r));
  }
  return true;
}

std::chrono::seconds min_ttl(const std::vector<Record>& records, int type) {
  std::uint32_t ttl = std::numeric_limits<std::uint32_t>::max();
  for (const auto& r : records) {
    if (r.type == type) ttl = std::min(ttl, r.ttl);
  }
  return std::chrono::seconds(ttl == std::numeric_limits<std::uint32_t>::max() ? 0 : ttl);
}

MxAnswer failure(MxStatus status, std::string error) {
  MxAnswer a;
  a.status = status;
  a.error = std::move(error);
  return a;
}

}  // namespace

std::string_view to_string(MxStatus status) {
  switch (status) {
    case MxStatus::kOk:
      return "ok";
    case MxStatus::kAFallback:
      return "a_fallback";
    case MxStatus::kNullMx:
      return "null_mx";
    case MxStatus::kNxDomain:
      return "nxdomain";
    case MxStatus::kNoAddress:
      return "no_address";
    case MxStatus::kError:
      return "error";
  }
  return "error";
}

MxStatus mx_status_from_string(std::string_view text) {
  for (MxStatus s : {MxStatus::kOk, MxStatus::kAFallback, MxStatus::kNullMx, MxStatus::kNxDomain,
                     MxStatus::kNoAddress}) {
    if (to_string(s) == text) return s;
  }
  return MxStatus::kError;
}

struct MxChecker::Lookup {
  MxChecker* self;
  std::string domain;
  int address_type = kTypeA;
};

MxChecker::MxChecker(MxCheckerOptions options) : options_(std::move(options)) {
  static const int library = ares_library_init(ARES_LIB_INIT_ALL);
  if (library != ARES_SUCCESS) throw std::runtime_error("MX check: ares_library_init failed");
  ares_options o{};
  o.timeout = static_cast<int>(options_.timeout.count());
  o.tries = options_.tries;
  o.sock_state_cb = &MxChecker::on_socket_state;
  o.sock_state_cb_data = this;
  int mask = ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB;
  if (int rc = ares_init_options(&channel_, &o, mask); rc != ARES_SUCCESS) {
    throw std::runtime_error(fmt::format("MX check: cannot start c-ares: {}", ares_strerror(rc)));
  }
  if (!options_.dns_server.empty()) {
    if (int rc = ares_set_servers_ports_csv(channel_, options_.dns_server.c_str());
        rc != ARES_SUCCESS) {
      ares_destroy(channel_);
      throw std::runtime_error(
          fmt::format("MX check: bad DNS server \"{}\" (expected host:port): {}",
                      options_.dns_server, ares_strerror(rc)));
    }
  }
}

MxChecker::~MxChecker() {
  ares_destroy(channel_);
}

void MxChecker::on_socket_state(void* data, ares_socket_t fd, int readable, int writable) {
  auto* self = static_cast<MxChecker*>(data);
  if (!readable && !writable) {
    self->sockets_.erase(fd);
  } else {
    self->sockets_[fd] = {readable != 0, writable != 0};
  }
}

void MxChecker::finish(Lookup* lookup, MxAnswer answer) {
  (*results_)[lookup->domain] = std::move(answer);
  --in_flight_;
  delete lookup;
}

void MxChecker::on_mx(void* arg, int status, int, unsigned char* abuf, int alen) {
  auto* lookup = static_cast<Lookup*>(arg);
  MxChecker* self = lookup->self;
  if (status == ARES_EDESTRUCTION)
    return self->finish(lookup, failure(MxStatus::kError, "cancelled"));
  if (status == ARES_ENOTFOUND)
    return self->finish(lookup, failure(MxStatus::kNxDomain, "NXDOMAIN"));
  std::vector<Record> records;
  if (status == ARES_SUCCESS && !parse_answers(abuf, alen, records)) {
    return self->finish(lookup, failure(MxStatus::kError, "malformed MX answer"));
  }
  if (status != ARES_SUCCESS && status != ARES_ENODATA) {
    return self->finish(
        lookup, failure(MxStatus::kError, fmt::format("MX lookup: {}", ares_strerror(status))));
  }
  std::vector<Record> mx;
  for (auto& r : records) {
    if (r.type == kTypeMx) mx.push_back(r);
  }
  if (mx.empty()) {
    // RFC 5321 5.1: no MX records, so the domain's own address is the host.
    ares_query(self->channel_, lookup->domain.c_str(), kClassIn, kTypeA, &MxChecker::on_address,
               lookup);
    return;
  }
  MxAnswer a;
  a.ttl = min_ttl(records, kTypeMx);
  if (mx.size() == 1 && mx[0].exchange.empty()) {
    a.status = MxStatus::kNullMx;
    a.error = "null MX (RFC 7505): the domain accepts no mail";
    return self->finish(lookup, std::move(a));
  }
  std::stable_sort(mx.begin(), mx.end(), [](const Record& x, const Record& y) {
    return x.preference != y.preference ? x.preference < y.preference : x.exchange < y.exchange;
  });
  for (const auto& r : mx) {
    if (!r.exchange.empty()) a.hosts.push_back(r.exchange);
  }
  a.status = MxStatus::kOk;
  self->finish(lookup, std::move(a));
}

void MxChecker::on_address(void* arg, int status, int, unsigned char* abuf, int alen) {
  auto* lookup = static_cast<Lookup*>(arg);
  MxChecker* self = lookup->self;
  if (status == ARES_EDESTRUCTION)
    return self->finish(lookup, failure(MxStatus::kError, "cancelled"));
  if (status == ARES_ENOTFOUND)
    return self->finish(lookup, failure(MxStatus::kNxDomain, "NXDOMAIN"));
  std::vector<Record> records;
  if (status == ARES_SUCCESS && !parse_answers(abuf, alen, records)) {
    return self->finish(lookup, failure(MxStatus::kError, "malformed address answer"));
  }
  if (status != ARES_SUCCESS && status != ARES_ENODATA) {
    return self->finish(lookup, failure(MxStatus::kError,
                                        fmt::format("address lookup: {}", ares_strerror(status))));
  }
  bool found = std::any_of(records.begin(), records.end(),
                           [&](const Record& r) { return r.type == lookup->address_type; });
  if (found) {
    MxAnswer a;
    a.status = MxStatus::kAFallback;
    a.hosts.push_back(lookup->domain);
    a.ttl = min_ttl(records, lookup->address_type);
    return self->finish(lookup, std::move(a));
  }
  if (lookup->address_type == kTypeA) {
    lookup->address_type = kTypeAaaa;
    ares_query(self->channel_, lookup->domain.c_str(), kClassIn, kTypeAaaa, &MxChecker::on_address,
               lookup);
    return;
  }
  self->finish(lookup, failure(MxStatus::kNoAddress, "neither MX nor address records"));
}

void MxChecker::pump() {
  std::vector<pollfd> fds;
  fds.reserve(sockets_.size());
  for (const auto& [fd, rw] : sockets_) {
    short events = 0;
    if (rw.first) events |= POLLIN;
    if (rw.second) events |= POLLOUT;
    fds.push_back(pollfd{fd, events, 0});
  }
  timeval tv{};
  timeval* t = ares_timeout(channel_, nullptr, &tv);
  int wait_ms = t == nullptr ? 1000 : static_cast<int>(t->tv_sec * 1000 + t->tv_usec / 1000);
  int n = ::poll(fds.data(), fds.size(), wait_ms);
  if (n <= 0) {
    ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    return;
  }
  for (const auto& p : fds) {
    ares_socket_t r = (p.revents & (POLLIN | POLLERR | POLLHUP)) ? p.fd : ARES_SOCKET_BAD;
    ares_socket_t w = (p.revents & POLLOUT) ? p.fd : ARES_SOCKET_BAD;
    if (r != ARES_SOCKET_BAD || w != ARES_SOCKET_BAD) ares_process_fd(channel_, r, w);
  }
}

std::map<std::string, MxAnswer> MxChecker::check(const std::vector<std::string>& domains) {
  std::map<std::string, MxAnswer> results;
  results_ = &results;
  std::size_t next = 0;
  const std::size_t limit = std::max<std::size_t>(1, options_.concurrency);
  while (next < domains.size() || in_flight_ > 0) {
    while (next < domains.size() && in_flight_ < limit) {
      auto* lookup = new Lookup{this, domains[next++]};
      ++in_flight_;
      ares_query(channel_, lookup->domain.c_str(), kClassIn, kTypeMx, &MxChecker::on_mx, lookup);
    }
    if (in_flight_ > 0) pump();
  }
  results_ = nullptr;
  return results;
}

}  // namespace mailer::lists
