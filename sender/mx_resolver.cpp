#include "sender/mx_resolver.h"

#include <ares.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cctype>
#include <map>
#include <stdexcept>
#include <unordered_map>

namespace mailer::sender {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

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

// DNS class IN and types MX, from RFC 1035 (arpa/nameser.h spells them
// differently across libcs).
constexpr int kClassIn = 1;
constexpr int kTypeMx = 15;

std::string normalise_domain(std::string d) {
  while (!d.empty() && d.back() == '.') d.pop_back();
  std::transform(d.begin(), d.end(), d.begin(), [](unsigned char c) { return std::tolower(c); });
  return d;
}

MxStatus status_of(int ares_status) {
  switch (ares_status) {
    case ARES_ENOTFOUND:
      return MxStatus::kNoSuchDomain;
    case ARES_ENODATA:
      return MxStatus::kNoMailHost;
    default:
      return MxStatus::kTemporaryFailure;
  }
}

std::vector<std::string> addresses_of(const ares_addrinfo* info) {
  std::vector<std::string> out;
  for (auto* n = info ? info->nodes : nullptr; n != nullptr; n = n->ai_next) {
    char text[INET6_ADDRSTRLEN] = {};
    if (n->ai_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(n->ai_addr)->sin_addr, text, sizeof text);
    } else if (n->ai_family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(n->ai_addr)->sin6_addr, text,
                sizeof text);
    } else {
      continue;
    }
    if (std::find(out.begin(), out.end(), text) == out.end()) out.emplace_back(text);
  }
  return out;
}

}  // namespace

