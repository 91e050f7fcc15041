#include "sender/smtp_transport.h"

#include <curl/curl.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cctype>
#include <deque>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <utility>
#include <vector>

#include "sender/curl_multi_loop.h"

namespace mailer::sender {

namespace asio = boost::asio;
using throttle::SmtpReply;
using throttle::SmtpStage;

std::string_view to_string(SendOutcome outcome) {
  switch (outcome) {
    case SendOutcome::kAccepted:
      return "accepted";
    case SendOutcome::kRejected:
      return "rejected";
    case SendOutcome::kConnectionFailed:
      return "connection_failed";
    case SendOutcome::kTimedOut:
      return "timed_out";
  }
  return "unknown";
}

namespace {

// Which command the server's next reply answers, followed from the commands
// curl writes (CURLINFO_HEADER_OUT). The final "." is not a command curl
// logs: a 354 to DATA moves the conversation to the end-of-data stage.
enum class WireStage { kGreeting, kEhlo, kStartTls, kAuth, kMail, kRcpt, kData, kEndOfData };

SmtpStage to_smtp_stage(WireStage s) {
  switch (s) {
    case WireStage::kGreeting:
      return SmtpStage::kGreeting;
    case WireStage::kEhlo:
    case WireStage::kStartTls:
    case WireStage::kAuth:
      return SmtpStage::kHelo;
    case WireStage::kMail:
      return SmtpStage::kMail;
    case WireStage::kRcpt:
      return SmtpStage::kRcpt;
    case WireStage::kData:
      return SmtpStage::kData;
    case WireStage::kEndOfData:
      return SmtpStage::kEndOfData;
  }
  return SmtpStage::kGreeting;
}

bool starts_with_verb(std::string_view line, std::string_view verb) {
  if (line.size() < verb.size()) return false;
  for (std::size_t i = 0; i < verb.size(); ++i) {
    if (std::toupper(static_cast<unsigned char>(line[i])) != verb[i]) return false;
  }
  return true;
}

// A complete reply as it came off the wire.
struct WireReply {
  WireStage stage = WireStage::kGreeting;
  std::vector<std::string> lines;
  int code = 0;
};

// Collects the server's replies of one transaction from curl's debug stream.
// Only the commands' verbs are looked at: AUTH arguments never leave curl.
class ReplyCapture {
 public:
  void command_sent(std::string_view text) {
    WireStage next = stage_;
    if (starts_with_verb(text, "EHLO") || starts_with_verb(text, "HELO")) {
      next = WireStage::kEhlo;
    } else if (starts_with_verb(text, "STARTTLS")) {
      next = WireStage::kStartTls;
    } else if (starts_with_verb(text, "AUTH")) {
      next = WireStage::kAuth;
    } else if (starts_with_verb(text, "MAIL")) {
      next = WireStage::kMail;
    } else if (starts_with_verb(text, "RCPT")) {
      next = WireStage::kRcpt;
    } else if (starts_with_verb(text, "DATA")) {
      next = WireStage::kData;
    } else if (starts_with_verb(text, "QUIT")) {
      // Closing a connection after a failure: the reply that matters came
      // before, so the stage stays where the transaction ended.
      quitting_ = true;
    }
    stage_ = next;
    partial_.clear();
    awaiting_ = true;
  }

  // Whether the last command still waits for its (complete) reply.
  bool awaiting_reply() const { return awaiting_; }

  void reply_received(std::string_view text) {
    while (!text.empty()) {
      std::size_t end = text.find('\n');
      std::string_view line = text.substr(0, end);
      text = end == std::string_view::npos ? std::string_view{} : text.substr(end + 1);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (!line.empty()) add_line(line);
    }
  }

  WireStage stage() const { return stage_; }
  // The last complete reply before QUIT, if any.
  const std::optional<WireReply>& last() const { return last_; }

