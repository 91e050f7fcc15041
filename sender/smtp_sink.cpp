#include "sender/smtp_sink.h"

#include <openssl/ssl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/read_until.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <cctype>
#include <fstream>
#include <set>
#include <sstream>
#include <system_error>
#include <utility>

#include "throttle/provider_profiles.h"

namespace mailer::sender {

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

std::optional<SinkStage> parse_sink_stage(std::string_view name) {
  std::string n(name);
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return std::tolower(c); });
  if (n == "greeting" || n == "connect") return SinkStage::kGreeting;
  if (n == "helo" || n == "ehlo") return SinkStage::kHelo;
  if (n == "mail") return SinkStage::kMail;
  if (n == "rcpt") return SinkStage::kRcpt;
  if (n == "data") return SinkStage::kData;
  if (n == "dot" || n == "eod" || n == ".") return SinkStage::kEndOfData;
  return std::nullopt;
}

namespace {

// Longest command line accepted (RFC 5321 4.5.3.1.4 says 512 octets; SMTP
// extensions may add parameters, so leave room).
constexpr std::size_t kMaxCommandLine = 2048;
// Longest text line inside DATA (RFC 5321 4.5.3.1.6 says 1000 octets);
// anything longer is still taken, up to the message size limit.
constexpr std::size_t kMaxDataLine = 1024 * 1024;

std::string upper(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return std::toupper(c); });
  return out;
}

// The address between angle brackets after "FROM:" / "TO:", and whatever
// parameters follow; nullopt if the syntax is broken.
std::optional<std::pair<std::string, std::string>> path_argument(std::string_view arg) {
  std::size_t open = arg.find('<');
  std::size_t close = arg.find('>', open == std::string_view::npos ? 0 : open);
  if (open == std::string_view::npos || close == std::string_view::npos) return std::nullopt;
  std::string address(arg.substr(open + 1, close - open - 1));
  std::string params(arg.substr(close + 1));
  return std::make_pair(address, params);
}

}  // namespace

std::optional<SinkProfile> sink_profile(std::string_view name) {
  auto provider = throttle::find_provider_profile(name);
  if (!provider) return std::nullopt;
  SinkProfile p;
  p.name = std::string(name);
  // A provider that throttles at the greeting (generic servers) is answered
  // at MAIL instead: the sink measures messages, not connections.
  p.defer_at = provider->throttle.stage == throttle::SmtpStage::kEndOfData ? SinkStage::kEndOfData
                                                                           : SinkStage::kMail;
  p.deferral = throttle::format_smtp_reply(provider->throttle);
  p.greeting_refusal = throttle::format_smtp_reply(provider->too_many_connections);
  if (provider->penalty) {
    p.penalty_reply = throttle::format_smtp_reply(*provider->penalty);
    p.penalty_for = kDefaultPenaltyBox;
  }
  return p;
}

// What all sessions of one sink share.
class SmtpSink::State : public std::enable_shared_from_this<SmtpSink::State> {
 public:
  State(asio::io_context& io, const tcp::endpoint& endpoint, SinkOptions options)
      : io(io), acceptor(io, endpoint), options(std::move(options)) {
    tokens = burst();
    refilled = Clock::now();
    if (this->options.maildir) {
      for (const char* sub : {"tmp", "new", "cur"}) {
        std::filesystem::create_directories(*this->options.maildir / sub);
      }
    }
  }

  void accept();

  double burst() const { return std::max(1.0, options.capacity); }

  // One message's worth of capacity, if there is any left.
  bool take_token() {
    if (options.capacity <= 0) return true;
    auto now = Clock::now();
    std::chrono::duration<double> elapsed = now - refilled;
    refilled = now;
    tokens = std::min(burst(), tokens + elapsed.count() * options.capacity);
    if (tokens < 1.0) return false;
    tokens -= 1.0;
    return true;
  }

  bool in_penalty_box(const std::string& client) {
    auto it = penalty_until.find(client);
    if (it == penalty_until.end()) return false;
    if (Clock::now() < it->second) return true;
    penalty_until.erase(it);
    return false;
  }

