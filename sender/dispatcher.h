// The dispatcher: what `mailer run` sends through. It joins the delivery
// queue, the throttle and the SMTP transport behind DeliveryTransport:
//
//  - per provider key, an AIMD controller (restored from throttle_state) and
//    a pacer: capacity() asks the worker loop to claim about `lookahead` of
//    sending at the current rate, and poll() releases each claimed delivery
//    when its permit comes (timed waits, never a busy loop);
//  - connections: one thread runs a Boost.Asio io_context carrying every
//    SmtpClient (one state machine per connection, no thread per
//    connection). Per provider key there is one pool whose open connections
//    never exceed the controller's connection limit; a connection carries up
//    to `messages_per_connection` messages and is closed after
//    `idle_timeout` without one. Throughput is about connections / reply
//    time, and the pacer meters message starts;
//  - MX delivery tries the domain's mail hosts in preference order (shuffled
//    within one preference) and every address of each; a host that refuses
//    or does not answer passes the message to the next one within the same
//    attempt, a reply (4xx, 5xx) ends the attempt;
//  - every reply is classified and fed to its provider's controller, turned
//    into an outcome (sent, deferred with the retry schedule, bounced,
//    failed) and returned through poll();
//  - the controllers' state is saved to throttle_state while it changes, a
//    rate sample goes to throttle_history and the reply counters to
//    reply_counters at a fixed interval, and all of it once more at drain.
//
// Threading: every public member is called from the worker loop's thread;
// the sending thread hands results back through a mutex-protected queue.
// Both threads dispatch: the worker loop's after a claim and when a permit
// comes due, the sending thread as soon as a message ends and frees its
// connection (so connections stay busy while the worker loop claims or
// writes outcomes). The provider states they share are under one lock.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sender/delivery_transport.h"
#include "sender/dkim_signer.h"
#include "sender/dns_resolver.h"
#include "sender/message_composer.h"
#include "sender/reply_count_sink.h"
#include "sender/smtp_client.h"
#include "sender/throttle_state_store.h"
#include "throttle/policy.h"
#include "throttle/reply_classifier.h"
#include "throttle/retry_schedule.h"

namespace mailer::sender {

struct DispatcherSettings {
  // Throttle key part: this worker's sending IP or pool.
  std::string egress = "default";
  std::string helo_name = "localhost";
  // Local IP address to connect from; empty: the system's choice.
  std::string source_address;
  // "mx" or "smtp(s)://host:port", for providers without a route of their own.
  std::string default_route = "mx";
  // Provider family (gmail, outlook, yahoo, other, ...) -> route.
  std::map<std::string, std::string> routes;
  // STARTTLS on relay routes; MX deliveries use it opportunistically unless
  // it is required.
  StartTls starttls = StartTls::kOpportunistic;
  bool verify_peer = true;
  // PEM certificates of authorities trusted besides the system's; empty:
  // the system's only.
  std::string ca_pem;
  // AUTH on relay routes (URLs), never on MX deliveries.
  std::optional<SmtpLogin> relay_auth;
  SmtpTimeouts timeouts;
  // Messages carried by one connection before it is closed and a fresh one
  // opened; idle connections are closed after idle_timeout.
  std::size_t messages_per_connection = 100;
  std::chrono::milliseconds idle_timeout{std::chrono::seconds(10)};
  // MX deliveries: resolver settings and the SMTP port of the mail hosts
  // (25; rehearsals point it at a local sink).
  DnsResolverOptions mx;
  unsigned short mx_port = 25;

  // Per provider family; "other" (or the defaults) for families not named.
  std::map<std::string, throttle::ProviderPolicy> policies;
  throttle::RetrySchedule retry;
  std::vector<throttle::ReplyRule> reply_rules;

  // Deliveries claimed ahead of their permits, as sending time at the
  // current rate: enough that the pacer never waits for the database, small
  // enough that a rate cut does not strand many leased deliveries.
  std::chrono::milliseconds lookahead{std::chrono::seconds(2)};
  // How often throttle_history gets a sample per provider and reply_counters
  // the counts; throttle_state is saved at most this often as well.
  std::chrono::milliseconds history_interval{std::chrono::seconds(5)};
  std::chrono::milliseconds state_interval{std::chrono::seconds(1)};

  // Composition: unsubscribe base URL and mailto, token codec, Feedback-ID
  // and Message-ID domain. `verp` is left empty here: it is built per
  // campaign from verp_domain (or the campaign's From domain) and the secret.
  ComposerSettings composer;
  std::string verp_domain;
  std::string verp_prefix = "bounce";
  std::string secret;
  std::vector<DkimSigner> dkim;
};

// The content of a campaign by id (nullopt: unknown campaign; its deliveries
// fail). Called on the worker loop's thread, once per campaign.
using CampaignContentSource = std::function<std::optional<CampaignContent>(std::int64_t)>;

class Dispatcher : public DeliveryTransport {
 public:
  // Loads the saved controller states of `settings.egress` from `states` and
  // starts the sending thread. `counters` may be null (no reply counters kept).
  // Throws std::invalid_argument for unusable settings.
  Dispatcher(DispatcherSettings settings, ThrottleStateStore& states, ReplyCountSink* counters,
             CampaignContentSource content);
  // Closes every connection and stops the sending thread; call drain() and poll until in_flight()
  // is 0 first to lose nothing (deliveries still held are left to their leases).
  ~Dispatcher() override;
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  std::size_t capacity(std::string_view provider) override;
  void submit(std::vector<ClaimedDelivery> deliveries) override;
  void poll(std::chrono::milliseconds timeout, std::vector<DeliveryOutcome>& out) override;
  std::size_t in_flight() const override;
  void drain() override;

  // Saves every controller state, a history sample and the reply counters
  // now (the worker calls it when its loop ends).
  void save_state();

  // Per provider: learned rate, connection limit, mode, for logs and tests.
  struct ProviderView {
    double rate = 0;
    int connections = 0;
    std::string mode;
    std::size_t waiting = 0;
    std::size_t on_the_wire = 0;
    std::uint64_t accepted = 0;
    std::uint64_t deferred = 0;
  };
  std::map<std::string, ProviderView> providers() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace mailer::sender
