#include "sender/dispatcher.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "throttle/aimd_controller.h"
#include "throttle/pacer.h"
#include "throttle/provider_classifier.h"
#include "throttle/signal.h"

namespace mailer::sender {
namespace {

using Clock = std::chrono::system_clock;
using throttle::Signal;

throttle::TimePoint to_tp(Clock::time_point t) {
  return std::chrono::time_point_cast<throttle::Duration>(t);
}

// The merge fields of a recipient from its attributes (a JSON object):
// strings as they are, numbers and booleans in their JSON spelling, null and
// nested values left out.
MergeFields fields_from_json(const std::string& text) {
  MergeFields fields;
  const auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) return fields;
  for (const auto& [key, value] : json.items()) {
    if (value.is_string()) {
      fields.Set(key, value.get<std::string>());
    } else if (value.is_number() || value.is_boolean()) {
      fields.Set(key, value.dump());
    }
  }
  return fields;
}

// The reply of a failure found before any server spoke (bad address, no
// mail host): kept in last_reply, never fed to a controller.
throttle::SmtpReply local_reply(int code, std::string enhanced, std::string text) {
  throttle::SmtpReply r;
  r.code = code;
  r.enhanced_status = std::move(enhanced);
  r.text = std::move(text);
  r.stage = throttle::SmtpStage::kRcpt;
  return r;
}

std::string domain_of(const std::string& email) {
  const auto at = email.rfind('@');
  return at == std::string::npos ? std::string() : email.substr(at + 1);
}

}  // namespace

// How long idle connections get to answer QUIT when the worker stops.
constexpr std::chrono::seconds kQuitGrace{2};

// One message handed to the sending thread.
struct Job {
  ClaimedDelivery delivery;
  std::shared_ptr<const MessageComposer> composer;
  std::string route;  // "mx" or a URL
  std::size_t connection_limit = 1;
  Clock::time_point sent_at;
};

// What the sending thread reports for one job.
struct SendReport {
  ClaimedDelivery delivery;
  Clock::time_point sent_at;
  // From the SMTP client (reply_from_server says whether a server spoke)...
  std::optional<SmtpResult> sent;
  // ...or a failure before sending: the outcome kind and its reply.
  OutcomeKind local_kind = OutcomeKind::kFailed;
  throttle::SmtpReply local;
  std::string local_signal;
};

// A relay route URL: smtp://host:port or smtps://host:port.
struct RelayRoute {
  bool implicit_tls = false;
  std::string host;
  std::string port;
};