  // Writes the message to tmp/ and renames it into new/; returns its name,
  // unique across sinks of one process sharing a maildir (the port differs).
  std::string store(const std::string& from, const std::vector<std::string>& rcpts,
                    const std::string& body) {
    std::string name = std::to_string(std::chrono::system_clock::now().time_since_epoch() /
                                      std::chrono::seconds(1)) +
                       ".P" + std::to_string(::getpid()) + "_" +
                       std::to_string(acceptor.local_endpoint().port()) + "Q" +
                       std::to_string(++stored) + "." + options.hostname;
    if (!options.maildir) return name;
    auto tmp = *options.maildir / "tmp" / name;
    {
      std::ofstream out(tmp, std::ios::binary);
      out << "Return-Path: <" << from << ">\r\n";
      for (const auto& r : rcpts) out << "Delivered-To: " << r << "\r\n";
      out << body;
      if (!out) throw std::runtime_error("maildir: cannot write " + tmp.string());
    }
    std::filesystem::rename(tmp, *options.maildir / "new" / name);
    return name;
  }

  asio::io_context& io;
  tcp::acceptor acceptor;
  SinkOptions options;
  SinkCounters counters;
  double tokens = 0;
  Clock::time_point refilled;
  std::map<std::string, Clock::time_point> penalty_until;
  std::uint64_t data_transactions = 0;
  std::uint64_t stored = 0;
  bool stopped = false;
  std::vector<std::weak_ptr<Session>> sessions;
};

// One client connection: reads a line, answers it, reads the next. Commands a
// pipelining client sent together wait in the read buffer and are answered in
// order.
class SmtpSink::Session : public std::enable_shared_from_this<SmtpSink::Session> {
 public:
  Session(std::shared_ptr<State> state, tcp::socket socket)
      : state_(std::move(state)),
        socket_(std::move(socket)),
        deadline_(state_->io),
        delay_(state_->io) {
    boost::system::error_code ec;
    auto remote = socket_.remote_endpoint(ec);
    client_ = ec ? "unknown" : remote.address().to_string();
  }

  void start() {
    ++state_->counters.connections;
    const SinkOptions& o = state_->options;
    if (o.greeting_421) {
      ++state_->counters.rejected["greeting"];
      reply(o.profile.greeting_refusal, true);
      return;
    }
    if (stalls_at(SinkStage::kGreeting)) return stall();
    reply("220 " + o.hostname + " ESMTP mailer-sink\r\n");
  }

  void close() {
    boost::system::error_code ignored;
    socket_.close(ignored);
    deadline_.cancel();
    delay_.cancel();
  }

 private:
  bool stalls_at(SinkStage stage) const { return state_->options.stall_after == stage; }

  // Runs `f` with the stream the session speaks over now: the socket, or
  // the TLS stream on it after STARTTLS.
  template <class F>
  void with_stream(F&& f) {
    if (tls_) {
      f(*tls_);
    } else {
      f(socket_);
    }
  }

  // Stops answering but keeps the connection until the client gives up or the
  // idle timeout passes.
  void stall() {
    arm_deadline();
    auto self = shared_from_this();
    with_stream([&](auto& stream) {
      stream.async_read_some(asio::buffer(scratch_), [self](boost::system::error_code ec, size_t) {
        if (ec) return self->close();
        self->stall();
      });
    });
  }

  void arm_deadline() {
    deadline_.expires_after(state_->options.idle_timeout);
    auto self = shared_from_this();
    deadline_.async_wait([self](boost::system::error_code ec) {
      if (ec || self->deadline_.expiry() > Clock::now()) return;
      ++self->state_->counters.timed_out;
      self->close();
    });
  }

  void reply(std::string text, bool close_after = false) {
    out_ = std::move(text);
    auto self = shared_from_this();
    with_stream([&](auto& stream) {
      asio::async_write(stream, asio::buffer(out_),
                        [self, close_after](boost::system::error_code ec, size_t) {
                          if (ec || close_after) return self->close();
                          self->read_line();
                        });
    });
  }

  void read_line() {
    if (state_->stopped) return close();
    arm_deadline();
    auto self = shared_from_this();
    auto on_line = [self](boost::system::error_code ec, size_t n) {
      if (ec) return self->close();
      std::string line(asio::buffers_begin(self->in_.data()),
                       asio::buffers_begin(self->in_.data()) + static_cast<long>(n - 2));
      self->in_.consume(n);
      if (self->in_data_) {
        self->data_line(line);
      } else {
        self->command(line);
      }
    };
    with_stream([&](auto& stream) { asio::async_read_until(stream, in_, "\r\n", on_line); });
  }

