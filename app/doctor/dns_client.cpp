#include "app/doctor/dns_client.h"

#include <fmt/format.h>
#include <poll.h>

#include <algorithm>
#include <stdexcept>

#include "app/doctor/dns_address.h"

namespace mailer::app {
namespace {

constexpr int kClassIn = 1;

std::uint16_t read16(const unsigned char* p) {
  return static_cast<std::uint16_t>(p[0] << 8 | p[1]);
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// Expands the (possibly compressed) name at `p`; advances `p` past it.
bool expand_name(const unsigned char*& p, const unsigned char* abuf, int alen, std::string* out) {
  char* name = nullptr;
  long len = 0;
  if (ares_expand_name(p, abuf, alen, &name, &len) != ARES_SUCCESS) return false;
  if (out != nullptr) {
    *out = name;
    while (!out->empty() && out->back() == '.') out->pop_back();
  }
  ares_free_string(name);
  p += len;
  return true;
}

// Reads the rdata of one record of `type` into `answer`; false if malformed.
bool read_rdata(DnsType type, const unsigned char* rdata, int rdlen, const unsigned char* abuf,
                int alen, DnsAnswer& answer) {
  switch (type) {
    case DnsType::kA: {
      if (rdlen != 4) return false;
      answer.records.push_back(IpAddress::v4({rdata[0], rdata[1], rdata[2], rdata[3]}).to_string());
      return true;
    }
    case DnsType::kAaaa: {
      if (rdlen != 16) return false;
      std::array<std::uint8_t, 16> b{};
      std::copy(rdata, rdata + 16, b.begin());
      answer.records.push_back(IpAddress::v6(b).to_string());
      return true;
    }
    case DnsType::kMx: {
      if (rdlen < 3) return false;
      MxRecord mx;
      mx.preference = read16(rdata);
      const unsigned char* p = rdata + 2;
      if (!expand_name(p, abuf, alen, &mx.exchange)) return false;
      mx.exchange = lower(mx.exchange);
      answer.records.push_back(mx.exchange);
      answer.mx.push_back(std::move(mx));
      return true;
    }
    case DnsType::kPtr: {
      const unsigned char* p = rdata;
      std::string name;
      if (!expand_name(p, abuf, alen, &name)) return false;
      answer.records.push_back(lower(name));
      return true;
    }
    case DnsType::kTxt: {
      std::string text;
      int i = 0;
      while (i < rdlen) {
        const int len = rdata[i];
        if (i + 1 + len > rdlen) return false;
        text.append(reinterpret_cast<const char*>(rdata + i + 1), static_cast<std::size_t>(len));
        i += 1 + len;
      }
      answer.records.push_back(std::move(text));
      return true;
    }
  }
  return false;
}

}  // namespace

std::string_view to_string(DnsType type) {
  switch (type) {
    case DnsType::kA:
      return "A";
    case DnsType::kPtr:
      return "PTR";
    case DnsType::kMx:
      return "MX";
    case DnsType::kTxt:
      return "TXT";
    case DnsType::kAaaa:
      return "AAAA";
  }
  return "?";
}

void parse_dns_reply(DnsType type, const unsigned char* abuf, int alen, DnsAnswer& answer) {
  answer.records.clear();
  answer.mx.clear();
  auto malformed = [&answer] {
    answer.status = DnsStatus::kError;
    answer.error = "malformed DNS reply";
    answer.records.clear();
    answer.mx.clear();
  };
  if (alen < 12) return malformed();
  const int qdcount = read16(abuf + 4);
  const int ancount = read16(abuf + 6);
  const unsigned char* p = abuf + 12;
  const unsigned char* end = abuf + alen;
  for (int i = 0; i < qdcount; ++i) {
    if (!expand_name(p, abuf, alen, nullptr) || end - p < 4) return malformed();
    p += 4;
  }
  for (int i = 0; i < ancount; ++i) {
    if (!expand_name(p, abuf, alen, nullptr) || end - p < 10) return malformed();
    const int rtype = read16(p);
    const int rclass = read16(p + 2);
    const int rdlen = read16(p + 8);
    p += 10;
    if (end - p < rdlen) return malformed();
    // Other types (the CNAMEs of a chain) are skipped: their targets'
    // records follow in the same answer.
    if (rtype == static_cast<int>(type) && rclass == kClassIn &&
        !read_rdata(type, p, rdlen, abuf, alen, answer)) {
      return malformed();
    }
    p += rdlen;
  }
  answer.status = answer.records.empty() ? DnsStatus::kNoData : DnsStatus::kOk;
}

struct DnsClient::Pending {
  DnsClient* self;
  DnsType type;
  DnsAnswer* answer;
};

DnsClient::DnsClient(DnsClientOptions options) {
  static const int library = ares_library_init(ARES_LIB_INIT_ALL);
  if (library != ARES_SUCCESS) throw std::runtime_error("DNS: ares_library_init failed");
  ares_options o{};
  o.timeout = static_cast<int>(options.timeout.count());
  o.tries = std::max(1, options.tries);
  o.sock_state_cb = &DnsClient::on_socket_state;
  o.sock_state_cb_data = this;
  const int mask = ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB;
  if (int rc = ares_init_options(&channel_, &o, mask); rc != ARES_SUCCESS) {
    throw std::runtime_error(fmt::format("DNS: cannot start c-ares: {}", ares_strerror(rc)));
  }
  if (!options.server.empty()) {
    if (int rc = ares_set_servers_ports_csv(channel_, options.server.c_str()); rc != ARES_SUCCESS) {
      ares_destroy(channel_);
      throw std::invalid_argument(fmt::format("bad DNS server \"{}\" (expected host:port): {}",
                                              options.server, ares_strerror(rc)));
    }
  }
}

DnsClient::~DnsClient() {
  ares_destroy(channel_);
}

void DnsClient::on_socket_state(void* data, ares_socket_t fd, int readable, int writable) {
  auto* self = static_cast<DnsClient*>(data);
  if (!readable && !writable) {
    self->sockets_.erase(fd);
  } else {
    self->sockets_[fd] = {readable != 0, writable != 0};
  }
}

void DnsClient::on_reply(void* arg, int status, int, unsigned char* abuf, int alen) {
  auto* pending = static_cast<Pending*>(arg);
  DnsAnswer& a = *pending->answer;
  --pending->self->in_flight_;
  switch (status) {
    case ARES_SUCCESS:
      parse_dns_reply(pending->type, abuf, alen, a);
      break;
    case ARES_ENODATA:
      a.status = DnsStatus::kNoData;
      break;
    case ARES_ENOTFOUND:
      a.status = DnsStatus::kNxDomain;
      break;
    default:
      a.status = DnsStatus::kError;
      a.error = ares_strerror(status);
      break;
  }
  delete pending;
}

void DnsClient::pump() {
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
  const int wait_ms =
      t == nullptr ? 1000 : static_cast<int>(t->tv_sec * 1000 + (t->tv_usec + 999) / 1000);
  if (::poll(fds.data(), fds.size(), wait_ms) <= 0) {
    ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    return;
  }
  for (const auto& p : fds) {
    ares_socket_t r = (p.revents & (POLLIN | POLLERR | POLLHUP)) ? p.fd : ARES_SOCKET_BAD;
    ares_socket_t w = (p.revents & POLLOUT) ? p.fd : ARES_SOCKET_BAD;
    if (r != ARES_SOCKET_BAD || w != ARES_SOCKET_BAD) ares_process_fd(channel_, r, w);
  }
}

std::vector<DnsAnswer> DnsClient::resolve(const std::vector<DnsQuestion>& questions) {
  std::vector<DnsAnswer> answers(questions.size());
  for (std::size_t i = 0; i < questions.size(); ++i) {
    ++in_flight_;
    auto* pending = new Pending{this, questions[i].type, &answers[i]};
    ares_query(channel_, questions[i].name.c_str(), kClassIn, static_cast<int>(questions[i].type),
               &DnsClient::on_reply, pending);
  }
  while (in_flight_ > 0) pump();
  return answers;
}

DnsAnswer DnsClient::resolve(const std::string& name, DnsType type) {
  return resolve(std::vector<DnsQuestion>{{name, type}}).front();
}

}  // namespace mailer::app