 private:
  static int reply_code(std::string_view line) {
    if (line.size() < 3) return 0;
    for (int i = 0; i < 3; ++i) {
      if (!std::isdigit(static_cast<unsigned char>(line[i]))) return 0;
    }
    return (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  }

  void add_line(std::string_view line) {
    partial_.emplace_back(line);
    bool final_line = line.size() == 3 || (line.size() > 3 && line[3] == ' ');
    int code = reply_code(line);
    if (!final_line || code == 0) return;
    awaiting_ = false;
    if (!quitting_) {
      last_ = WireReply{stage_, std::move(partial_), code};
      if (stage_ == WireStage::kData && code == 354) stage_ = WireStage::kEndOfData;
    }
    partial_.clear();
  }

  WireStage stage_ = WireStage::kGreeting;
  bool quitting_ = false;
  bool awaiting_ = false;
  std::vector<std::string> partial_;
  std::optional<WireReply> last_;
};

// A reply we make up for a failure the server did not describe, worded like
// Postfix's own deferral reasons so classification treats it as transient.
SmtpReply synthesized_reply(WireStage stage, std::string_view enhanced, std::string_view why) {
  std::string line = "421 ";
  line += enhanced;
  line += ' ';
  line += why;
  auto parsed = throttle::parse_smtp_reply(line, to_smtp_stage(stage));
  if (!parsed) throw std::logic_error("synthesized SMTP reply does not parse: " + line);
  return *parsed.reply;
}

// Splits "smtp://host:port" into a normalised route key; nullopt if it is not
// an smtp:// or smtps:// URL without path, query or credentials.
std::optional<std::string> normalise_route(std::string_view url) {
  std::string_view rest;
  std::string scheme;
  if (url.starts_with("smtp://")) {
    scheme = "smtp://";
    rest = url.substr(7);
  } else if (url.starts_with("smtps://")) {
    scheme = "smtps://";
    rest = url.substr(8);
  } else {
    return std::nullopt;
  }
  while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.empty() || rest.find_first_of("/?#@ \r\n") != std::string_view::npos)
    return std::nullopt;
  return scheme + std::string(rest);
}

// "host:port" of a normalised route, for CURLOPT_RESOLVE.
std::string host_and_port(const std::string& route) {
  std::string hp = route.substr(route.find("://") + 3);
  bool has_port = hp.rfind(':') != std::string::npos && hp.back() != ']';
  if (!has_port) hp += route.starts_with("smtps://") ? ":465" : ":25";
  return hp;
}

bool valid_mailbox(const std::string& s) {
  return s.find_first_of("<>\r\n") == std::string::npos;
}

}  // namespace

// libcurl checks its server response timeout only when something wakes the
// transfer, and a silent server never does. A route's watchdog wakes its
// transfers when a reply is overdue, so curl fails the transfer with
// CURLE_OPERATION_TIMEDOUT. One timer per route, moved only when it fires or
// an earlier reply falls due, rather than one armed and cancelled with each of
// a message's five commands.
class ReplyWatchdog {
 public:
  using Clock = std::chrono::steady_clock;
  // `earliest` gives the earliest time a reply is due on the route, if any.
  ReplyWatchdog(asio::io_context& io, CurlMultiLoop& loop,
                std::function<std::optional<Clock::time_point>()> earliest)
      : timer_(io), loop_(loop), earliest_(std::move(earliest)) {}

  // A command went out; its reply is due by `due`.
  void expect(Clock::time_point due) {
    if (armed_ && armed_for_ <= due) return;
    arm(due);
  }

 private:
  void arm(Clock::time_point at) {
    armed_ = true;
    armed_for_ = at;
    timer_.expires_at(at);
    timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;  // moved, or the route is gone
      armed_ = false;
      fire();
    });
  }

  void fire() {
    const auto now = Clock::now();
    std::optional<Clock::time_point> next = earliest_();
    if (!next) return;
    if (*next <= now) {
      // curl sockets are not tied to transfers while they run
      // (CURLINFO_ACTIVESOCKET only after), so wake them all: a route has at
      // most its connection limit of sockets.
      loop_.nudge_all();
      next = earliest_();
      if (!next) return;
      // curl counts in whole seconds: look again shortly if it has not given up yet.
      if (*next <= now) next = now + std::chrono::milliseconds(100);
    }
    arm(*next);
  }

  asio::steady_timer timer_;
  CurlMultiLoop& loop_;
  std::function<std::optional<Clock::time_point>()> earliest_;
  bool armed_ = false;
  Clock::time_point armed_for_{};
};