std::optional<RelayRoute> parse_route(const std::string& url) {
  RelayRoute r;
  std::string_view rest(url);
  if (rest.starts_with("smtps://")) {
    r.implicit_tls = true;
    rest.remove_prefix(8);
  } else if (rest.starts_with("smtp://")) {
    rest.remove_prefix(7);
  } else {
    return std::nullopt;
  }
  if (const auto slash = rest.find('/'); slash != std::string_view::npos)
    rest = rest.substr(0, slash);
  std::string_view host = rest;
  std::string_view port = r.implicit_tls ? "465" : "25";
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = rest.substr(1, close - 1);
    if (close + 1 < rest.size() && rest[close + 1] == ':') port = rest.substr(close + 2);
  } else if (const auto colon = rest.rfind(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  if (host.empty() || port.empty()) return std::nullopt;
  r.host = std::string(host);
  r.port = std::string(port);
  return r;
}

// A host to try for one message: its name (SNI, certificate check, pool
// matching) and its addresses.
struct Target {
  std::string name;
  std::vector<boost::asio::ip::tcp::endpoint> endpoints;
  bool relay = false;
  bool implicit_tls = false;
};

// The sending thread: one io_context carrying every SMTP connection, pooled
// per provider key, and the MX resolver.
class Sender {
 public:
  using Report = std::function<void(SendReport)>;

  Sender(const DispatcherSettings& settings, Report report)
      : settings_(settings),
        report_(std::move(report)),
        work_(io_.get_executor()),
        sweep_(io_),
        random_(std::random_device{}()) {
    tls_ = std::make_shared<boost::asio::ssl::context>(boost::asio::ssl::context::tls_client);
    tls_->set_default_verify_paths();
    // Checked by the caller; a bundle that still fails here trusts nothing more.
    if (!settings_.ca_pem.empty()) {
      boost::system::error_code ec;
      tls_->add_certificate_authority(boost::asio::buffer(settings_.ca_pem), ec);
      if (ec) spdlog::error("extra certificate authorities not loaded: {}", ec.message());
    }
    tls_->set_options(boost::asio::ssl::context::default_workarounds |
                      boost::asio::ssl::context::no_sslv2 | boost::asio::ssl::context::no_sslv3 |
                      boost::asio::ssl::context::no_tlsv1 | boost::asio::ssl::context::no_tlsv1_1);
    // DKIM signing costs far more than the rest of a message (an RSA-2048
    // signature is about 0.4 ms of a core): it runs on threads of its own,
    // one per core, so that it neither stalls every connection on the
    // sending thread nor leaves the other cores idle.
    if (!settings_.dkim.empty()) {
      signers_.emplace(std::clamp<std::size_t>(std::thread::hardware_concurrency(), 1, 16));
    }
    thread_ = std::thread([this] { run(); });
  }

  ~Sender() {
    // Messages being signed are handed to the sending thread (which still
    // runs) before it closes the connections.
    if (signers_) signers_->join();
    boost::asio::post(io_, [this] { close_all(); });
    work_.reset();
    if (thread_.joinable()) thread_.join();
  }

  void post(Job job) {
    if (!signers_) {
      boost::asio::post(io_, [this, job = std::move(job)]() mutable { start(std::move(job)); });
      return;
    }
    boost::asio::post(*signers_, [this, job = std::move(job)]() mutable {
      auto a = std::make_shared<Attempt>();
      a->job = std::move(job);
      std::optional<Refusal> refused = compose(*a);
      boost::asio::post(io_, [this, a, refused = std::move(refused)]() mutable {
        if (refused) return refuse(a->job, std::move(*refused));
        start_composed(a);
      });
    });
  }

 private:
  struct Conn {
    std::shared_ptr<SmtpClient> client;
    std::string host;
    bool busy = true;  // connecting or carrying a message
    Clock::time_point idle_since;
  };
  struct Pool {
    std::vector<std::shared_ptr<Conn>> conns;
    std::size_t limit = 1;
  };
  struct Attempt {
    Job job;
    SmtpMessage message;
    std::vector<Target> targets;
    std::size_t next = 0;
    std::optional<SmtpResult> last_failure;
    bool retried_fresh = false;
  };

  void run() {
    try {
      resolver_ = std::make_unique<DnsResolver>(io_, settings_.mx);
    } catch (const std::exception& e) {
      spdlog::error("MX resolver unavailable: {}", e.what());
    }
    schedule_sweep();
    io_.run();
    pools_.clear();
    resolver_.reset();
  }

  // QUIT on idle connections (a server that does not answer it within
  // kQuitGrace is closed on), close on the rest.
  void close_all() {
    stopping_ = true;
    sweep_.cancel();
    auto pending = std::make_shared<std::size_t>(0);
    for (auto& [key, pool] : pools_) {
      for (auto& c : pool.conns) {
        if (!c->busy) {
          ++*pending;
          c->client->quit([this, c, pending](SmtpResult) {
            if (--*pending == 0) sweep_.cancel();
          });
        } else {
          c->client->close();
        }
      }
    }
    resolver_.reset();
    if (*pending == 0) {
      pools_.clear();
      return;
    }
    sweep_.expires_after(kQuitGrace);
    sweep_.async_wait([this](boost::system::error_code) {
      for (auto& [key, pool] : pools_) {
        for (auto& c : pool.conns) c->client->close();
      }
      pools_.clear();
    });
  }

  void schedule_sweep() {
    sweep_.expires_after(std::chrono::seconds(1));
    sweep_.async_wait([this](boost::system::error_code ec) {
      if (ec || stopping_) return;
      sweep();
      schedule_sweep();
    });
  }

  // Closes connections idle for longer than idle_timeout, and idle ones above
  // a pool's (lowered) limit.
  void sweep() {
    const auto now = Clock::now();
    for (auto& entry : pools_) {
      // A named reference, not a structured binding: the lambda below
      // captures it, which C++20 as clang 14 implements does not allow.
      Pool& pool = entry.second;
      std::size_t open = pool.conns.size();
      std::erase_if(pool.conns, [&](const std::shared_ptr<Conn>& c) {
        if (c->busy) return false;
        if (!c->client->usable() || now - c->idle_since >= settings_.idle_timeout ||
            open > pool.limit) {
          --open;
          c->client->quit([c](SmtpResult) {});
          return true;
        }
        return false;
      });
    }
  }

  void report_local(Job& job, OutcomeKind kind, throttle::SmtpReply reply, Signal signal) {
    SendReport r;
    r.delivery = std::move(job.delivery);
    r.sent_at = job.sent_at;
    r.local_kind = kind;
    r.local = std::move(reply);
    r.local_signal = std::string(throttle::signal_name(signal));
    report_(std::move(r));
  }

  void report_sent(Attempt& a, SmtpResult result) {
    SendReport r;
    r.delivery = std::move(a.job.delivery);
    r.sent_at = a.job.sent_at;
    r.sent = std::move(result);
    report_(std::move(r));
  }

  SmtpClientOptions client_options(const Target& t) const {
    SmtpClientOptions o;
    o.helo_name = settings_.helo_name;
    o.source_address = settings_.source_address;
    o.implicit_tls = t.implicit_tls;
    // MX hosts: opportunistic TLS unless required (their certificates rarely
    // match their names; verification stays as configured).
    o.starttls = t.relay || settings_.starttls == StartTls::kRequired ? settings_.starttls
                                                                      : StartTls::kOpportunistic;
    o.verify_certificates = settings_.verify_peer;
    o.tls_context = tls_;
    if (t.relay) o.login = settings_.relay_auth;
    o.max_messages = std::max<std::size_t>(1, settings_.messages_per_connection);
    o.timeouts = settings_.timeouts;
    return o;
  }

  // Why a message was not made: its outcome, reply and signal.
  struct Refusal {
    OutcomeKind kind;
    throttle::SmtpReply reply;
    Signal signal;
  };
  void refuse(Job& job, Refusal r) { report_local(job, r.kind, std::move(r.reply), r.signal); }

  // Composes (and signs) the message of `a.job` into `a.message`. Touches
  // nothing but `a` and the read-only settings, so it may run on a signing
  // thread.
  std::optional<Refusal> compose(Attempt& a) const {
    try {
      const Job& job = a.job;
      DeliveryRecipient recipient;
      recipient.delivery_id = job.delivery.id;
      recipient.recipient_id = job.delivery.recipient_id;
      recipient.email = job.delivery.email;
      recipient.fields = fields_from_json(job.delivery.attributes_json);
      ComposedMessage m = job.composer->Compose(std::move(recipient), Clock::now());
      std::string data = settings_.dkim.empty() ? std::move(m.data)
                                                : SignMessage(m.data, settings_.dkim, Clock::now());
      a.message.envelope_from = m.envelope_from.envelope_form();
      a.message.recipients.push_back(m.envelope_to.envelope_form());
      a.message.content = std::make_shared<const std::string>(std::move(data));
    } catch (const MimeError& e) {
      return Refusal{OutcomeKind::kFailed,
                     local_reply(553, "5.1.3", fmt::format("unusable address: {}", e.what())),
                     Signal::kHardBounce};
    } catch (const std::exception& e) {
      // A signing key or template problem is the sender's to fix: the
      // recipient waits for a retry instead of being lost.
      return Refusal{OutcomeKind::kDeferred,
                     local_reply(451, "4.3.0", fmt::format("message not composed: {}", e.what())),
                     Signal::kTransient};
    }
    return std::nullopt;
  }

  void start(Job job) {
    auto a = std::make_shared<Attempt>();
    a->job = std::move(job);
    if (!stopping_) {
      if (std::optional<Refusal> refused = compose(*a)) return refuse(a->job, std::move(*refused));
    }
    start_composed(a);
  }

  // On the sending thread, with the message made.
  void start_composed(const std::shared_ptr<Attempt>& a) {
    if (stopping_) {
      report_local(a->job, OutcomeKind::kDeferred, local_reply(421, "4.4.2", "worker stopping"),
                   Signal::kTransient);
      return;
    }
    Pool& pool = pools_[a->job.delivery.provider];
    pool.limit = std::max<std::size_t>(1, a->job.connection_limit);
    if (a->job.route != "mx") return start_relay(a);
    if (!resolver_) {
      report_local(a->job, OutcomeKind::kDeferred,
                   local_reply(451, "4.4.3", "MX resolver unavailable"), Signal::kTransient);
      return;
    }
    const std::string domain = domain_of(a->job.delivery.email);
    resolver_->resolve_mx(domain, [this, a, domain](const MxResult& mx) {
      if (mx.permanent_failure()) {
        report_local(
            a->job, OutcomeKind::kBounced,
            local_reply(550, "5.1.2",
                        fmt::format("{}: no mail host ({})", domain, to_string(mx.status))),
            Signal::kHardBounce);
        return;
      }
      // Preference order, shuffled within one preference (RFC 5321 §5.1).
      std::vector<MxHost> hosts = mx.hosts;
      std::shuffle(hosts.begin(), hosts.end(), random_);
      std::stable_sort(hosts.begin(), hosts.end(), [](const MxHost& x, const MxHost& y) {
        return x.preference < y.preference;
      });
      for (const MxHost& h : hosts) {
        Target t;
        t.name = h.name;
        for (const std::string& address : h.addresses) {
          boost::system::error_code ec;
          const auto ip = boost::asio::ip::make_address(address, ec);
          if (!ec) t.endpoints.emplace_back(ip, settings_.mx_port);
        }
        if (!t.endpoints.empty()) a->targets.push_back(std::move(t));
      }
      if (mx.status != MxStatus::kOk || a->targets.empty()) {
        report_local(a->job, OutcomeKind::kDeferred,
                     local_reply(451, "4.4.3",
                                 fmt::format("{}: MX lookup failed: {}", domain,
                                             mx.error.empty() ? "no address" : mx.error)),
                     Signal::kTransient);
        return;
      }
      acquire(a);
    });
  }

  void start_relay(const std::shared_ptr<Attempt>& a) {
    const std::optional<RelayRoute> route = parse_route(a->job.route);
    if (!route) {
      report_local(a->job, OutcomeKind::kDeferred,
                   local_reply(451, "4.3.5", fmt::format("unusable route {}", a->job.route)),
                   Signal::kTransient);
      return;
    }
    Target t;
    t.name = route->host;
    t.relay = true;
    t.implicit_tls = route->implicit_tls;
    a->targets.push_back(t);
    // A pooled connection to the relay needs no lookup (acquire() looks the
    // relay up when it has to open a connection after all).
    if (idle_connection(a) != nullptr) return acquire(a);
    resolve_relay(a);
  }

  // Looks up the relay's addresses, then acquires a connection.
  void resolve_relay(const std::shared_ptr<Attempt>& a) {
    const std::optional<RelayRoute> route = parse_route(a->job.route);
    if (!route) return start_relay(a);  // reports the unusable route
    auto resolver = std::make_shared<boost::asio::ip::tcp::resolver>(io_);
    resolver->async_resolve(
        route->host, route->port,
        [this, a, resolver](boost::system::error_code ec,
                            boost::asio::ip::tcp::resolver::results_type results) {
          if (ec || results.empty()) {
            report_local(a->job, OutcomeKind::kDeferred,
                         local_reply(451, "4.4.3",
                                     fmt::format("{}: address lookup failed: {}",
                                                 a->targets.front().name, ec.message())),
                         Signal::kTransient);
            return;
          }
          for (const auto& entry : results)
            a->targets.front().endpoints.push_back(entry.endpoint());
          acquire(a);
        });
  }

  std::shared_ptr<Conn> idle_connection(const std::shared_ptr<Attempt>& a) {
    Pool& pool = pools_[a->job.delivery.provider];
    for (std::size_t i = a->next; i < a->targets.size(); ++i) {
      for (auto& c : pool.conns) {
        if (!c->busy && c->host == a->targets[i].name && c->client->usable()) return c;
      }
    }
    return nullptr;
  }

  // Sends on an idle pooled connection to one of the remaining targets, or
  // opens one to the next target (closing an idle one if the pool is full).
  void acquire(const std::shared_ptr<Attempt>& a) {
    if (stopping_) {
      report_local(a->job, OutcomeKind::kDeferred, local_reply(421, "4.4.2", "worker stopping"),
                   Signal::kTransient);
      return;
    }
    if (auto c = idle_connection(a)) {
      c->busy = true;
      return send_on(a, c);
    }
    if (a->next >= a->targets.size()) {
      SmtpResult r = a->last_failure.value_or(SmtpResult{});
      return report_sent(*a, std::move(r));
    }
    Pool& pool = pools_[a->job.delivery.provider];
    std::erase_if(pool.conns,
                  [](const std::shared_ptr<Conn>& c) { return !c->busy && !c->client->usable(); });
    while (pool.conns.size() >= pool.limit) {
      auto idle = std::find_if(pool.conns.begin(), pool.conns.end(),
                               [](const std::shared_ptr<Conn>& c) { return !c->busy; });
      if (idle == pool.conns.end()) break;  // the limit was lowered: busy ones finish first
      auto c = *idle;
      pool.conns.erase(idle);
      c->client->quit([c](SmtpResult) {});
    }
    // A relay attempt that began on a pooled connection has no addresses yet
    // (that connection turned out closed): look them up first.
    if (a->targets[a->next].relay && a->targets[a->next].endpoints.empty()) {
      return resolve_relay(a);
    }
    const Target& target = a->targets[a->next++];
    auto conn = std::make_shared<Conn>();
    conn->host = target.name;
    conn->client = SmtpClient::create(io_, client_options(target));
    pool.conns.push_back(conn);
    conn->client->connect(target.endpoints, target.name, [this, a, conn](SmtpResult r) {
      if (r.ok()) {
        spdlog::debug("{}: connected to {}", a->job.delivery.provider, conn->host);
        return send_on(a, conn);
      }
      drop(a->job.delivery.provider, conn);
      spdlog::info("{}: {} for {}: {} {}", a->job.delivery.provider, conn->host,
                   a->job.delivery.email, to_string(r.outcome), throttle::one_line(r.reply));
      // No server answered (refused, unreachable, silent): the next host
      // within this attempt. A reply ends the attempt and counts.
      const bool unanswered = !r.reply_from_server && (r.outcome == SmtpOutcome::kConnectionLost ||
                                                       r.outcome == SmtpOutcome::kTimedOut);
      if (unanswered && !stopping_) {
        a->last_failure = std::move(r);
        return acquire(a);
      }
      report_sent(*a, std::move(r));
    });
  }

  void drop(const std::string& provider, const std::shared_ptr<Conn>& conn) {
    auto it = pools_.find(provider);
    if (it == pools_.end()) return;
    std::erase(it->second.conns, conn);
  }

  void send_on(const std::shared_ptr<Attempt>& a, const std::shared_ptr<Conn>& conn) {
    conn->client->send(a->message, [this, a, conn](SmtpResult r) {
      const bool usable = conn->client->usable() && !stopping_;
      if (usable) {
        conn->busy = false;
        conn->idle_since = Clock::now();
      } else {
        drop(a->job.delivery.provider, conn);
        conn->client->quit([conn](SmtpResult) {});
      }
      // A pooled connection the server closed while it was idle: nothing of
      // this message was sent, so it goes out once more on a fresh one.
      const bool stale =
          r.reused_connection && !r.reply_from_server &&
          r.reply.stage == throttle::SmtpStage::kMail &&
          (r.outcome == SmtpOutcome::kConnectionLost || r.outcome == SmtpOutcome::kNotAttempted);
      if (stale && !a->retried_fresh && !stopping_) {
        a->retried_fresh = true;
        a->next = 0;
        return acquire(a);
      }
      report_sent(*a, std::move(r));
    });
  }

  const DispatcherSettings& settings_;
  Report report_;
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  boost::asio::steady_timer sweep_;
  std::mt19937_64 random_;
  std::shared_ptr<boost::asio::ssl::context> tls_;
  std::unique_ptr<DnsResolver> resolver_;
  std::map<std::string, Pool> pools_;
  bool stopping_ = false;
  // Signing threads (only with [[dkim]] keys); see the constructor.
  std::optional<boost::asio::thread_pool> signers_;
  std::thread thread_;
};

// One provider key's throttle and queue.
struct ProviderState {
  ProviderState(std::string k, throttle::AimdController c, throttle::Pacer pc)
      : key(std::move(k)), controller(std::move(c)), pacer(pc) {}

  std::string key;
  throttle::AimdController controller;
  throttle::Pacer pacer;
  std::deque<ClaimedDelivery> waiting;
  // Messages on the wire (each holds one connection of the pool).
  std::size_t busy = 0;
  std::string route;
  // Since the last sample / counter flush.
  int accepted = 0;
  int deferred = 0;
  std::map<std::string, std::int64_t> signals;
  std::uint64_t accepted_total = 0;
  std::uint64_t deferred_total = 0;
  std::string last_throttle_reply;
  bool state_dirty = true;
};

class Dispatcher::Impl {
 public:
  Impl(DispatcherSettings settings, ThrottleStateStore& states, ReplyCountSink* counters,
       CampaignContentSource content)
      : settings_(std::move(settings)),
        states_(states),
        counters_(counters),
        content_(std::move(content)),
        classifier_(settings_.reply_rules),
        random_(std::random_device{}()) {
    if (!settings_.composer.tokens) {
      throw std::invalid_argument("dispatcher: an unsubscribe token codec is required");
    }
    for (const ThrottleStateRow& row : states_.load_states(settings_.egress)) {
      if (row.egress != settings_.egress) continue;
      std::string error;
      if (auto state = throttle::controller_state_from_json(row.state_json, &error)) {
        saved_[row.provider] = *state;
      } else {
        spdlog::warn("throttle state of {} ignored ({}): starting at the initial rate",
                     row.provider, error);
      }
    }
    // Runs on the sending thread as each message ends: its connection slot
    // is free at once, and the next waiting message of that provider goes
    // out on it right here, without waiting for the worker loop (which may be
    // busy claiming or writing outcomes for a while). The outcome itself is
    // classified on the worker loop's thread.
    sender_ = std::make_unique<Sender>(settings_, [this](SendReport r) {
      {
        // The slot is freed before the result is queued, so that the worker
        // loop never collects an outcome whose connection still counts.
        std::lock_guard state(state_mutex_);
        if (auto it = providers_.find(r.delivery.provider); it != providers_.end()) {
          if (it->second.busy > 0) --it->second.busy;
          if (!draining_ && !closing_)
            dispatch_provider(it->second, Clock::now(), nullptr, nullptr);
        }
      }
      {
        std::lock_guard lock(mutex_);
        results_.push_back(std::move(r));
      }
      cv_.notify_one();
    });
    last_history_ = last_state_ = Clock::now();
  }

  ~Impl() {
    {
      std::lock_guard state(state_mutex_);
      closing_ = true;
    }
    sender_.reset();
  }

  ProviderState& provider(const std::string& key) {
    auto it = providers_.find(key);
    if (it != providers_.end()) return it->second;
    const throttle::ProviderPolicy policy = policy_for(key);
    const auto now = to_tp(Clock::now());
    auto saved = saved_.find(key);
    throttle::AimdController controller =
        saved == saved_.end() ? throttle::AimdController(policy, now)
                              : throttle::AimdController(policy, saved->second, now);
    if (saved != saved_.end()) {
      spdlog::info("{}: resuming at {:.1f} msg/s, {} connection(s) (learned before)", key,
                   controller.rate(), controller.connections());
    }
    const double rate = controller.sending_rate();
    ProviderState p(key, std::move(controller), throttle::Pacer(rate, policy.burst));
    p.route = route_for(key);
    return providers_.emplace(key, std::move(p)).first->second;
  }

  throttle::ProviderPolicy policy_for(const std::string& key) const {
    if (auto it = settings_.policies.find(key); it != settings_.policies.end()) return it->second;
    const std::string family = throttle::provider_family(key);
    if (auto it = settings_.policies.find(family); it != settings_.policies.end()) {
      return it->second;
    }
    if (auto it = settings_.policies.find("other"); it != settings_.policies.end()) {
      return it->second;
    }
    return {};
  }

  std::string route_for(const std::string& key) const {
    if (auto it = settings_.routes.find(key); it != settings_.routes.end()) return it->second;
    const std::string family = throttle::provider_family(key);
    if (auto it = settings_.routes.find(family); it != settings_.routes.end()) return it->second;
    // "other" covers every provider not named.
    if (family != "gmail" && family != "outlook" && family != "yahoo") {
      if (auto it = settings_.routes.find("other"); it != settings_.routes.end()) {
        return it->second;
      }
    }
    return settings_.default_route;
  }

  std::size_t capacity(std::string_view key) {
    std::lock_guard state(state_mutex_);
    if (draining_) return 0;
    ProviderState& p = provider(std::string(key));
    p.controller.advance(to_tp(Clock::now()));
    const double rate = p.controller.sending_rate();
    if (rate <= 0) return 0;
    const std::size_t connections = static_cast<std::size_t>(p.controller.connections());
    const std::size_t target =
        connections + static_cast<std::size_t>(std::ceil(
                          rate * std::chrono::duration<double>(settings_.lookahead).count()));
    const std::size_t held = p.waiting.size() + p.busy;
    // Claim in chunks: only when half the target is gone, so a steady flow
    // costs few claim statements.
    if (held * 2 > target) return 0;
    return target - held;
  }

  void submit(std::vector<ClaimedDelivery> deliveries) {
    std::lock_guard state(state_mutex_);
    for (ClaimedDelivery& d : deliveries) {
      ProviderState& p = provider(d.provider);
      if (draining_) {
        released_.push_back(d.id);
        continue;
      }
      p.waiting.push_back(std::move(d));
      ++held_;
    }
  }

  std::shared_ptr<const MessageComposer> composer_for(std::int64_t campaign_id,
                                                      std::string& error) {
    if (auto it = composers_.find(campaign_id); it != composers_.end()) {
      error = it->second.error;
      return it->second.composer;
    }
    CachedComposer cached;
    try {
      std::optional<CampaignContent> content = content_(campaign_id);
      if (!content) {
        cached.error = fmt::format("campaign {} not found", campaign_id);
      } else {
        ComposerSettings s = settings_.composer;
        std::string verp_domain = settings_.verp_domain;
        if (verp_domain.empty()) verp_domain = Mailbox::Parse(content->from).address.domain();
        s.verp =
            std::make_shared<const VerpCodec>(settings_.verp_prefix, verp_domain, settings_.secret);
        cached.composer = std::make_shared<const MessageComposer>(*content, std::move(s));
      }
    } catch (const std::exception& e) {
      cached.error = fmt::format("campaign {} cannot be composed: {}", campaign_id, e.what());
    }
    if (!cached.error.empty()) spdlog::error("{}", cached.error);
    error = cached.error;
    return composers_.emplace(campaign_id, std::move(cached)).first->second.composer;
  }

  // Hands every message whose permit and connection are free to the sending
  // thread; returns the earliest time a waiting message could go next.
  // Called with state_mutex_ held.
  std::optional<Clock::time_point> dispatch_ready(std::vector<DeliveryOutcome>& out) {
    std::optional<Clock::time_point> next;
    const auto now = Clock::now();
    for (auto& [key, p] : providers_) dispatch_provider(p, now, &out, &next);
    return next;
  }

  // One provider's share of dispatch_ready(), with state_mutex_ held. From
  // the sending thread `out` is null: a campaign whose content is not loaded
  // yet (that takes the database) is left to the worker loop's thread.
  void dispatch_provider(ProviderState& p, Clock::time_point now, std::vector<DeliveryOutcome>* out,
                         std::optional<Clock::time_point>* next) {
    if (p.waiting.empty()) return;
    p.controller.advance(to_tp(now));
    if (p.controller.suspended()) {
      // Nothing goes to this provider for a while: its deliveries go back
      // to the queue untouched instead of sitting under our leases.
      for (const ClaimedDelivery& d : p.waiting) released_.push_back(d.id);
      held_ -= p.waiting.size();
      p.waiting.clear();
      return;
    }
    p.pacer.set_rate(p.controller.sending_rate());
    const std::size_t limit = static_cast<std::size_t>(std::max(1, p.controller.connections()));
    while (!p.waiting.empty()) {
      if (p.busy >= limit) break;  // a result will wake us
      if (out == nullptr) {
        // Checked before the permit is taken, so that none is wasted.
        auto cached = composers_.find(p.waiting.front().campaign_id);
        if (cached == composers_.end() || !cached->second.composer) break;
      }
      if (!p.pacer.try_acquire(to_tp(now))) {
        if (next == nullptr) break;
        if (auto at = p.pacer.next_permit(to_tp(now))) {
          const auto when = std::chrono::time_point_cast<Clock::duration>(*at);
          if (!*next || when < **next) *next = when;
        } else if (auto until = p.controller.suspended_until()) {
          const auto when = std::chrono::time_point_cast<Clock::duration>(*until);
          if (!*next || when < **next) *next = when;
        }
        break;
      }
      ClaimedDelivery d = std::move(p.waiting.front());
      p.waiting.pop_front();
      std::string error;
      auto composer = composer_for(d.campaign_id, error);
      if (!composer) {
        DeliveryOutcome o;
        o.delivery_id = d.id;
        o.kind = OutcomeKind::kFailed;
        o.reply_code = 554;
        o.reply = "554 5.3.0 " + error;
        o.signal = "transient";
        out->push_back(std::move(o));
        --held_;
        continue;
      }
      ++p.busy;
      Job job;
      job.delivery = std::move(d);
      job.composer = std::move(composer);
      job.route = p.route;
      job.connection_limit = limit;
      job.sent_at = now;
      sender_->post(std::move(job));
    }
  }

  DeliveryOutcome outcome_of(SendReport& r) {
    // Its connection slot was freed on the sending thread already.
    ProviderState& p = provider(r.delivery.provider);
    --held_;
    const auto now = Clock::now();
    DeliveryOutcome o;
    o.delivery_id = r.delivery.id;
    throttle::SmtpReply reply;
    Signal signal;
    std::optional<throttle::Duration> hint;
    if (r.sent) {
      reply = r.sent->reply;
      const throttle::Classification c = classifier_.classify(reply, p.key);
      signal = c.signal;
      hint = c.retry_after;
      if (r.sent->ok()) signal = Signal::kAccepted;
      const auto reaction = p.controller.on_reply(c, to_tp(r.sent_at), to_tp(now));
      p.state_dirty = true;
      if (reaction == throttle::Reaction::kDecreased ||
          reaction == throttle::Reaction::kSuspended) {
        p.last_throttle_reply = throttle::one_line(reply);
        spdlog::info("{}: {} -> rate {:.1f} msg/s, {} connection(s){} ({})", p.key,
                     throttle::signal_name(c.signal), p.controller.rate(),
                     p.controller.connections(), p.controller.suspended() ? ", suspended" : "",
                     p.last_throttle_reply);
      }
    } else {
      reply = r.local;
      signal = throttle::parse_signal(r.local_signal).value_or(Signal::kTransient);
    }
    o.reply_code = reply.code;
    o.reply = throttle::one_line(reply);
    o.signal = std::string(throttle::signal_name(signal));
    ++p.signals[o.signal];
    if (signal == Signal::kAccepted && r.sent && r.sent->ok()) {
      o.kind = OutcomeKind::kSent;
      ++p.accepted;
      ++p.accepted_total;
      return o;
    }
    if (!r.sent && r.local_kind != OutcomeKind::kDeferred) {
      o.kind = r.local_kind;
      return o;
    }
    // Only a refusal of the recipient (or of this message) is a bounce; a 5xx
    // at connection set-up or MAIL FROM is about the sender, not the address.
    const bool about_recipient = reply.stage == throttle::SmtpStage::kRcpt ||
                                 reply.stage == throttle::SmtpStage::kData ||
                                 reply.stage == throttle::SmtpStage::kEndOfData;
    if (signal == Signal::kHardBounce && reply.permanent_failure() && about_recipient) {
      o.kind = OutcomeKind::kBounced;
      return o;
    }
    // Everything else is retried later: throttling, tempfails, blocks and
    // policy problems (an operator fixes those; the recipients wait).
    ++p.deferred;
    ++p.deferred_total;
    const int attempts = r.delivery.attempts + 1;
    const auto first = r.delivery.first_attempt_at.value_or(r.sent_at);
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    const throttle::RetryDecision d =
        settings_.retry.next(signal == Signal::kAccepted ? Signal::kTransient : signal, attempts,
                             to_tp(first), to_tp(now), hint, unit(random_));
    if (d.kind == throttle::RetryDecision::Kind::kExpired) {
      o.kind = OutcomeKind::kFailed;
      return o;
    }
    o.kind = OutcomeKind::kDeferred;
    auto at = std::chrono::time_point_cast<Clock::duration>(d.at);
    if (d.kind != throttle::RetryDecision::Kind::kRetry) at = now + std::chrono::minutes(5);
    if (auto until = p.controller.suspended_until()) {
      at = std::max(at, std::chrono::time_point_cast<Clock::duration>(*until));
    }
    o.next_attempt_at = at;
    return o;
  }

  void collect(std::vector<DeliveryOutcome>& out) {
    std::deque<SendReport> ready;
    {
      std::lock_guard lock(mutex_);
      ready.swap(results_);
    }
    std::lock_guard state(state_mutex_);
    for (SendReport& r : ready) out.push_back(outcome_of(r));
  }

  void release_to(std::vector<DeliveryOutcome>& out) {
    std::lock_guard state(state_mutex_);
    for (std::int64_t id : released_) {
      DeliveryOutcome o;
      o.delivery_id = id;
      o.kind = OutcomeKind::kReleased;
      out.push_back(std::move(o));
    }
    released_.clear();
  }

  void poll(std::chrono::milliseconds timeout, std::vector<DeliveryOutcome>& out) {
    const auto deadline = Clock::now() + timeout;
    const std::size_t before = out.size();
    for (;;) {
      collect(out);
      release_to(out);
      std::optional<Clock::time_point> next;
      {
        std::lock_guard state(state_mutex_);
        if (!draining_) next = dispatch_ready(out);
      }
      persist(false);
      const auto now = Clock::now();
      if (out.size() > before || now >= deadline) return;
      auto wake = deadline;
      if (next && *next < wake) wake = *next;
      std::unique_lock lock(mutex_);
      cv_.wait_until(lock, wake, [this] { return !results_.empty(); });
    }
  }

  void drain() {
    std::lock_guard state(state_mutex_);
    if (draining_) return;
    draining_ = true;
    for (auto& [key, p] : providers_) {
      for (const ClaimedDelivery& d : p.waiting) released_.push_back(d.id);
      held_ -= p.waiting.size();
      p.waiting.clear();
    }
  }

  // Saves changed controller states (at most every state_interval), and a
  // history sample plus reply counters every history_interval; `now` forces
  // both.
  void persist(bool force) {
    const auto now = Clock::now();
    const bool state_due = force || now - last_state_ >= settings_.state_interval;
    const bool history_due = force || now - last_history_ >= settings_.history_interval;
    if (!state_due && !history_due) return;
    // Gathered under the lock, written without it: the sending thread keeps
    // handing messages over while the database is slow.
    std::vector<ThrottleStateRow> rows;
    std::vector<ThrottleHistoryRow> samples;
    std::vector<ReplyCount> counts;
    {
      std::lock_guard state(state_mutex_);
      if (state_due) {
        last_state_ = now;
        for (auto& [key, p] : providers_) {
          if (!p.state_dirty) continue;
          p.state_dirty = false;
          ThrottleStateRow row;
          row.provider = key;
          row.egress = settings_.egress;
          row.state_json = throttle::to_json(p.controller.state());
          row.rate = p.controller.rate();
          row.connection_limit = p.controller.connections();
          row.mode = std::string(throttle::phase_name(p.controller.phase()));
          if (auto until = p.controller.suspended_until()) {
            row.suspended_until = std::chrono::time_point_cast<Clock::duration>(*until);
          }
          row.last_throttle_reply = p.last_throttle_reply;
          rows.push_back(std::move(row));
        }
      }
      if (history_due) {
        last_history_ = now;
        for (auto& [key, p] : providers_) {
          const bool active = p.accepted > 0 || p.deferred > 0 || !p.waiting.empty() || p.busy;
          if (active) {
            samples.push_back({key, settings_.egress, p.controller.sending_rate(), p.accepted,
                               p.deferred,
                               std::string(throttle::phase_name(p.controller.phase()))});
          }
          for (const auto& [signal, n] : p.signals) {
            counts.push_back({key, settings_.egress, signal, n});
          }
          p.accepted = p.deferred = 0;
          p.signals.clear();
        }
      }
    }
    try {
      for (const ThrottleStateRow& row : rows) states_.save_state(row);
      if (history_due) {
        states_.append_history(samples);
        if (counters_ != nullptr) counters_->add_counts(counts);
      }
    } catch (const StoreUnavailable& e) {
      // The outcomes matter more; the next flush of the worker reconnects.
      spdlog::warn("throttle state not saved: {}", e.what());
    }
  }

  std::map<std::string, ProviderView> views() const {
    std::lock_guard state(state_mutex_);
    std::map<std::string, ProviderView> out;
    for (const auto& [key, p] : providers_) {
      out[key] = ProviderView{p.controller.rate(),
                              p.controller.connections(),
                              std::string(throttle::phase_name(p.controller.phase())),
                              p.waiting.size(),
                              p.busy,
                              p.accepted_total,
                              p.deferred_total};
    }
    return out;
  }

  std::size_t held() const {
    std::lock_guard state(state_mutex_);
    return held_ + released_.size();
  }

 private:
  struct CachedComposer {
    std::shared_ptr<const MessageComposer> composer;
    std::string error;
  };

  DispatcherSettings settings_;
  ThrottleStateStore& states_;
  ReplyCountSink* counters_;
  CampaignContentSource content_;
  throttle::ReplyClassifier classifier_;
  std::mt19937_64 random_;
  std::map<std::string, throttle::ControllerState> saved_;
  std::map<std::string, ProviderState> providers_;
  std::unordered_map<std::int64_t, CachedComposer> composers_;
  std::vector<std::int64_t> released_;
  std::size_t held_ = 0;
  bool draining_ = false;
  // Set as the dispatcher goes: the sending thread hands nothing more over.
  bool closing_ = false;
  Clock::time_point last_state_;
  Clock::time_point last_history_;

  // Guards the provider states (controllers, pacers, waiting queues,
  // connection counts), the held and released deliveries and the composer
  // cache: the worker loop's thread and the sending thread both dispatch.
  // Never held while waiting for the database, except to load a campaign's
  // content the first time.
  mutable std::mutex state_mutex_;
  // Guards results_ (taken without state_mutex_ held, or after it).
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<SendReport> results_;
  // Last member: the sending thread stops (and stops reporting) before the
  // rest goes.
  std::unique_ptr<Sender> sender_;

  friend class Dispatcher;
};

Dispatcher::Dispatcher(DispatcherSettings settings, ThrottleStateStore& states,
                       ReplyCountSink* counters, CampaignContentSource content)
    : impl_(std::make_unique<Impl>(std::move(settings), states, counters, std::move(content))) {}

Dispatcher::~Dispatcher() = default;

std::size_t Dispatcher::capacity(std::string_view provider) {
  return impl_->capacity(provider);
}

void Dispatcher::submit(std::vector<ClaimedDelivery> deliveries) {
  impl_->submit(std::move(deliveries));
}

void Dispatcher::poll(std::chrono::milliseconds timeout, std::vector<DeliveryOutcome>& out) {
  impl_->poll(timeout, out);
}

void Dispatcher::save_state() {
  impl_->persist(true);
}

std::size_t Dispatcher::in_flight() const {
  return impl_->held();
}

void Dispatcher::drain() {
  impl_->drain();
}

std::map<std::string, Dispatcher::ProviderView> Dispatcher::providers() const {
  return impl_->views();
}

}  // namespace mailer::sender
