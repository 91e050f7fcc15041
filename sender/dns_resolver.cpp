#include "sender/dns_resolver.h"

#include <ares.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cctype>
#include <limits>
#include <map>
#include <stdexcept>
#include <unordered_map>

namespace mailer::sender {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

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

std::string_view to_string(MxStatus status) {
  switch (status) {
    case MxStatus::kOk:
      return "ok";
    case MxStatus::kNullMx:
      return "null_mx";
    case MxStatus::kNoSuchDomain:
      return "no_such_domain";
    case MxStatus::kNoMailHost:
      return "no_mail_host";
    case MxStatus::kTemporaryFailure:
      return "temporary_failure";
  }
  return "unknown";
}

namespace {

// DNS class IN and type SOA (RFC 1035; arpa/nameser.h spells them
// differently across libcs).
constexpr int kClassIn = 1;
constexpr int kTypeSoa = 6;

std::string normalise_name(std::string d) {
  while (!d.empty() && d.back() == '.') d.pop_back();
  std::transform(d.begin(), d.end(), d.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return d;
}

bool plausible_name(const std::string& name) {
  return !name.empty() && name.size() <= 253 && name.find_first_of(" \r\n\t") == std::string::npos;
}

std::uint16_t read16(const unsigned char* p) {
  return static_cast<std::uint16_t>(p[0] << 8 | p[1]);
}

std::uint32_t read32(const unsigned char* p) {
  return static_cast<std::uint32_t>(p[0]) << 24 | static_cast<std::uint32_t>(p[1]) << 16 |
         static_cast<std::uint32_t>(p[2]) << 8 | p[3];
}

// Expands the (possibly compressed) name at `p` into `out` (when given);
// advances `p` past it.
bool expand_name(const unsigned char*& p, const unsigned char* abuf, int alen, std::string* out) {
  char* name = nullptr;
  long len = 0;
  if (ares_expand_name(p, abuf, alen, &name, &len) != ARES_SUCCESS) return false;
  if (out != nullptr) *out = normalise_name(name);
  ares_free_string(name);
  p += len;
  return true;
}

std::string address_text(int family, const unsigned char* bytes) {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, bytes, text, sizeof text);
  return text;
}

// Reads the rdata of one record of `type` into `answer`; false if malformed.
bool read_rdata(DnsType type, const unsigned char* rdata, int rdlen, const unsigned char* abuf,
                int alen, DnsAnswer& answer) {
  switch (type) {
    case DnsType::kA:
      if (rdlen != 4) return false;
      answer.records.push_back(address_text(AF_INET, rdata));
      return true;
    case DnsType::kAaaa:
      if (rdlen != 16) return false;
      answer.records.push_back(address_text(AF_INET6, rdata));
      return true;
    case DnsType::kMx: {
      if (rdlen < 3) return false;
      MxRecord mx;
      mx.preference = read16(rdata);
      const unsigned char* p = rdata + 2;
      if (!expand_name(p, abuf, alen, &mx.exchange)) return false;
      answer.records.push_back(mx.exchange);
      answer.mx.push_back(std::move(mx));
      return true;
    }
    case DnsType::kPtr: {
      const unsigned char* p = rdata;
      std::string name;
      if (!expand_name(p, abuf, alen, &name)) return false;
      answer.records.push_back(std::move(name));
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

// Parses a reply to a `type` question (NOERROR or NXDOMAIN) into `answer`:
// its records and TTL. For an answer without records, the TTL is the SOA's
// negative TTL from the authority section (RFC 2308 section 5), if any.
void parse_reply(DnsType type, const unsigned char* abuf, int alen, DnsAnswer& answer) {
  auto malformed = [&answer] {
    answer = DnsAnswer{};
    answer.error = "malformed DNS reply";
  };
  if (alen < 12) return malformed();
  const int qdcount = read16(abuf + 4);
  const int ancount = read16(abuf + 6);
  const int nscount = read16(abuf + 8);
  const unsigned char* p = abuf + 12;
  const unsigned char* end = abuf + alen;
  for (int i = 0; i < qdcount; ++i) {
    if (!expand_name(p, abuf, alen, nullptr) || end - p < 4) return malformed();
    p += 4;
  }
  std::uint32_t ttl = std::numeric_limits<std::uint32_t>::max();
  std::uint32_t negative_ttl = std::numeric_limits<std::uint32_t>::max();
  for (int i = 0; i < ancount + nscount; ++i) {
    if (!expand_name(p, abuf, alen, nullptr) || end - p < 10) return malformed();
    const int rtype = read16(p);
    const int rclass = read16(p + 2);
    const std::uint32_t rttl = read32(p + 4);
    const int rdlen = read16(p + 8);
    p += 10;
    if (end - p < rdlen) return malformed();
    if (i < ancount) {
      // Other types (the CNAMEs of a chain) are skipped: their targets'
      // records follow in the same answer, and their TTLs bound its life.
      ttl = std::min(ttl, rttl);
      if (rtype == static_cast<int>(type) && rclass == kClassIn &&
          !read_rdata(type, p, rdlen, abuf, alen, answer)) {
        return malformed();
      }
    } else if (rtype == kTypeSoa && rdlen >= 22) {
      // The SOA's MINIMUM is its last field; the negative TTL is the smaller
      // of it and the SOA's own TTL.
      negative_ttl = std::min(rttl, read32(p + rdlen - 4));
    }
    p += rdlen;
  }
  if (!answer.records.empty()) {
    answer.status = DnsStatus::kOk;
    answer.ttl = std::chrono::seconds(ttl);
  } else {
    if (answer.status != DnsStatus::kNxDomain) answer.status = DnsStatus::kNoData;
    const bool has_soa = negative_ttl != std::numeric_limits<std::uint32_t>::max();
    answer.ttl = std::chrono::seconds(has_soa ? negative_ttl : 0);
  }
}

}  // namespace

class DnsResolver::Impl {
 public:
  Impl(asio::io_context& io, DnsResolverOptions options)
      : io_(io), options_(std::move(options)), timer_(io) {
    static const int library = ares_library_init(ARES_LIB_INIT_ALL);
    if (library != ARES_SUCCESS) throw std::runtime_error("DNS: ares_library_init failed");
    ares_options o{};
    const int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
    o.sock_state_cb = &Impl::on_socket_state;
    o.sock_state_cb_data = this;
    o.timeout = static_cast<int>(options_.timeout.count());
    o.tries = std::max(1, options_.tries);
    if (int rc = ares_init_options(&channel_, &o, mask); rc != ARES_SUCCESS) {
      throw std::runtime_error(std::string("DNS: cannot start c-ares: ") + ares_strerror(rc));
    }
    if (!options_.dns_server.empty()) {
      if (int rc = ares_set_servers_ports_csv(channel_, options_.dns_server.c_str());
          rc != ARES_SUCCESS) {
        ares_destroy(channel_);
        throw std::invalid_argument("bad DNS server \"" + options_.dns_server +
                                    "\" (expected host:port): " + ares_strerror(rc));
      }
    }
  }

  ~Impl() {
    destroying_ = true;
    alive_.reset();
    ares_destroy(channel_);  // calls pending callbacks with ARES_EDESTRUCTION
    for (auto& [fd, w] : watches_) w->release();
    watches_.clear();
  }

  void query(const std::string& raw_name, DnsType type, AnswerCallback done) {
    Key key{normalise_name(raw_name), type};
    if (auto it = cache_.find(key); it != cache_.end()) {
      if (now() < it->second.expires) {
        post([answer = it->second.answer, done = std::move(done)] { done(answer); });
        return;
      }
      cache_.erase(it);
    }
    if (!plausible_name(key.first)) {
      DnsAnswer a;
      a.error = "not a domain name: \"" + raw_name + "\"";
      post([a, done = std::move(done)] { done(a); });
      return;
    }
    auto [it, fresh] = waiting_.try_emplace(key);
    it->second.push_back(std::move(done));
    if (!fresh) return;
    ++queries_;
    ares_query(channel_, key.first.c_str(), kClassIn, static_cast<int>(type), &Impl::on_reply,
               new Pending{this, key});
    reschedule();
  }

  void resolve_mx(const std::string& raw_domain, MxCallback done, HostAddresses addresses) {
    auto job = std::make_shared<MxJob>();
    job->domain = normalise_name(raw_domain);
    job->addresses = addresses;
    job->done = std::move(done);
    if (!plausible_name(job->domain)) {
      job->result.status = MxStatus::kNoSuchDomain;
      job->result.error = "not a domain name: \"" + raw_domain + "\"";
      post([job] { job->done(job->result); });
      return;
    }
    query(job->domain, DnsType::kMx, [this, job](const DnsAnswer& mx) { on_mx(job, mx); });
  }

  void clear_cache() { cache_.clear(); }
  std::uint64_t queries_sent() const { return queries_; }

 private:
  using Key = std::pair<std::string, DnsType>;
  struct Pending {
    Impl* self;
    Key key;
  };
  struct CacheEntry {
    DnsAnswer answer;
    Clock::time_point expires;
  };
  // One resolve_mx(): the MX answer, then the address answers it needs.
  struct MxJob {
    std::string domain;
    HostAddresses addresses = HostAddresses::kLookUp;
    MxCallback done;
    MxResult result;
    // Per host: its A and its AAAA answer.
    std::vector<std::pair<DnsAnswer, DnsAnswer>> host_answers;
    std::size_t outstanding = 0;
  };
  struct Watch {
    Watch(asio::io_context& io, int fd) : fd(fd), descriptor(io, fd) {}
    void release() {
      removed = true;
      if (descriptor.is_open()) {
        boost::system::error_code ignored;
        descriptor.cancel(ignored);
        descriptor.release();  // c-ares closes its own sockets
      }
    }
    int fd;
    asio::posix::stream_descriptor descriptor;
    bool want_read = false, want_write = false;
    bool read_pending = false, write_pending = false;
    bool removed = false;
  };

  Clock::time_point now() const { return options_.clock ? options_.clock() : Clock::now(); }

  static void on_reply(void* arg, int status, int, unsigned char* abuf, int alen) {
    std::unique_ptr<Pending> pending(static_cast<Pending*>(arg));
    Impl* self = pending->self;
    if (self->destroying_) return;
    DnsAnswer a;
    switch (status) {
      case ARES_SUCCESS:
      case ARES_ENODATA:
        a.status = DnsStatus::kNoData;
        if (abuf != nullptr) parse_reply(pending->key.second, abuf, alen, a);
        break;
      case ARES_ENOTFOUND:
        a.status = DnsStatus::kNxDomain;
        if (abuf != nullptr) parse_reply(pending->key.second, abuf, alen, a);
        break;
      default:
        a.error = ares_strerror(status);
        break;
    }
    self->finish(pending->key, std::move(a));
  }

  // Caches the answer and hands it to every waiter, from the io_context.
  void finish(const Key& key, DnsAnswer answer) {
    std::chrono::seconds keep{0};
    if (answer.ok()) {
      keep = std::min(answer.ttl, options_.max_cache_ttl);
    } else if (answer.empty()) {
      keep = answer.ttl.count() > 0 ? std::min(answer.ttl, options_.negative_cache_for)
                                    : options_.negative_cache_for;
    }
    if (keep.count() > 0) {
      make_room();
      cache_[key] = {answer, now() + keep};
    }
    auto node = waiting_.extract(key);
    if (node.empty()) return;
    post([answer = std::move(answer), callbacks = std::move(node.mapped())] {
      for (const auto& cb : callbacks) cb(answer);
    });
  }

  // Runs `f` from the io_context unless the resolver is gone by then.
  template <typename F>
  void post(F f) {
    asio::post(io_, [alive = std::weak_ptr<bool>(alive_), f = std::move(f)] {
      if (!alive.expired()) f();
    });
  }

  void make_room() {
    if (cache_.size() < options_.max_cache_entries) return;
    const auto t = now();
    std::erase_if(cache_, [t](const auto& entry) { return entry.second.expires <= t; });
    if (cache_.size() >= options_.max_cache_entries) cache_.clear();
  }

  void on_mx(const std::shared_ptr<MxJob>& job, const DnsAnswer& mx) {
    MxResult& r = job->result;
    switch (mx.status) {
      case DnsStatus::kNxDomain:
        r.status = MxStatus::kNoSuchDomain;
        r.ttl = mx.ttl;
        r.error = "no such domain (NXDOMAIN)";
        return deliver(job);
      case DnsStatus::kError:
        r.error = "MX lookup: " + mx.error;
        return deliver(job);
      case DnsStatus::kNoData:
        // RFC 5321 5.1: no MX records, so the domain's own address is the host.
        r.implicit = true;
        r.hosts.push_back({job->domain, 0, {}});
        break;
      case DnsStatus::kOk:
        r.ttl = mx.ttl;
        for (const MxRecord& m : mx.mx) {
          if (!m.exchange.empty()) r.hosts.push_back({m.exchange, m.preference, {}});
        }
        if (r.hosts.empty()) {
          r.status = MxStatus::kNullMx;
          r.error = "null MX (RFC 7505): the domain accepts no mail";
          return deliver(job);
        }
        std::sort(r.hosts.begin(), r.hosts.end(), [](const MxHost& a, const MxHost& b) {
          return std::tie(a.preference, a.name) < std::tie(b.preference, b.name);
        });
        r.status = MxStatus::kOk;
        if (job->addresses == HostAddresses::kSkip) return deliver(job);
        break;
    }
    job->host_answers.resize(r.hosts.size());
    job->outstanding = 2 * r.hosts.size();
    for (std::size_t i = 0; i < r.hosts.size(); ++i) {
      query(r.hosts[i].name, DnsType::kA, [this, job, i](const DnsAnswer& a) {
        job->host_answers[i].first = a;
        if (--job->outstanding == 0) on_addresses(job);
      });
      query(r.hosts[i].name, DnsType::kAaaa, [this, job, i](const DnsAnswer& a) {
        job->host_answers[i].second = a;
        if (--job->outstanding == 0) on_addresses(job);
      });
    }
  }

  void on_addresses(const std::shared_ptr<MxJob>& job) {
    MxResult& r = job->result;
    for (std::size_t i = 0; i < r.hosts.size(); ++i) {
      const auto& [v4, v6] = job->host_answers[i];
      auto& out = r.hosts[i].addresses;
      out.insert(out.end(), v4.records.begin(), v4.records.end());
      out.insert(out.end(), v6.records.begin(), v6.records.end());
    }
    if (!r.implicit) return deliver(job);
    // Implicit MX: the domain's addresses decide whether it has a mail host.
    const auto& [v4, v6] = job->host_answers.front();
    if (!r.hosts.front().addresses.empty()) {
      r.status = MxStatus::kOk;
      r.ttl = std::min(v4.ok() ? v4.ttl : v6.ttl, v6.ok() ? v6.ttl : v4.ttl);
    } else if (v4.status == DnsStatus::kError || v6.status == DnsStatus::kError) {
      r.status = MxStatus::kTemporaryFailure;
      r.error = "address lookup: " + (v4.status == DnsStatus::kError ? v4.error : v6.error);
    } else {
      const bool nx = v4.status == DnsStatus::kNxDomain || v6.status == DnsStatus::kNxDomain;
      r.status = nx ? MxStatus::kNoSuchDomain : MxStatus::kNoMailHost;
      r.error = nx ? "no such domain (NXDOMAIN)" : "neither MX nor address records";
      r.ttl = std::min(v4.ttl, v6.ttl);
    }
    if (r.status != MxStatus::kOk) r.hosts.clear();
    deliver(job);
  }

  // Called from a query's callback or the io_context: hands the result over.
  void deliver(const std::shared_ptr<MxJob>& job) {
    if (job->result.status == MxStatus::kOk) job->result.error.clear();
    if (job->result.status == MxStatus::kTemporaryFailure) job->result.ttl = {};
    job->done(job->result);
  }

  static void on_socket_state(void* data, ares_socket_t fd, int readable, int writable) {
    auto* self = static_cast<Impl*>(data);
    if (!readable && !writable) {
      if (auto it = self->watches_.find(fd); it != self->watches_.end()) {
        it->second->release();
        self->watches_.erase(it);
      }
      return;
    }
    auto it = self->watches_.find(fd);
    if (it == self->watches_.end()) {
      it = self->watches_.emplace(fd, std::make_shared<Watch>(self->io_, fd)).first;
    }
    it->second->want_read = readable != 0;
    it->second->want_write = writable != 0;
    self->arm(it->second);
  }

  void arm(const std::shared_ptr<Watch>& w) {
    using sd = asio::posix::stream_descriptor;
    if (w->want_read && !w->read_pending) {
      w->read_pending = true;
      w->descriptor.async_wait(sd::wait_read, [this, w](const boost::system::error_code& ec) {
        w->read_pending = false;
        if (ec == asio::error::operation_aborted || w->removed) return;
        ares_process_fd(channel_, w->fd, ARES_SOCKET_BAD);
        after_processing(w);
      });
    }
    if (w->want_write && !w->write_pending) {
      w->write_pending = true;
      w->descriptor.async_wait(sd::wait_write, [this, w](const boost::system::error_code& ec) {
        w->write_pending = false;
        if (ec == asio::error::operation_aborted || w->removed) return;
        ares_process_fd(channel_, ARES_SOCKET_BAD, w->fd);
        after_processing(w);
      });
    }
  }

  void after_processing(const std::shared_ptr<Watch>& w) {
    if (!w->removed) arm(w);
    reschedule();
  }

  // c-ares retries and times out queries only when asked: wake it when its
  // next deadline passes.
  void reschedule() {
    timeval tv{};
    if (ares_timeout(channel_, nullptr, &tv) == nullptr) {
      timer_.cancel();
      return;
    }
    timer_.expires_after(std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec));
    timer_.async_wait(
        [this, alive = std::weak_ptr<bool>(alive_)](const boost::system::error_code& ec) {
          if (ec || alive.expired()) return;
          ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
          reschedule();
        });
  }

  asio::io_context& io_;
  DnsResolverOptions options_;
  ares_channel channel_ = nullptr;
  asio::steady_timer timer_;
  std::unordered_map<int, std::shared_ptr<Watch>> watches_;
  std::map<Key, CacheEntry> cache_;
  std::map<Key, std::vector<AnswerCallback>> waiting_;
  std::uint64_t queries_ = 0;
  bool destroying_ = false;
  // Timer handlers queued before destruction see this expired.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

DnsResolver::DnsResolver(asio::io_context& io, DnsResolverOptions options)
    : impl_(std::make_unique<Impl>(io, std::move(options))) {}

DnsResolver::~DnsResolver() = default;

void DnsResolver::query(const std::string& name, DnsType type, AnswerCallback done) {
  impl_->query(name, type, std::move(done));
}

void DnsResolver::resolve_mx(const std::string& domain, MxCallback done, HostAddresses addresses) {
  impl_->resolve_mx(domain, std::move(done), addresses);
}

void DnsResolver::clear_cache() {
  impl_->clear_cache();
}

std::uint64_t DnsResolver::queries_sent() const {
  return impl_->queries_sent();
}

BlockingDnsResolver::BlockingDnsResolver(DnsResolverOptions options)
    : resolver_(std::make_unique<DnsResolver>(io_, std::move(options))) {}

BlockingDnsResolver::~BlockingDnsResolver() {
  resolver_.reset();
}

bool BlockingDnsResolver::run_one() {
  if (io_.stopped()) io_.restart();
  return io_.run_one() > 0;
}

std::vector<DnsAnswer> BlockingDnsResolver::resolve(const std::vector<DnsQuestion>& questions) {
  std::vector<DnsAnswer> answers(questions.size());
  std::size_t remaining = questions.size();
  for (std::size_t i = 0; i < questions.size(); ++i) {
    resolver_->query(questions[i].name, questions[i].type,
                     [&answers, &remaining, i](const DnsAnswer& a) {
                       answers[i] = a;
                       --remaining;
                     });
  }
  while (remaining > 0 && run_one()) {
  }
  return answers;
}

DnsAnswer BlockingDnsResolver::resolve(const std::string& name, DnsType type) {
  return resolve(std::vector<DnsQuestion>{{name, type}}).front();
}

MxResult BlockingDnsResolver::resolve_mx(const std::string& domain, HostAddresses addresses) {
  MxResult result;
  bool done = false;
  resolver_->resolve_mx(
      domain,
      [&](const MxResult& r) {
        result = r;
        done = true;
      },
      addresses);
  while (!done && run_one()) {
  }
  return result;
}

}  // namespace mailer::sender