  void command(const std::string& line) {
    if (line.size() > kMaxCommandLine) return reply("500 5.5.2 Line too long\r\n");
    std::string verb = upper(line.substr(0, line.find(' ')));
    std::string arg = line.find(' ') == std::string::npos ? "" : line.substr(line.find(' ') + 1);
    if (verb == "EHLO" || verb == "HELO") return helo(verb == "EHLO");
    if (verb == "MAIL") return mail(arg);
    if (verb == "RCPT") return rcpt(arg);
    if (verb == "DATA") return data();
    if (verb == "RSET") {
      reset();
      return reply("250 2.0.0 Ok\r\n");
    }
    if (verb == "NOOP") return reply("250 2.0.0 Ok\r\n");
    if (verb == "VRFY") return reply("252 2.0.0 Cannot VRFY user\r\n");
    if (verb == "QUIT") return reply("221 2.0.0 Bye\r\n", true);
    if (verb == "STARTTLS") return starttls(arg);
    reply("502 5.5.2 Error: command not recognized\r\n");
  }

  void reset() {
    in_transaction_ = false;
    from_.clear();
    rcpts_.clear();
    body_.clear();
    too_big_ = false;
  }

  void helo(bool extended) {
    if (stalls_at(SinkStage::kHelo)) return stall();
    reset();
    greeted_ = true;
    const SinkOptions& o = state_->options;
    if (!extended) return reply("250 " + o.hostname + "\r\n");
    reply("250-" + o.hostname + "\r\n250-PIPELINING\r\n250-SIZE " +
          std::to_string(o.max_message_size) + "\r\n" + (o.tls && !tls_ ? "250-STARTTLS\r\n" : "") +
          "250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8\r\n");
  }

  // RFC 3207: 220, then the TLS handshake on the same connection, after
  // which the client starts over with EHLO.
  void starttls(const std::string& arg) {
    if (!state_->options.tls) return reply("502 5.5.1 Error: command not implemented\r\n");
    if (tls_) return reply("503 5.5.1 Error: TLS already active\r\n");
    if (!arg.empty()) return reply("501 5.5.4 Syntax: STARTTLS\r\n");
    // Commands pipelined behind STARTTLS came in clear text and must not be
    // taken as if they came over TLS (RFC 3207 §4.2, CVE-2011-0411).
    if (in_.size() > 0) {
      return reply("554 5.5.1 Error: commands sent after STARTTLS\r\n", true);
    }
    out_ = "220 2.0.0 Ready to start TLS\r\n";
    auto self = shared_from_this();
    asio::async_write(socket_, asio::buffer(out_), [self](boost::system::error_code ec, size_t) {
      if (ec) return self->close();
      self->handshake();
    });
  }

  void handshake() {
    tls_ = std::make_unique<asio::ssl::stream<tcp::socket&>>(socket_, *state_->options.tls);
    arm_deadline();
    auto self = shared_from_this();
    tls_->async_handshake(asio::ssl::stream_base::server, [self](boost::system::error_code ec) {
      if (ec) {
        ++self->state_->counters.tls_failed;
        return self->close();
      }
      ++self->state_->counters.tls_sessions;
      self->greeted_ = false;
      self->reset();
      self->read_line();
    });
  }