// One in-flight transaction: everything curl points into lives here until the
// done handler runs.
struct SmtpTransport::Transfer {
  explicit Transfer(ReplyWatchdog& watchdog) : watchdog(watchdog) {}

  ReplyWatchdog& watchdog;
  // When the reply to the last command is due, while one is awaited.
  std::optional<ReplyWatchdog::Clock::time_point> reply_due;
  CURL* easy = nullptr;
  SendRequest request;
  SendCallback done;
  curl_slist* recipients = nullptr;
  curl_slist* resolve = nullptr;
  std::size_t offset = 0;
  ReplyCapture capture;
  char error[CURL_ERROR_SIZE] = {};

  ~Transfer() {
    curl_slist_free_all(recipients);
    curl_slist_free_all(resolve);
  }

  static std::size_t read_body(char* buffer, std::size_t size, std::size_t n, void* self) {
    auto* t = static_cast<Transfer*>(self);
    const std::string& body = *t->request.message;
    std::size_t len = std::min(size * n, body.size() - t->offset);
    std::copy_n(body.data() + t->offset, len, buffer);
    t->offset += len;
    return len;
  }

  static int on_debug(CURL*, curl_infotype type, char* data, std::size_t size, void* self) {
    auto* t = static_cast<Transfer*>(self);
    if (type == CURLINFO_HEADER_OUT) {
      t->capture.command_sent({data, size});
      // curl counts the response timeout in whole seconds from the command;
      // wake it just after that.
      auto seconds = std::chrono::ceil<std::chrono::seconds>(t->request.timeouts.reply);
      t->reply_due = ReplyWatchdog::Clock::now() + std::max(seconds, std::chrono::seconds(1)) +
                     std::chrono::milliseconds(50);
      t->watchdog.expect(*t->reply_due);
    }
    if (type == CURLINFO_HEADER_IN) {
      t->capture.reply_received({data, size});
      if (!t->capture.awaiting_reply()) t->reply_due.reset();
    }
    return 0;
  }
};

// The connection pool of one route: its own multi handle (so the cache size
// and host limit are this route's), idle easy handles, and the queue.
class SmtpTransport::Route {
 public:
  Route(asio::io_context& io, std::string key)
      : io_(io),
        key_(std::move(key)),
        loop_(io, [this](CURL* easy, CURLcode rc) { finish(easy, rc); }),
        watchdog_(io, loop_, [this] { return earliest_reply_due(); }) {
    apply_limit();
  }

  ~Route() {
    for (auto& [easy, transfer] : active_) {
      loop_.remove(easy);
      curl_easy_cleanup(easy);
    }
    active_.clear();
    for (CURL* easy : idle_) curl_easy_cleanup(easy);
  }

  void submit(SendRequest request, SendCallback done) {
    queue_.push_back({std::move(request), std::move(done)});
    start_queued();
  }

  void set_limit(std::size_t limit) {
    counters_.connection_limit = std::max<std::size_t>(1, limit);
    apply_limit();
    start_queued();
  }

  RouteCounters counters() const {
    RouteCounters c = counters_;
    c.in_flight = active_.size();
    c.queued = queue_.size();
    return c;
  }

 private:
  struct Queued {
    SendRequest request;
    SendCallback done;
  };

  std::optional<ReplyWatchdog::Clock::time_point> earliest_reply_due() const {
    std::optional<ReplyWatchdog::Clock::time_point> earliest;
    for (const auto& [easy, t] : active_) {
      if (t->reply_due && (!earliest || *t->reply_due < *earliest)) earliest = t->reply_due;
    }
    return earliest;
  }

