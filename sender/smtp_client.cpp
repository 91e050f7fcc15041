#include "sender/smtp_client.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <cctype>
#include <cstdint>
#include <deque>
#include <utility>

#include "sender/smtp_reply_reader.h"

namespace mailer::sender {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using throttle::SmtpReply;
using throttle::SmtpStage;
using Clock = std::chrono::steady_clock;

// A completion reply (RFC 5321 §4.2.1: 2yz).
bool completed(const SmtpReply& reply) {
  return reply.code >= 200 && reply.code < 300;
}

// An intermediate reply where only completion or failure may come.
bool is_out_of_class(const SmtpReply& reply) {
  return reply.code >= 300 && reply.code < 400;
}

SmtpReply local_reply(int code, std::string enhanced, std::string text, SmtpStage stage) {
  SmtpReply r;
  r.code = code;
  r.enhanced_status = std::move(enhanced);
  r.text = std::move(text);
  r.stage = stage;
  return r;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

bool has_8bit(std::string_view s) {
  return std::any_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}

bool has_line_break(std::string_view s) {
  return s.find_first_of("\r\n") != std::string_view::npos;
}

std::string base64(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

// The end of the stream as the network reports it: a close, a reset, or a
// TLS peer that closed without close_notify (servers that hang up after 421).
bool is_end_of_stream(const beast::error_code& ec) {
  return ec == asio::error::eof || ec == asio::error::connection_reset ||
         ec == ssl::error::stream_truncated;
}

}  // namespace

std::string_view to_string(SmtpOutcome outcome) {
  switch (outcome) {
    case SmtpOutcome::kOk:
      return "ok";
    case SmtpOutcome::kRejected:
      return "rejected";
    case SmtpOutcome::kNotAttempted:
      return "not_attempted";
    case SmtpOutcome::kConnectionLost:
      return "connection_lost";
    case SmtpOutcome::kTimedOut:
      return "timed_out";
    case SmtpOutcome::kTlsFailed:
      return "tls_failed";
    case SmtpOutcome::kProtocolError:
      return "protocol_error";
  }
  return "unknown";
}

bool SmtpResult::deferral() const {
  switch (outcome) {
    case SmtpOutcome::kOk:
      return false;
    case SmtpOutcome::kRejected:
    case SmtpOutcome::kNotAttempted:
      return reply.transient_failure();
    default:
      return true;
  }
}

SmtpCapabilities parse_ehlo_reply(const SmtpReply& reply) {
  SmtpCapabilities caps;
  caps.esmtp = true;
  std::string_view text = reply.text;
  bool first = true;
  while (true) {
    std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    if (!first) {
      std::size_t sp = line.find(' ');
      std::string keyword = upper(line.substr(0, sp));
      std::string_view params = sp == std::string_view::npos ? "" : line.substr(sp + 1);
      if (keyword == "PIPELINING") caps.pipelining = true;
      if (keyword == "STARTTLS") caps.starttls = true;
      if (keyword == "8BITMIME") caps.eight_bit_mime = true;
      if (keyword == "SMTPUTF8") caps.smtputf8 = true;
      if (keyword == "SIZE") {
        std::size_t limit = 0;
        for (char c : params) {
          if (c < '0' || c > '9' || limit > (SIZE_MAX - 9) / 10) break;
          limit = limit * 10 + static_cast<std::size_t>(c - '0');
        }
        caps.size = limit;
      }
      if (keyword == "AUTH") {
        while (!params.empty()) {
          std::size_t end = params.find(' ');
          if (end != 0) caps.auth.push_back(upper(params.substr(0, end)));
          if (end == std::string_view::npos) break;
          params.remove_prefix(end + 1);
        }
      }
    }
    first = false;
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return caps;
}

std::string dot_stuffed(std::string_view content) {
  std::string out;
  out.reserve(content.size() + content.size() / 64 + 5);
  bool line_start = true;
  for (char c : content) {
    if (line_start && c == '.') out += '.';
    out += c;
    line_start = c == '\n';
  }
  if (!content.empty() && !(out.size() >= 2 && out.ends_with("\r\n"))) out += "\r\n";
  out += ".\r\n";
  return out;
}

// The connection's state machine. Every step sets a deadline, starts one
// asynchronous operation and continues in its completion; `if (ec) return
// fail(ec, stage)` ends the current operation on any error.
class SmtpClient::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(asio::io_context& io, SmtpClientOptions options)
      : io_(io), options_(std::move(options)), tcp_(io) {}

  void connect(std::vector<tcp::endpoint> endpoints, std::string server_name, SmtpHandler done);
  void connect_from(std::vector<tcp::endpoint> endpoints, std::size_t index);
  void send(SmtpMessage message, SmtpHandler done);
  void quit(SmtpHandler done);
  void close();

  bool usable() const { return can_start() && !quit_requested_; }
  std::size_t messages_started() const { return started_; }
  const SmtpCapabilities& capabilities() const { return caps_; }
  // True once a handshake has completed, not merely when one was begun.
  bool tls_active() const { return tls_ != nullptr && tls_established_; }

 private:
  using ReplyStep = std::function<void(ReceivedReply)>;
  // A transaction may start now (sends queued before quit() still may).
  bool can_start() const { return ready_ && !closed_ && started_ < options_.max_messages; }
  struct Pending {
    SmtpMessage message;
    SmtpHandler done;
  };

  // --- primitives ---------------------------------------------------------
  template <class F>
  void with_stream(F&& f) {
    if (tls_) {
      f(*tls_);
    } else {
      f(tcp_);
    }
  }
  void write(std::string bytes, SmtpStage stage, std::chrono::milliseconds timeout,
             std::function<void()> next);
  void read_reply(SmtpStage stage, std::chrono::milliseconds timeout, ReplyStep next);
  void read_reply_until(SmtpStage stage, Clock::time_point deadline, ReplyStep next);
  void command(std::string line, SmtpStage stage, std::chrono::milliseconds timeout,
               ReplyStep next);
  void acknowledge_now();

  // --- endings ------------------------------------------------------------
  void fail(const beast::error_code& ec, SmtpStage stage);
  void fail_local(SmtpOutcome outcome, SmtpReply reply, std::string error);
  void reject(ReceivedReply r);
  void out_of_class(const SmtpReply& reply, std::string_view command);
  void complete(SmtpResult result);
  void pump();

  // --- session set-up -----------------------------------------------------
  void on_connected();
  void on_greeting(ReceivedReply r);
  void send_ehlo();
  void on_ehlo(ReceivedReply r);
  void after_ehlo();
  void on_starttls(ReceivedReply r);
  void start_tls(std::function<void()> next);
  void authenticate();
  void on_auth(ReceivedReply r);
  void session_ready(const SmtpReply& last);

  // --- transactions -------------------------------------------------------
  void start_transaction(Pending p);
  void begin_mail();
  std::string mail_command() const;
  void on_mail(ReceivedReply r);
  void read_next_rcpt();
  void on_rcpt(ReceivedReply r);
  void after_rcpts();
  void on_data(ReceivedReply r);
  void write_content(std::size_t offset);
  void on_end_of_data(ReceivedReply r);
  bool any_recipient_accepted() const;
  void end_unaccepted(std::optional<ReceivedReply> data_reply);
  void start_quit();

  asio::io_context& io_;
  SmtpClientOptions options_;
  beast::tcp_stream tcp_;
  std::shared_ptr<ssl::context> tls_context_;
  std::unique_ptr<ssl::stream<beast::tcp_stream&>> tls_;
  bool tls_established_ = false;
  SmtpReplyReader reader_;
  std::array<char, 4096> in_{};
  std::string out_;
  std::string server_name_;
  SmtpCapabilities caps_;
  SmtpReply ehlo_reply_;
  Clock::time_point deadline_{};

  bool ready_ = false;
  bool busy_ = false;
  bool closed_ = false;
  bool quit_requested_ = false;
  bool tls_tried_ = false;
  // MAIL was accepted and the transaction did not reach its final reply.
  bool transaction_open_ = false;
  std::size_t started_ = 0;
  std::deque<Pending> queue_;
  SmtpHandler quit_done_;

  // The operation in progress.
  SmtpHandler done_;
  SmtpResult result_;
  // The transaction in progress.
  SmtpMessage message_;
  bool pipelined_ = false;
  std::optional<ReceivedReply> mail_reply_;
  std::size_t rcpt_index_ = 0;
};

// --- primitives -------------------------------------------------------------

void SmtpClient::Session::write(std::string bytes, SmtpStage stage,
                                std::chrono::milliseconds timeout, std::function<void()> next) {
  out_ = std::move(bytes);
  deadline_ = Clock::now() + timeout;
  tcp_.expires_at(deadline_);
  auto on_write = [this, self = shared_from_this(), stage, next = std::move(next)](
                      beast::error_code ec, std::size_t) {
    if (ec) return fail(ec, stage);
    next();
  };
  with_stream([&](auto& stream) { asio::async_write(stream, asio::buffer(out_), on_write); });
}

void SmtpClient::Session::read_reply(SmtpStage stage, std::chrono::milliseconds timeout,
                                     ReplyStep next) {
  read_reply_until(stage, Clock::now() + timeout, std::move(next));
}

void SmtpClient::Session::read_reply_until(SmtpStage stage, Clock::time_point deadline,
                                           ReplyStep next) {
  if (std::optional<ReceivedReply> r = reader_.take()) {
    r->reply.stage = stage;
    // A positive reply the server did not finish promises nothing.
    if (r->cut_short && r->reply.code < 400) {
      return fail_local(SmtpOutcome::kConnectionLost, local_reply(421, "4.4.2", "", stage),
                        "connection closed in the middle of a positive reply");
    }
    return next(std::move(*r));
  }
  if (reader_.broken()) {
    return fail_local(SmtpOutcome::kProtocolError, local_reply(421, "4.5.0", "", stage),
                      "malformed reply: " + reader_.error());
  }
  if (reader_.finished()) {
    return fail_local(SmtpOutcome::kConnectionLost, local_reply(421, "4.4.2", "", stage),
                      "connection closed by the server");
  }
  deadline_ = deadline;
  tcp_.expires_at(deadline);
  auto on_read = [this, self = shared_from_this(), stage, deadline, next = std::move(next)](
                     beast::error_code ec, std::size_t n) mutable {
    if (is_end_of_stream(ec) && !closed_) {
      reader_.finish();
    } else if (ec) {
      return fail(ec, stage);
    } else {
      reader_.feed(std::string_view(in_.data(), n));
      acknowledge_now();
    }
    read_reply_until(stage, deadline, std::move(next));
  };
  with_stream([&](auto& stream) { stream.async_read_some(asio::buffer(in_), std::move(on_read)); });
}

void SmtpClient::Session::command(std::string line, SmtpStage stage,
                                  std::chrono::milliseconds timeout, ReplyStep next) {
  line += "\r\n";
  write(std::move(line), stage, timeout, [this, stage, timeout, next = std::move(next)]() mutable {
    read_reply(stage, timeout, std::move(next));
  });
}

// A server that writes each reply of a pipelined group on its own, with
// Nagle's algorithm on, holds the second reply until the first is
// acknowledged, and a delayed ACK holds that for up to 40 ms: a stall per
// message that caps a connection at about 25 messages/s however fast the
// server is. Acknowledging every read at once removes it (the reply just read
// may be the first of a group whose rest is held back).
void SmtpClient::Session::acknowledge_now() {
#ifdef TCP_QUICKACK
  int one = 1;
  ::setsockopt(tcp_.socket().native_handle(), IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
#endif
}

// --- endings ----------------------------------------------------------------

void SmtpClient::Session::fail(const beast::error_code& ec, SmtpStage stage) {
  bool timed_out = ec == beast::error::timeout || (!closed_ && Clock::now() >= deadline_);
  SmtpOutcome outcome = timed_out ? SmtpOutcome::kTimedOut : SmtpOutcome::kConnectionLost;
  std::string what = std::string(throttle::stage_name(stage)) + ": ";
  what += timed_out ? "timed out" : ec.message();
  fail_local(outcome, local_reply(421, "4.4.2", "", stage), std::move(what));
}

void SmtpClient::Session::fail_local(SmtpOutcome outcome, SmtpReply reply, std::string error) {
  SmtpResult result = std::move(result_);
  result.outcome = outcome;
  if (reply.text.empty()) reply.text = error;
  result.reply = std::move(reply);
  result.reply_from_server = false;
  result.reply_cut_short = false;
  result.error = std::move(error);
  close();
  complete(std::move(result));
}

// MAIL, RCPT and the end of data complete with 2xx or fail with 4xx/5xx; a
// 3xx there (or a code the dialogue cannot hold) means the server and the
// client no longer agree on where they are: nothing counts as accepted, the
// connection is closed, and the message is deferred.
void SmtpClient::Session::out_of_class(const SmtpReply& reply, std::string_view command) {
  fail_local(SmtpOutcome::kProtocolError, local_reply(421, "4.5.0", "", reply.stage),
             "unexpected reply to " + std::string(command) + ": " + throttle::one_line(reply));
}

void SmtpClient::Session::reject(ReceivedReply r) {
  SmtpResult result = std::move(result_);
  result.outcome = SmtpOutcome::kRejected;
  result.error = "server replied " + throttle::one_line(r.reply);
  // 421 announces that the server closes the channel (RFC 5321 §3.8); a
  // reply cut short means it already did.
  if (r.reply.code == 421 || r.cut_short || !ready_) close();
  result.reply = std::move(r.reply);
  result.reply_from_server = true;
  result.reply_cut_short = r.cut_short;
  complete(std::move(result));
}

void SmtpClient::Session::complete(SmtpResult result) {
  if (reader_.finished()) close();
  busy_ = false;
  result_ = {};
  asio::post(io_, [done = std::move(done_), result = std::move(result)]() mutable {
    if (done) done(std::move(result));
  });
  done_ = nullptr;
  pump();
}

void SmtpClient::Session::pump() {
  if (busy_ || (!ready_ && !closed_)) return;
  while (!queue_.empty() && !can_start()) {
    SmtpResult result;
    result.outcome = SmtpOutcome::kNotAttempted;
    result.reply = local_reply(421, "4.4.2", "", SmtpStage::kMail);
    result.error = closed_ ? "connection closed" : "connection reached its message limit";
    result.reply.text = result.error;
    asio::post(io_, [done = std::move(queue_.front().done), result]() mutable { done(result); });
    queue_.pop_front();
  }
  if (!queue_.empty()) {
    Pending next = std::move(queue_.front());
    queue_.pop_front();
    return start_transaction(std::move(next));
  }
  if (quit_done_) {
    if (closed_) {
      SmtpResult result;
      result.outcome = SmtpOutcome::kNotAttempted;
      result.reply = local_reply(421, "4.4.2", "connection closed", SmtpStage::kQuit);
      result.error = "connection closed";
      asio::post(io_, [done = std::move(quit_done_), result]() mutable { done(result); });
      quit_done_ = nullptr;
      return;
    }
    start_quit();
  }
}

void SmtpClient::Session::close() {
  closed_ = true;
  ready_ = false;
  beast::error_code ignored;
  tcp_.socket().shutdown(tcp::socket::shutdown_both, ignored);
  tcp_.close();
}

// --- session set-up ---------------------------------------------------------

void SmtpClient::Session::connect(std::vector<tcp::endpoint> endpoints, std::string server_name,
                                  SmtpHandler done) {
  server_name_ = std::move(server_name);
  done_ = std::move(done);
  busy_ = true;
  deadline_ = Clock::now() + options_.timeouts.connect;
  tcp_.expires_at(deadline_);
  if (!options_.source_address.empty()) return connect_from(std::move(endpoints), 0);
  tcp_.async_connect(endpoints,
                     [this, self = shared_from_this()](beast::error_code ec, const tcp::endpoint&) {
                       if (ec) return fail(ec, SmtpStage::kGreeting);
                       // Commands are small and each waits for its reply: send them at once.
                       beast::error_code ignored;
                       tcp_.socket().set_option(tcp::no_delay(true), ignored);
                       on_connected();
                     });
}

// Connecting from a given local address: each endpoint of its family in
// turn, on a socket bound to it before connecting.
void SmtpClient::Session::connect_from(std::vector<tcp::endpoint> endpoints, std::size_t index) {
  beast::error_code ec;
  const auto source = boost::asio::ip::make_address(options_.source_address, ec);
  if (ec) return fail(ec, SmtpStage::kGreeting);
  while (index < endpoints.size() && endpoints[index].address().is_v4() != source.is_v4()) ++index;
  if (index >= endpoints.size()) {
    return fail(boost::asio::error::address_family_not_supported, SmtpStage::kGreeting);
  }
  const tcp::endpoint target = endpoints[index];
  beast::error_code ignored;
  tcp_.socket().close(ignored);
  tcp_.socket().open(target.protocol(), ec);
  if (!ec) tcp_.socket().bind(tcp::endpoint(source, 0), ec);
  if (ec) return fail(ec, SmtpStage::kGreeting);
  tcp_.async_connect(target, [this, self = shared_from_this(), endpoints = std::move(endpoints),
                              index](beast::error_code ec2) mutable {
    if (ec2 && ec2 != beast::error::timeout && index + 1 < endpoints.size()) {
      return connect_from(std::move(endpoints), index + 1);
    }
    if (ec2) return fail(ec2, SmtpStage::kGreeting);
    beast::error_code ignored2;
    tcp_.socket().set_option(tcp::no_delay(true), ignored2);
    on_connected();
  });
}

void SmtpClient::Session::on_connected() {
  auto greet = [this] {
    read_reply(SmtpStage::kGreeting, options_.timeouts.greeting,
               [this](ReceivedReply r) { on_greeting(std::move(r)); });
  };
  if (options_.implicit_tls) return start_tls(greet);
  greet();
}

void SmtpClient::Session::on_greeting(ReceivedReply r) {
  if (r.reply.code != 220) return reject(std::move(r));
  send_ehlo();
}

void SmtpClient::Session::send_ehlo() {
  command("EHLO " + options_.helo_name, SmtpStage::kHelo, options_.timeouts.ehlo,
          [this](ReceivedReply r) { on_ehlo(std::move(r)); });
}

void SmtpClient::Session::on_ehlo(ReceivedReply r) {
  if (r.reply.code == 250) {
    caps_ = parse_ehlo_reply(r.reply);
    ehlo_reply_ = r.reply;
    return after_ehlo();
  }
  // A server that does not know EHLO answers 500/502 (or 501/504/550 in
  // older software); HELO is its dialect (RFC 5321 §3.2).
  if (!r.reply.permanent_failure() || r.cut_short) return reject(std::move(r));
  command("HELO " + options_.helo_name, SmtpStage::kHelo, options_.timeouts.ehlo,
          [this](ReceivedReply helo) {
            if (helo.reply.code != 250) return reject(std::move(helo));
            caps_ = SmtpCapabilities{};
            ehlo_reply_ = helo.reply;
            after_ehlo();
          });
}

void SmtpClient::Session::after_ehlo() {
  bool want_tls =
      !tls_ && !options_.implicit_tls && !tls_tried_ && options_.starttls != StartTls::kNone;
  if (want_tls && caps_.starttls) {
    tls_tried_ = true;
    return command("STARTTLS", SmtpStage::kHelo, options_.timeouts.tls,
                   [this](ReceivedReply r) { on_starttls(std::move(r)); });
  }
  if (!tls_ && options_.starttls == StartTls::kRequired && !options_.implicit_tls) {
    return fail_local(SmtpOutcome::kTlsFailed, local_reply(421, "4.7.0", "", SmtpStage::kHelo),
                      "STARTTLS is required and the server does not offer it");
  }
  authenticate();
}

void SmtpClient::Session::on_starttls(ReceivedReply r) {
  if (r.reply.code != 220) {
    if (options_.starttls == StartTls::kRequired || r.cut_short || r.reply.code == 421) {
      return reject(std::move(r));
    }
    return authenticate();
  }
  // Bytes after the 220 were sent before the handshake, in clear text, and
  // would be read as if they came over TLS (CVE-2011-0411): refuse them.
  if (reader_.ready() || reader_.mid_reply()) {
    return fail_local(SmtpOutcome::kProtocolError, local_reply(421, "4.5.0", "", SmtpStage::kHelo),
                      "data after the STARTTLS reply");
  }
  start_tls([this] { send_ehlo(); });
}

void SmtpClient::Session::start_tls(std::function<void()> next) {
  if (!options_.tls_context) {
    options_.tls_context = std::make_shared<ssl::context>(ssl::context::tls_client);
    options_.tls_context->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                                      ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                                      ssl::context::no_tlsv1_1);
    options_.tls_context->set_default_verify_paths();
  }
  tls_context_ = options_.tls_context;
  auto stream = std::make_unique<ssl::stream<beast::tcp_stream&>>(tcp_, *tls_context_);
  beast::error_code ec;
  asio::ip::make_address(server_name_, ec);
  bool is_address = !ec;
  if (!is_address && !server_name_.empty()) {
    SSL_set_tlsext_host_name(stream->native_handle(), server_name_.c_str());
  }
  if (options_.verify_certificates) {
    stream->set_verify_mode(ssl::verify_peer);
    stream->set_verify_callback(ssl::host_name_verification(server_name_));
  } else {
    stream->set_verify_mode(ssl::verify_none);
  }
  tls_ = std::move(stream);
  deadline_ = Clock::now() + options_.timeouts.tls;
  tcp_.expires_at(deadline_);
  tls_->async_handshake(ssl::stream_base::client, [this, self = shared_from_this(),
                                                   next = std::move(next)](beast::error_code ec) {
    if (ec) {
      if (ec == beast::error::timeout || Clock::now() >= deadline_) {
        return fail(ec, SmtpStage::kHelo);
      }
      return fail_local(SmtpOutcome::kTlsFailed, local_reply(421, "4.7.0", "", SmtpStage::kHelo),
                        "TLS handshake with " + server_name_ + " failed: " + ec.message());
    }
    tls_established_ = true;
    next();
  });
}

void SmtpClient::Session::authenticate() {
  if (!options_.login) return session_ready(ehlo_reply_);
  if (!tls_ && !options_.allow_login_without_tls) {
    return fail_local(SmtpOutcome::kTlsFailed, local_reply(421, "4.7.0", "", SmtpStage::kHelo),
                      "credentials are only sent over TLS");
  }
  const SmtpLogin& login = *options_.login;
  auto offers = [this](std::string_view mechanism) {
    return std::find(caps_.auth.begin(), caps_.auth.end(), mechanism) != caps_.auth.end();
  };
  if (offers("PLAIN")) {
    std::string token = base64(std::string(1, '\0') + login.user + '\0' + login.password);
    return command("AUTH PLAIN " + token, SmtpStage::kHelo, options_.timeouts.auth,
                   [this](ReceivedReply r) { on_auth(std::move(r)); });
  }
  if (offers("LOGIN")) {
    // RFC 4954 with the LOGIN mechanism: the server asks for the user name
    // and then the password, each with a 334 challenge.
    return command("AUTH LOGIN", SmtpStage::kHelo, options_.timeouts.auth, [this](ReceivedReply r) {
      if (r.reply.code != 334) return on_auth(std::move(r));
      command(base64(options_.login->user), SmtpStage::kHelo, options_.timeouts.auth,
              [this](ReceivedReply r2) {
                if (r2.reply.code != 334) return on_auth(std::move(r2));
                command(base64(options_.login->password), SmtpStage::kHelo, options_.timeouts.auth,
                        [this](ReceivedReply r3) { on_auth(std::move(r3)); });
              });
    });
  }
  fail_local(SmtpOutcome::kNotAttempted, local_reply(530, "5.7.0", "", SmtpStage::kHelo),
             "the server offers neither AUTH PLAIN nor AUTH LOGIN");
}

void SmtpClient::Session::on_auth(ReceivedReply r) {
  // The command buffer held the credentials; do not leave them in memory.
  std::fill(out_.begin(), out_.end(), '\0');
  if (r.reply.code != 235) return reject(std::move(r));
  session_ready(r.reply);
}

void SmtpClient::Session::session_ready(const SmtpReply& last) {
  ready_ = true;
  SmtpResult result;
  result.outcome = SmtpOutcome::kOk;
  result.reply = last;
  result.reply_from_server = last.code != 0;
  complete(std::move(result));
}

// --- transactions -------------------------------------------------------------

void SmtpClient::Session::start_transaction(Pending p) {
  busy_ = true;
  done_ = std::move(p.done);
  message_ = std::move(p.message);
  result_ = SmtpResult{};
  result_.reused_connection = started_ > 0;
  mail_reply_.reset();
  rcpt_index_ = 0;

  auto refuse = [this](int code, const char* enhanced, std::string why) {
    SmtpResult result = std::move(result_);
    result.outcome = SmtpOutcome::kNotAttempted;
    result.reply = local_reply(code, enhanced, why, SmtpStage::kMail);
    result.error = std::move(why);
    complete(std::move(result));
  };
  if (message_.recipients.empty()) return refuse(554, "5.5.1", "message without recipients");
  if (!message_.content) return refuse(554, "5.6.0", "message without content");
  bool bad_envelope = has_line_break(message_.envelope_from);
  bool utf8_envelope = has_8bit(message_.envelope_from);
  for (const std::string& rcpt : message_.recipients) {
    bad_envelope = bad_envelope || has_line_break(rcpt);
    utf8_envelope = utf8_envelope || has_8bit(rcpt);
  }
  if (bad_envelope) return refuse(501, "5.1.7", "envelope address with a line break");
  if (utf8_envelope && !caps_.smtputf8) {
    return refuse(553, "5.6.7", "non-ASCII address and the server does not offer SMTPUTF8");
  }
  if (has_8bit(*message_.content) && !caps_.eight_bit_mime) {
    return refuse(554, "5.6.3", "8-bit content and the server does not offer 8BITMIME");
  }
  if (caps_.size && *caps_.size > 0 && message_.content->size() > *caps_.size) {
    return refuse(552, "5.3.4", "message larger than the server's SIZE limit");
  }
  ++started_;
  pipelined_ = caps_.pipelining;
  if (!transaction_open_) return begin_mail();
  command("RSET", SmtpStage::kMail, options_.timeouts.rset, [this](ReceivedReply r) {
    if (r.reply.code != 250) return reject(std::move(r));
    transaction_open_ = false;
    begin_mail();
  });
}

std::string SmtpClient::Session::mail_command() const {
  std::string cmd = "MAIL FROM:<" + message_.envelope_from + ">";
  if (caps_.size) cmd += " SIZE=" + std::to_string(message_.content->size());
  if (caps_.eight_bit_mime && has_8bit(*message_.content)) cmd += " BODY=8BITMIME";
  bool utf8 = has_8bit(message_.envelope_from) ||
              std::any_of(message_.recipients.begin(), message_.recipients.end(),
                          [](const std::string& r) { return has_8bit(r); });
  if (utf8) cmd += " SMTPUTF8";
  return cmd;
}

void SmtpClient::Session::begin_mail() {
  if (!pipelined_) {
    return command(mail_command(), SmtpStage::kMail, options_.timeouts.mail,
                   [this](ReceivedReply r) { on_mail(std::move(r)); });
  }
  // RFC 2920: MAIL, every RCPT and DATA in one group; the replies come back
  // in the same order and are read one by one below.
  std::string group = mail_command() + "\r\n";
  for (const std::string& rcpt : message_.recipients) group += "RCPT TO:<" + rcpt + ">\r\n";
  group += "DATA\r\n";
  write(std::move(group), SmtpStage::kMail, options_.timeouts.mail, [this] {
    read_reply(SmtpStage::kMail, options_.timeouts.mail,
               [this](ReceivedReply r) { on_mail(std::move(r)); });
  });
}

void SmtpClient::Session::on_mail(ReceivedReply r) {
  if (is_out_of_class(r.reply)) return out_of_class(r.reply, "MAIL");
  bool accepted = completed(r.reply);
  if (accepted) transaction_open_ = true;
  // 421: the server closes now; the replies to the rest of a group never come.
  if (r.cut_short || r.reply.code == 421) return reject(std::move(r));
  mail_reply_ = r;
  if (!pipelined_) {
    if (!accepted) return reject(std::move(r));
    return command("RCPT TO:<" + message_.recipients[0] + ">", SmtpStage::kRcpt,
                   options_.timeouts.rcpt, [this](ReceivedReply rr) { on_rcpt(std::move(rr)); });
  }
  read_next_rcpt();
}

void SmtpClient::Session::read_next_rcpt() {
  if (rcpt_index_ == message_.recipients.size()) return after_rcpts();
  read_reply(SmtpStage::kRcpt, options_.timeouts.rcpt,
             [this](ReceivedReply r) { on_rcpt(std::move(r)); });
}

void SmtpClient::Session::on_rcpt(ReceivedReply r) {
  if (is_out_of_class(r.reply)) return out_of_class(r.reply, "RCPT");
  if (r.cut_short || r.reply.code == 421) return reject(std::move(r));
  result_.recipients.push_back(RecipientReply{message_.recipients[rcpt_index_], r.reply});
  ++rcpt_index_;
  if (pipelined_) return read_next_rcpt();
  if (rcpt_index_ < message_.recipients.size()) {
    return command("RCPT TO:<" + message_.recipients[rcpt_index_] + ">", SmtpStage::kRcpt,
                   options_.timeouts.rcpt, [this](ReceivedReply rr) { on_rcpt(std::move(rr)); });
  }
  after_rcpts();
}

bool SmtpClient::Session::any_recipient_accepted() const {
  return std::any_of(result_.recipients.begin(), result_.recipients.end(),
                     [](const RecipientReply& r) { return r.accepted(); });
}

void SmtpClient::Session::after_rcpts() {
  if (pipelined_) {
    return read_reply(SmtpStage::kData, options_.timeouts.data_initiation,
                      [this](ReceivedReply r) { on_data(std::move(r)); });
  }
  if (!any_recipient_accepted()) return end_unaccepted(std::nullopt);
  command("DATA", SmtpStage::kData, options_.timeouts.data_initiation,
          [this](ReceivedReply r) { on_data(std::move(r)); });
}

// The transaction ends without content: MAIL or every RCPT was refused (the
// first refusal is the result), or DATA was.
void SmtpClient::Session::end_unaccepted(std::optional<ReceivedReply> data_reply) {
  if (mail_reply_ && !completed(mail_reply_->reply)) return reject(std::move(*mail_reply_));
  if (!any_recipient_accepted()) {
    for (const RecipientReply& rr : result_.recipients) {
      if (!rr.accepted()) return reject(ReceivedReply{rr.reply, false});
    }
  }
  if (data_reply) return reject(std::move(*data_reply));
  fail_local(SmtpOutcome::kProtocolError, local_reply(421, "4.5.0", "", SmtpStage::kData),
             "transaction ended without a refusal");
}

void SmtpClient::Session::on_data(ReceivedReply r) {
  bool can_send = mail_reply_ && completed(mail_reply_->reply) && any_recipient_accepted();
  if (r.reply.code != 354) {
    if (r.cut_short || r.reply.code == 421) return reject(std::move(r));
    return end_unaccepted(can_send ? std::optional<ReceivedReply>(std::move(r)) : std::nullopt);
  }
  if (!can_send) {
    // A pipelining server that accepted DATA with no valid recipient (RFC
    // 2920 §3.1): end the data at once; nothing is delivered.
    return write(".\r\n", SmtpStage::kEndOfData, options_.timeouts.data_block, [this] {
      read_reply(SmtpStage::kEndOfData, options_.timeouts.data_termination, [this](ReceivedReply) {
        transaction_open_ = false;
        end_unaccepted(std::nullopt);
      });
    });
  }
  // Most content has no line to stuff and ends with CRLF: it goes out as it
  // is, followed by ".\r\n", in one gathered write and without a copy.
  const std::string& content = *message_.content;
  const bool as_is = content.size() >= 2 && content.ends_with("\r\n") && content.front() != '.' &&
                     content.find("\n.") == std::string::npos;
  if (as_is && content.size() + 3 <= kDataBlockBytes) {
    deadline_ = Clock::now() + options_.timeouts.data_block;
    tcp_.expires_at(deadline_);
    auto on_write = [this, self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return fail(ec, SmtpStage::kEndOfData);
      read_reply(SmtpStage::kEndOfData, options_.timeouts.data_termination,
                 [this](ReceivedReply r) { on_end_of_data(std::move(r)); });
    };
    static constexpr std::string_view kEnd = ".\r\n";
    const std::array<asio::const_buffer, 2> buffers{asio::buffer(content),
                                                    asio::buffer(kEnd.data(), kEnd.size())};
    with_stream([&](auto& stream) { asio::async_write(stream, buffers, std::move(on_write)); });
    return;
  }
  out_ = dot_stuffed(content);
  write_content(0);
}

void SmtpClient::Session::write_content(std::size_t offset) {
  if (offset == out_.size()) {
    return read_reply(SmtpStage::kEndOfData, options_.timeouts.data_termination,
                      [this](ReceivedReply r) { on_end_of_data(std::move(r)); });
  }
  std::size_t n = std::min(kDataBlockBytes, out_.size() - offset);
  deadline_ = Clock::now() + options_.timeouts.data_block;
  tcp_.expires_at(deadline_);
  auto on_write = [this, self = shared_from_this(), offset](beast::error_code ec, std::size_t) {
    if (ec) return fail(ec, SmtpStage::kEndOfData);
    write_content(offset + std::min(kDataBlockBytes, out_.size() - offset));
  };
  with_stream([&](auto& stream) {
    asio::async_write(stream, asio::buffer(out_.data() + offset, n), std::move(on_write));
  });
}

void SmtpClient::Session::on_end_of_data(ReceivedReply r) {
  transaction_open_ = false;
  result_.end_of_data = r.reply;
  if (is_out_of_class(r.reply)) return out_of_class(r.reply, "the end of data");
  if (!completed(r.reply)) return reject(std::move(r));
  SmtpResult result = std::move(result_);
  result.outcome = SmtpOutcome::kOk;
  result.reply = std::move(r.reply);
  result.reply_from_server = true;
  complete(std::move(result));
}

void SmtpClient::Session::start_quit() {
  busy_ = true;
  quit_requested_ = true;
  done_ = std::move(quit_done_);
  quit_done_ = nullptr;
  command("QUIT", SmtpStage::kQuit, options_.timeouts.quit, [this](ReceivedReply r) {
    SmtpResult result;
    result.outcome = r.reply.code == 221 ? SmtpOutcome::kOk : SmtpOutcome::kRejected;
    result.reply = std::move(r.reply);
    result.reply_from_server = true;
    result.reply_cut_short = r.cut_short;
    close();
    complete(std::move(result));
  });
}

// --- public API ---------------------------------------------------------------

void SmtpClient::Session::send(SmtpMessage message, SmtpHandler done) {
  if (quit_requested_) {
    SmtpResult result;
    result.outcome = SmtpOutcome::kNotAttempted;
    result.error = "send after quit";
    result.reply = local_reply(421, "4.4.2", result.error, SmtpStage::kMail);
    asio::post(io_, [done = std::move(done), result]() mutable { done(result); });
    return;
  }
  queue_.push_back(Pending{std::move(message), std::move(done)});
  pump();
}

void SmtpClient::Session::quit(SmtpHandler done) {
  quit_requested_ = true;
  quit_done_ = std::move(done);
  pump();
}

std::shared_ptr<SmtpClient> SmtpClient::create(asio::io_context& io, SmtpClientOptions options) {
  return std::shared_ptr<SmtpClient>(
      new SmtpClient(std::make_shared<Session>(io, std::move(options))));
}

SmtpClient::SmtpClient(std::shared_ptr<Session> session) : session_(std::move(session)) {}

SmtpClient::~SmtpClient() {
  session_->close();
}

void SmtpClient::connect(std::vector<tcp::endpoint> endpoints, std::string server_name,
                         SmtpHandler done) {
  session_->connect(std::move(endpoints), std::move(server_name), std::move(done));
}

void SmtpClient::send(SmtpMessage message, SmtpHandler done) {
  session_->send(std::move(message), std::move(done));
}

void SmtpClient::quit(SmtpHandler done) {
  session_->quit(std::move(done));
}

void SmtpClient::close() {
  session_->close();
}

bool SmtpClient::usable() const {
  return session_->usable();
}

std::size_t SmtpClient::messages_started() const {
  return session_->messages_started();
}

const SmtpCapabilities& SmtpClient::capabilities() const {
  return session_->capabilities();
}

bool SmtpClient::tls_active() const {
  return session_->tls_active();
}

}  // namespace mailer::sender