  void mail(const std::string& arg) {
    if (stalls_at(SinkStage::kMail)) return stall();
    if (!greeted_) return reply("503 5.5.1 Error: send HELO/EHLO first\r\n");
    if (in_transaction_) return reply("503 5.5.1 Error: nested MAIL command\r\n");
    auto path = upper(arg).starts_with("FROM:") ? path_argument(arg.substr(5)) : std::nullopt;
    if (!path) return reply("501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
    std::string params = upper(path->second);
    if (auto at = params.find("SIZE="); at != std::string::npos) {
      if (std::strtoull(params.c_str() + at + 5, nullptr, 10) > state_->options.max_message_size) {
        ++state_->counters.rejected["size"];
        return reply("552 5.3.4 Message size exceeds fixed limit\r\n");
      }
    }
    const SinkProfile& profile = state_->options.profile;
    if (profile.penalty_for && state_->in_penalty_box(client_)) {
      ++state_->counters.deferred["penalty_box"];
      return deferral(profile.penalty_reply);
    }
    if (profile.defer_at == SinkStage::kMail && !state_->take_token()) {
      over_capacity();
      return deferral(profile.deferral);
    }
    in_transaction_ = true;
    from_ = path->first;
    reply("250 2.1.0 Ok\r\n");
  }

  void over_capacity() {
    ++state_->counters.deferred["capacity"];
    const SinkProfile& profile = state_->options.profile;
    if (profile.penalty_for) state_->penalty_until[client_] = Clock::now() + *profile.penalty_for;
  }

  // A 421 closes the connection, as RFC 5321 says it does.
  void deferral(const std::string& wire) {
    reset();
    reply(wire, wire.starts_with("421"));
  }

  void rcpt(const std::string& arg) {
    if (stalls_at(SinkStage::kRcpt)) return stall();
    if (!in_transaction_) return reply("503 5.5.1 Error: need MAIL command\r\n");
    auto path = upper(arg).starts_with("TO:") ? path_argument(arg.substr(3)) : std::nullopt;
    if (!path || path->first.empty()) return reply("501 5.5.4 Syntax: RCPT TO:<address>\r\n");
    const auto& pattern = state_->options.fail_rcpt_matching;
    if (pattern && std::regex_search(path->first, *pattern)) {
      ++state_->counters.rejected["unknown_recipient"];
      return reply("550 5.1.1 <" + path->first +
                   ">: Recipient address rejected: User unknown in virtual mailbox table\r\n");
    }
    rcpts_.push_back(path->first);
    reply("250 2.1.5 Ok\r\n");
  }

  void data() {
    if (stalls_at(SinkStage::kData)) return stall();
    if (!in_transaction_) return reply("503 5.5.1 Error: need MAIL command\r\n");
    if (rcpts_.empty()) return reply("554 5.5.1 Error: no valid recipients\r\n");
    in_data_ = true;
    std::uint64_t n = ++state_->data_transactions;
    std::uint64_t every = state_->options.drop_mid_data_every;
    drop_this_ = every > 0 && n % every == 0;
    reply("354 End data with <CR><LF>.<CR><LF>\r\n");
  }

  void data_line(const std::string& line) {
    if (line == ".") {
      in_data_ = false;
      return end_of_data();
    }
    if (drop_this_) {
      ++state_->counters.dropped;
      return close();
    }
    // Dot-unstuffing (RFC 5321 4.5.2): a leading dot was doubled by the client.
    std::string_view text = line;
    if (text.starts_with('.')) text.remove_prefix(1);
    if (too_big_ || body_.size() + text.size() + 2 > state_->options.max_message_size ||
        text.size() > kMaxDataLine) {
      too_big_ = true;
      body_.clear();
    } else {
      body_.append(text);
      body_.append("\r\n");
    }
    read_line();
  }

  void end_of_data() {
    if (stalls_at(SinkStage::kEndOfData)) return stall();
    if (too_big_) {
      reset();
      ++state_->counters.rejected["size"];
      return reply("552 5.3.4 Message size exceeds fixed limit\r\n");
    }
    const SinkProfile& profile = state_->options.profile;
    std::string answer;
    std::string deferred;
    if (profile.defer_at == SinkStage::kEndOfData && !state_->take_token()) {
      over_capacity();
      deferred = profile.deferral;
    } else {
      try {
        answer = "250 2.0.0 Ok: queued as " + state_->store(from_, rcpts_, body_) + "\r\n";
        ++state_->counters.accepted;
      } catch (const std::exception&) {
        answer = "451 4.3.0 Error: queue file write error\r\n";
      }
    }
    auto self = shared_from_this();
    auto send = [self, answer, deferred] {
      if (!deferred.empty()) return self->deferral(deferred);
      self->reset();
      self->reply(answer);
    };
    if (state_->options.latency.count() <= 0) return send();
    delay_.expires_after(state_->options.latency);
    delay_.async_wait([send](boost::system::error_code ec) {
      if (!ec) send();
    });
  }

  std::shared_ptr<State> state_;
  tcp::socket socket_;
  std::unique_ptr<asio::ssl::stream<tcp::socket&>> tls_;
  asio::steady_timer deadline_;
  asio::steady_timer delay_;
  asio::streambuf in_{kMaxDataLine + 2};
  std::array<char, 4096> scratch_{};
  std::string out_;
  std::string client_;
  bool greeted_ = false;
  bool in_transaction_ = false;
  bool in_data_ = false;
  bool drop_this_ = false;
  bool too_big_ = false;
  std::string from_;
  std::vector<std::string> rcpts_;
  std::string body_;
};

void SmtpSink::State::accept() {
  auto self = shared_from_this();
  acceptor.async_accept([self](boost::system::error_code ec, tcp::socket socket) {
    if (self->stopped) return;
    if (!ec) {
      auto session = std::make_shared<Session>(self, std::move(socket));
      std::erase_if(self->sessions, [](const auto& w) { return w.expired(); });
      self->sessions.push_back(session);
      session->start();
    }
    self->accept();
  });
}

SmtpSink::SmtpSink(asio::io_context& io, const tcp::endpoint& endpoint, SinkOptions options)
    : state_(std::make_shared<State>(io, endpoint, std::move(options))) {
  state_->accept();
}

SmtpSink::~SmtpSink() {
  stop();
}

tcp::endpoint SmtpSink::local_endpoint() const {
  return state_->acceptor.local_endpoint();
}

void SmtpSink::stop() {
  if (state_->stopped) return;
  state_->stopped = true;
  boost::system::error_code ignored;
  state_->acceptor.close(ignored);
  for (auto& w : state_->sessions) {
    if (auto s = w.lock()) s->close();
  }
}

const SinkCounters& SmtpSink::counters() const {
  return state_->counters;
}

std::shared_ptr<asio::ssl::context> sink_tls_context(const std::string& cert_file,
                                                     const std::string& key_file) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                   asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                   asio::ssl::context::no_tlsv1_1);
  boost::system::error_code ec;
  ctx->use_certificate_chain_file(cert_file, ec);
  if (ec) {
    throw std::runtime_error("certificate file " + cert_file + ": " + ec.message() +
                             " (expected a PEM certificate chain)");
  }
  ctx->use_private_key_file(key_file, asio::ssl::context::pem, ec);
  if (ec) {
    throw std::runtime_error("key file " + key_file + ": " + ec.message() +
                             " (expected a PEM private key)");
  }
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    throw std::runtime_error("key file " + key_file + " does not belong to certificate file " +
                             cert_file);
  }
  return ctx;
}