  void apply_limit() {
    if (counters_.connection_limit == 0) counters_.connection_limit = kDefaultConnectionLimit;
    long n = static_cast<long>(counters_.connection_limit);
    curl_multi_setopt(loop_.multi(), CURLMOPT_MAXCONNECTS, n);
    curl_multi_setopt(loop_.multi(), CURLMOPT_MAX_HOST_CONNECTIONS, n);
  }

  void start_queued() {
    while (!queue_.empty() && active_.size() < counters_.connection_limit) {
      Queued next = std::move(queue_.front());
      queue_.pop_front();
      start(std::move(next.request), std::move(next.done));
    }
  }

  void start(SendRequest request, SendCallback done) {
    CURL* easy = nullptr;
    if (!idle_.empty()) {
      easy = idle_.back();
      idle_.pop_back();
      curl_easy_reset(easy);
    } else {
      easy = curl_easy_init();
    }
    auto transfer = std::make_unique<Transfer>(watchdog_);
    transfer->easy = easy;
    transfer->request = std::move(request);
    transfer->done = std::move(done);
    Transfer* t = transfer.get();
    active_.emplace(easy, std::move(transfer));
    if (std::string problem = configure(*t); !problem.empty()) {
      fail_early(easy, problem);
      return;
    }
    try {
      loop_.add(easy);
    } catch (const std::exception& e) {
      fail_early(easy, e.what());
    }
  }