class MxResolver::Impl {
 public:
  Impl(asio::io_context& io, MxResolverOptions options)
      : io_(io), options_(std::move(options)), timer_(io) {
    static const int library = ares_library_init(ARES_LIB_INIT_ALL);
    if (library != ARES_SUCCESS) throw std::runtime_error("ares_library_init failed");
    ares_options o{};
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_NDOTS;
    o.sock_state_cb = &Impl::on_socket_state;
    o.sock_state_cb_data = this;
    o.timeout = static_cast<int>(options_.timeout.count());
    o.tries = options_.tries;
    o.ndots = 1;                // "mx.example.com" is tried as given before any search domain
    std::string lookups = "b";  // DNS only: a test's server must not be bypassed by /etc/hosts
    if (!options_.dns_server.empty()) {
      o.lookups = lookups.data();
      mask |= ARES_OPT_LOOKUPS;
    }
    if (int rc = ares_init_options(&channel_, &o, mask); rc != ARES_SUCCESS) {
      throw std::runtime_error(std::string("MxResolver: ares_init_options: ") + ares_strerror(rc));
    }
    if (!options_.dns_server.empty()) {
      if (int rc = ares_set_servers_ports_csv(channel_, options_.dns_server.c_str());
          rc != ARES_SUCCESS) {
        ares_destroy(channel_);
        throw std::runtime_error("MxResolver: bad DNS server \"" + options_.dns_server +
                                 "\": " + ares_strerror(rc));
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

  void resolve(const std::string& raw_domain, Callback done) {
    std::string domain = normalise_domain(raw_domain);
    if (auto it = cache_.find(domain); it != cache_.end()) {
      if (Clock::now() < it->second.expires) {
        asio::post(io_, [result = it->second.result, done = std::move(done)] { done(result); });
        return;
      }
      cache_.erase(it);
    }
    if (domain.empty() || domain.find_first_of(" \r\n\t") != std::string::npos) {
      MxResult r;
      r.status = MxStatus::kNoSuchDomain;
      r.error = "not a domain name: \"" + raw_domain + "\"";
      asio::post(io_, [r, done = std::move(done)] { done(r); });
      return;
    }
    auto [it, fresh] = waiting_.try_emplace(domain);
    it->second.push_back(std::move(done));
    if (!fresh) return;
    auto* lookup = new Lookup{this, domain, {}, 0};
    ++queries_;
    ares_query(channel_, domain.c_str(), kClassIn, kTypeMx, &Impl::on_mx, lookup);
    reschedule();
  }

  void clear_cache() { cache_.clear(); }
  std::uint64_t queries_sent() const { return queries_; }

 private:
  struct Lookup {
    Impl* self;
    std::string domain;
    MxResult result;
    std::size_t outstanding;  // address lookups still running
  };
  struct AddressLookup {
    Lookup* lookup;
    std::size_t host;
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
  struct CacheEntry {
    MxResult result;
    Clock::time_point expires;
  };

  static void on_mx(void* arg, int status, int, unsigned char* answer, int length) {
    auto* lookup = static_cast<Lookup*>(arg);
    Impl* self = lookup->self;
    if (self->destroying_) {
      delete lookup;
      return;
    }
    MxResult& r = lookup->result;
    ares_mx_reply* mx = nullptr;
    if (status == ARES_SUCCESS) status = ares_parse_mx_reply(answer, length, &mx);
    if (status == ARES_SUCCESS) {
      for (auto* m = mx; m != nullptr; m = m->next) {
        std::string host = normalise_domain(m->host ? m->host : "");
        if (host.empty()) {
          r.status = MxStatus::kNullMx;  // RFC 7505
          r.hosts.clear();
          break;
        }
        r.hosts.push_back({host, m->priority, {}});
      }
      ares_free_data(mx);
      if (r.status == MxStatus::kNullMx) return self->finish(lookup);
      std::sort(r.hosts.begin(), r.hosts.end(), [](const MxHost& a, const MxHost& b) {
        return std::tie(a.preference, a.name) < std::tie(b.preference, b.name);
      });
      r.status = MxStatus::kOk;
    } else if (status == ARES_ENODATA) {
      // No MX: the domain itself is the mail host if it has an address.
      r.implicit = true;
      r.hosts.push_back({lookup->domain, 0, {}});
    } else {
      r.status = status_of(status);
      r.error = std::string("MX lookup: ") + ares_strerror(status);
      return self->finish(lookup);
    }
    lookup->outstanding = r.hosts.size();
    for (std::size_t i = 0; i < r.hosts.size(); ++i) {
      ares_addrinfo_hints hints{};
      hints.ai_family = AF_UNSPEC;
      ++self->queries_;
      ares_getaddrinfo(self->channel_, r.hosts[i].name.c_str(), nullptr, &hints,
                       &Impl::on_addresses, new AddressLookup{lookup, i});
    }
  }

  static void on_addresses(void* arg, int status, int, ares_addrinfo* info) {
    auto* al = static_cast<AddressLookup*>(arg);
    Lookup* lookup = al->lookup;
    MxResult& r = lookup->result;
    if (!lookup->self->destroying_) {
      if (status == ARES_SUCCESS) r.hosts[al->host].addresses = addresses_of(info);
      if (r.implicit && status != ARES_SUCCESS) {
        r.status = status_of(status);
        r.error = std::string("address lookup: ") + ares_strerror(status);
      }
    }
    ares_freeaddrinfo(info);
    delete al;
    if (--lookup->outstanding > 0) return;
    if (lookup->self->destroying_) {
      delete lookup;
      return;
    }
    if (r.implicit && r.hosts.front().addresses.empty()) {
      if (r.error.empty()) {
        r.status = MxStatus::kNoMailHost;
        r.error = "no MX and no address records";
      }
      r.hosts.clear();
    } else {
      r.status = MxStatus::kOk;
      r.error.clear();
    }
    lookup->self->finish(lookup);
  }

  // Caches the answer and hands it to every waiter, from the io_context.
  void finish(Lookup* lookup) {
    std::unique_ptr<Lookup> owned(lookup);
    const MxResult& r = lookup->result;
    if (r.status == MxStatus::kOk) {
      cache_[lookup->domain] = {r, Clock::now() + options_.cache_for};
    } else if (r.permanent_failure()) {
      cache_[lookup->domain] = {r, Clock::now() + options_.negative_cache_for};
    }
    auto node = waiting_.extract(lookup->domain);
    if (node.empty()) return;
    asio::post(io_, [r, callbacks = std::move(node.mapped())] {
      for (const auto& cb : callbacks) cb(r);
    });
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
  MxResolverOptions options_;
  ares_channel channel_ = nullptr;
  asio::steady_timer timer_;
  std::unordered_map<int, std::shared_ptr<Watch>> watches_;
  std::map<std::string, CacheEntry> cache_;
  std::map<std::string, std::vector<Callback>> waiting_;
  std::uint64_t queries_ = 0;
  bool destroying_ = false;
  // Timer handlers queued before destruction see this expired.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

MxResolver::MxResolver(asio::io_context& io, MxResolverOptions options)
    : impl_(std::make_unique<Impl>(io, std::move(options))) {}

MxResolver::~MxResolver() = default;

void MxResolver::resolve(const std::string& domain, Callback done) {
  impl_->resolve(domain, std::move(done));
}

void MxResolver::clear_cache() {
  impl_->clear_cache();
}

std::uint64_t MxResolver::queries_sent() const {
  return impl_->queries_sent();
}

}  // namespace mailer::sender