namespace {
std::string json_map(const std::map<std::string, std::uint64_t>& m) {
  std::string out = "{";
  for (const auto& [k, v] : m) {
    if (out.size() > 1) out += ',';
    out += "\"" + k + "\":" + std::to_string(v);
  }
  return out + "}";
}
std::uint64_t total(const std::map<std::string, std::uint64_t>& m) {
  std::uint64_t n = 0;
  for (const auto& [k, v] : m) n += v;
  return n;
}
}  // namespace

std::string to_json(const SinkCounters& c) {
  return "{\"connections\":" + std::to_string(c.connections) +
         ",\"accepted\":" + std::to_string(c.accepted) + ",\"deferred\":" + json_map(c.deferred) +
         ",\"rejected\":" + json_map(c.rejected) + ",\"dropped\":" + std::to_string(c.dropped) +
         ",\"timed_out\":" + std::to_string(c.timed_out) +
         ",\"tls_sessions\":" + std::to_string(c.tls_sessions) +
         ",\"tls_failed\":" + std::to_string(c.tls_failed) + "}";
}

std::string to_text(const SinkCounters& c) {
  std::string out = "connections=" + std::to_string(c.connections) +
                    " accepted=" + std::to_string(c.accepted) +
                    " deferred=" + std::to_string(total(c.deferred));
  for (const auto& [k, v] : c.deferred) out += " deferred." + k + "=" + std::to_string(v);
  for (const auto& [k, v] : c.rejected) out += " rejected." + k + "=" + std::to_string(v);
  out += " dropped=" + std::to_string(c.dropped) + " timed_out=" + std::to_string(c.timed_out);
  if (c.tls_sessions > 0 || c.tls_failed > 0) {
    out += " tls_sessions=" + std::to_string(c.tls_sessions) +
           " tls_failed=" + std::to_string(c.tls_failed);
  }
  return out;
}

}  // namespace mailer::sender