  // Returns a description of what is wrong with the request, or "".
  std::string configure(Transfer& t) {
    const SendRequest& r = t.request;
    CURL* e = t.easy;
    if (!r.message) return "request has no message";
    if (r.recipient.empty() || !valid_mailbox(r.recipient) || !valid_mailbox(r.envelope_from)) {
      return "envelope address contains <, >, CR or LF, or the recipient is empty";
    }
    if (r.helo_name.empty() || r.helo_name.find_first_of("/?# \r\n") != std::string::npos) {
      return "invalid HELO name";
    }
    // The URL path is the name curl sends with EHLO/HELO.
    std::string url = key_ + "/" + r.helo_name;
    curl_easy_setopt(e, CURLOPT_URL, url.c_str());
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PRIVATE, &t);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t.error);
    std::string from = "<" + r.envelope_from + ">";
    curl_easy_setopt(e, CURLOPT_MAIL_FROM, from.c_str());
    t.recipients = curl_slist_append(nullptr, ("<" + r.recipient + ">").c_str());
    curl_easy_setopt(e, CURLOPT_MAIL_RCPT, t.recipients);
    curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(e, CURLOPT_READFUNCTION, &Transfer::read_body);
    curl_easy_setopt(e, CURLOPT_READDATA, &t);
    curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(r.message->size()));
    // The debug stream is how the full reply text reaches us; curl only
    // calls it with verbose on. Nothing of it is printed.
    curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
    curl_easy_setopt(e, CURLOPT_DEBUGFUNCTION, &Transfer::on_debug);
    curl_easy_setopt(e, CURLOPT_DEBUGDATA, &t);
    long use_ssl = r.tls == TlsMode::kRequired        ? CURLUSESSL_ALL
                   : r.tls == TlsMode::kOpportunistic ? CURLUSESSL_TRY
                                                      : CURLUSESSL_NONE;
    curl_easy_setopt(e, CURLOPT_USE_SSL, use_ssl);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, r.verify_peer ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, r.verify_peer ? 2L : 0L);
    if (r.auth) {
      curl_easy_setopt(e, CURLOPT_USERNAME, r.auth->user.c_str());
      curl_easy_setopt(e, CURLOPT_PASSWORD, r.auth->password.c_str());
    }
    if (!r.source_address.empty()) {
      // "host!" makes curl bind this address, never treat it as an interface name.
      curl_easy_setopt(e, CURLOPT_INTERFACE, ("host!" + r.source_address).c_str());
    }
    if (!r.connect_address.empty()) {
      std::string entry = host_and_port(key_) + ":" + r.connect_address;
      t.resolve = curl_slist_append(nullptr, entry.c_str());
      curl_easy_setopt(e, CURLOPT_RESOLVE, t.resolve);
    }
    auto ms = [](std::chrono::milliseconds d) { return static_cast<long>(d.count()); };
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, ms(r.timeouts.connect));
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, ms(r.timeouts.total));
    auto reply_s = std::chrono::ceil<std::chrono::seconds>(r.timeouts.reply).count();
    curl_easy_setopt(e, CURLOPT_SERVER_RESPONSE_TIMEOUT, std::max(1L, static_cast<long>(reply_s)));
    return {};
  }

  // A request that never reached curl still completes from the io_context.
  void fail_early(CURL* easy, const std::string& problem) {
    auto node = active_.extract(easy);
    idle_.push_back(easy);
    std::shared_ptr<Transfer> t(std::move(node.mapped()));
    ++counters_.failed;
    asio::post(io_, [t, problem] {
      SendResult result;
      result.outcome = SendOutcome::kConnectionFailed;
      result.reply =
          synthesized_reply(WireStage::kGreeting, "4.3.5", "request not sent: " + problem);
      result.error = problem;
      t->done(std::move(result));
    });
  }

  void finish(CURL* easy, CURLcode rc) {
    // A transfer that timed out leaves its connection in curl's cache: a late
    // reply there would be read as the answer to the next command, and at
    // teardown curl sends it QUIT and waits a second for an answer that does
    // not come. Shut it down: curl then finds it dead and drops it.
    if (rc == CURLE_OPERATION_TIMEDOUT) {
      curl_socket_t fd = CURL_SOCKET_BAD;
      if (curl_easy_getinfo(easy, CURLINFO_ACTIVESOCKET, &fd) == CURLE_OK &&
          fd != CURL_SOCKET_BAD) {
        ::shutdown(fd, SHUT_RDWR);
      }
    }
    loop_.remove(easy);
    auto node = active_.extract(easy);
    if (node.empty()) return;
    std::unique_ptr<Transfer> t = std::move(node.mapped());
    SendResult result = outcome_of(*t, rc);
    long new_connections = 0;
    curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &new_connections);
    counters_.connections_opened += static_cast<std::uint64_t>(new_connections);
    result.reused_connection = new_connections == 0 && rc == CURLE_OK;
    switch (result.outcome) {
      case SendOutcome::kAccepted:
        ++counters_.accepted;
        break;
      case SendOutcome::kRejected:
        ++counters_.rejected;
        break;
      default:
        ++counters_.failed;
    }
    idle_.push_back(easy);
    SendCallback done = std::move(t->done);
    t.reset();
    start_queued();
    done(std::move(result));
  }

  static SendResult outcome_of(const Transfer& t, CURLcode rc) {
    SendResult result;
    const auto& last = t.capture.last();
    if (rc == CURLE_OK && last && last->stage == WireStage::kEndOfData && last->code / 100 == 2) {
      result.outcome = SendOutcome::kAccepted;
    } else if (rc != CURLE_OK && last && last->code >= 400 && last->stage != WireStage::kEhlo) {
      result.outcome = SendOutcome::kRejected;
    } else {
      result.outcome =
          rc == CURLE_OPERATION_TIMEDOUT ? SendOutcome::kTimedOut : SendOutcome::kConnectionFailed;
    }
    result.error = rc == CURLE_OK ? "" : (t.error[0] != '\0' ? t.error : curl_easy_strerror(rc));
    if (result.outcome == SendOutcome::kAccepted || result.outcome == SendOutcome::kRejected) {
      std::string raw;
      for (const auto& l : last->lines) raw += l + "\r\n";
      auto parsed = throttle::parse_smtp_reply(raw, to_smtp_stage(last->stage));
      if (parsed) {
        result.reply = *parsed.reply;
        result.reply_from_server = true;
        return result;
      }
      // Garbage from the server: a broken peer, not an answer.
      result.outcome = SendOutcome::kConnectionFailed;
      result.error = "unparseable reply: " + last->lines.front();
    }
    result.reply = synthesized_failure(t.capture.stage(), rc, result.error);
    return result;
  }

  static SmtpReply synthesized_failure(WireStage stage, CURLcode rc, const std::string& error) {
    switch (rc) {
      case CURLE_USE_SSL_FAILED:
        // RFC 3463 X.7.4: security features not supported.
        return synthesized_reply(stage, "4.7.4", "TLS is required, but was not offered: " + error);
      case CURLE_SSL_CONNECT_ERROR:
      case CURLE_PEER_FAILED_VERIFICATION:
        // X.7.5: cryptographic failure.
        return synthesized_reply(stage, "4.7.5", "TLS failed: " + error);
      case CURLE_COULDNT_CONNECT:
      case CURLE_COULDNT_RESOLVE_HOST:
        // X.4.1: no answer from host.
        return synthesized_reply(stage, "4.4.1", "connect failed: " + error);
      case CURLE_OPERATION_TIMEDOUT:
        // X.4.2: bad connection (Postfix says "conversation timed out").
        return synthesized_reply(stage, "4.4.2", "conversation timed out: " + error);
      default:
        return synthesized_reply(stage, "4.4.2", "lost connection: " + error);
    }
  }

  asio::io_context& io_;
  std::string key_;
  CurlMultiLoop loop_;
  RouteCounters counters_;
  std::vector<CURL*> idle_;
  std::deque<Queued> queue_;
  std::map<CURL*, std::unique_ptr<Transfer>> active_;
  ReplyWatchdog watchdog_;
};

SmtpTransport::SmtpTransport(asio::io_context& io) : io_(io) {
  static const CURLcode global = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (global != CURLE_OK) throw std::runtime_error("curl_global_init failed");
}

SmtpTransport::~SmtpTransport() = default;

SmtpTransport::Route& SmtpTransport::route_for(const std::string& key) {
  auto it = routes_.find(key);
  if (it == routes_.end()) {
    it = routes_.emplace(key, std::make_unique<Route>(io_, key)).first;
  }
  return *it->second;
}

void SmtpTransport::submit(SendRequest request, SendCallback done) {
  auto key = normalise_route(request.route);
  if (!key) {
    std::string problem = "route is not smtp://host:port or smtps://host:port: " + request.route;
    asio::post(io_, [done = std::move(done), problem] {
      SendResult result;
      result.outcome = SendOutcome::kConnectionFailed;
      result.reply = synthesized_reply(WireStage::kGreeting, "4.3.5", problem);
      result.error = problem;
      done(std::move(result));
    });
    return;
  }
  route_for(*key).submit(std::move(request), std::move(done));
}

void SmtpTransport::set_connection_limit(const std::string& route, std::size_t limit) {
  auto key = normalise_route(route);
  if (!key) throw std::invalid_argument("set_connection_limit: not an smtp route: " + route);
  route_for(*key).set_limit(limit);
}

RouteCounters SmtpTransport::counters(const std::string& route) const {
  auto key = normalise_route(route);
  if (!key) return {};
  auto it = routes_.find(*key);
  return it == routes_.end() ? RouteCounters{} : it->second->counters();
}

std::map<std::string, RouteCounters> SmtpTransport::all_counters() const {
  std::map<std::string, RouteCounters> out;
  for (const auto& [key, route] : routes_) out.emplace(key, route->counters());
  return out;
}

std::size_t SmtpTransport::pending() const {
  std::size_t n = 0;
  for (const auto& [key, route] : routes_) {
    RouteCounters c = route->counters();
    n += c.in_flight + c.queued;
  }
  return n;
}

}  // namespace mailer::sender
