#include "app/inbound/inbound_server.h"

#include <spdlog/spdlog.h>

#include <array>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <utility>

namespace mailer::app {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using asio::ip::tcp;

// What all connections of one server share.
class InboundServer::State : public std::enable_shared_from_this<InboundServer::State> {
 public:
  State(asio::io_context& io, const tcp::endpoint& endpoint, InboundServerOptions options,
        Deliver deliver)
      : io(io), acceptor(io, endpoint), options(std::move(options)), deliver(std::move(deliver)) {
    this->options.session.tls_available = this->options.tls != nullptr;
    tls = this->options.tls ? this->options.tls
                            : std::make_shared<ssl::context>(ssl::context::tls_server);
  }

  void accept();

  void connection_ended() {
    --active;
    if (stopping && active == 0 && on_drained) {
      asio::post(io, std::exchange(on_drained, nullptr));
    }
  }

  asio::io_context& io;
  tcp::acceptor acceptor;
  InboundServerOptions options;
  Deliver deliver;
  std::shared_ptr<ssl::context> tls;
  InboundCounters counters;
  std::size_t active = 0;
  bool stopping = false;
  std::function<void()> on_drained;
  std::vector<std::weak_ptr<Connection>> connections;
};

// One client: reads bytes, lets the session answer them, writes the replies,
// and repeats; a message waits for its delivery outcome in between.
class InboundServer::Connection : public std::enable_shared_from_this<InboundServer::Connection> {
 public:
  Connection(std::shared_ptr<State> state, tcp::socket socket, bool counted)
      : state_(std::move(state)),
        stream_(std::move(socket), *state_->tls),
        timer_(state_->io),
        session_(state_->options.session),
        counted_(counted) {
    boost::system::error_code ec;
    const auto remote = stream_.next_layer().remote_endpoint(ec);
    client_ = ec ? "unknown" : remote.address().to_string();
  }

  ~Connection() {
    if (counted_) state_->connection_ended();
  }

  void start() {
    auto self = shared_from_this();
    if (!counted_) {
      spdlog::warn("inbound: {}: refused, {} connections already", client_,
                   state_->options.max_connections);
      return send(session_.busy(), [self] { self->close(); });
    }
    spdlog::debug("inbound: {}: connected", client_);
    send(session_.greeting(), [self] { self->read(); });
  }

  // Shutdown began: an idle connection gets 421 now; one inside a
  // transaction finishes it first.
  void drain() {
    session_.begin_shutdown();
    if (reading_ && !session_.in_transaction()) interrupt(Interrupt::kShutdown);
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    boost::system::error_code ignored;
    timer_.cancel();
    stream_.next_layer().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.next_layer().close(ignored);
  }

 private:
  enum class Interrupt { kNone, kTimeout, kShutdown };

  void arm(std::chrono::milliseconds after) {
    const std::uint64_t generation = ++generation_;
    timer_.expires_after(after);
    auto self = shared_from_this();
    timer_.async_wait([self, generation](boost::system::error_code ec) {
      if (ec || generation != self->generation_ || self->closed_) return;
      ++self->state_->counters.timed_out;
      spdlog::info("inbound: {}: timed out", self->client_);
      if (self->reading_) return self->interrupt(Interrupt::kTimeout);
      self->close();
    });
  }

  void disarm() {
    ++generation_;
    timer_.cancel();
  }

  void interrupt(Interrupt why) {
    interrupt_ = why;
    boost::system::error_code ignored;
    stream_.next_layer().cancel(ignored);
  }

  void send(std::string text, std::function<void()> then) {
    if (closed_) return;
    if (text.empty()) return then();
    out_ = std::move(text);
    arm(state_->options.command_timeout);
    auto self = shared_from_this();
    auto handler = [self, then = std::move(then)](boost::system::error_code ec, std::size_t) {
      self->disarm();
      if (ec || self->closed_) return self->close();
      then();
    };
    if (tls_) {
      asio::async_write(stream_, asio::buffer(out_), std::move(handler));
    } else {
      asio::async_write(stream_.next_layer(), asio::buffer(out_), std::move(handler));
    }
  }

  void read() {
    if (closed_) return;
    auto self = shared_from_this();
    if (state_->stopping && !session_.in_transaction()) {
      return send(session_.shutting_down(), [self] { self->close(); });
    }
    reading_ = true;
    interrupt_ = Interrupt::kNone;
    arm(session_.stage() == SmtpStage::kData ? state_->options.data_timeout
                                             : state_->options.command_timeout);
    auto handler = [self](boost::system::error_code ec, std::size_t n) {
      self->reading_ = false;
      self->disarm();
      if (self->closed_) return;
      if (ec) {
        const Interrupt why = std::exchange(self->interrupt_, Interrupt::kNone);
        if (ec == asio::error::operation_aborted && why != Interrupt::kNone) {
          const std::string reply = why == Interrupt::kTimeout ? self->session_.timed_out()
                                                               : self->session_.shutting_down();
          return self->send(reply, [self] { self->close(); });
        }
        return self->close();
      }
      self->session_.feed(std::string_view(self->buf_.data(), n));
      self->process();
    };
    if (tls_) {
      stream_.async_read_some(asio::buffer(buf_), std::move(handler));
    } else {
      stream_.next_layer().async_read_some(asio::buffer(buf_), std::move(handler));
    }
  }

  void process() {
    SmtpStep step = session_.step();
    auto self = shared_from_this();
    switch (step.action) {
      case SmtpAction::kNeedInput:
        return send(std::move(step.replies), [self] { self->read(); });
      case SmtpAction::kClose:
        return send(std::move(step.replies), [self] { self->close(); });
      case SmtpAction::kStartTls:
        return send(std::move(step.replies), [self] { self->handshake(); });
      case SmtpAction::kMessage:
        return send(std::move(step.replies), [self] { self->deliver(); });
    }
  }

  void handshake() {
    tls_ = true;
    arm(state_->options.tls_handshake_timeout);
    auto self = shared_from_this();
    stream_.async_handshake(ssl::stream_base::server, [self](boost::system::error_code ec) {
      self->disarm();
      if (self->closed_) return;
      if (ec) {
        spdlog::info("inbound: {}: TLS handshake failed: {}", self->client_,
                     log_escape(ec.message()));
        return self->close();
      }
      self->session_.tls_started();
      self->read();
    });
  }

  void deliver() {
    InboundMessage message;
    message.client = client_;
    message.sender = session_.sender();
    message.recipients = session_.recipients();
    message.data = session_.message();
    auto self = shared_from_this();
    state_->deliver(std::move(message), [self](SmtpDelivery outcome) {
      if (outcome == SmtpDelivery::kAccepted) {
        ++self->state_->counters.messages;
      } else {
        ++self->state_->counters.deferred;
      }
      const std::string reply = self->session_.message_done(outcome);
      if (self->closed_) return;
      self->send(reply, [self] { self->process(); });
    });
  }

  std::shared_ptr<State> state_;
  ssl::stream<tcp::socket> stream_;
  asio::steady_timer timer_;
  SmtpSession session_;
  bool counted_;
  std::string client_;
  std::array<char, 16384> buf_{};
  std::string out_;
  std::uint64_t generation_ = 0;
  bool tls_ = false;
  bool reading_ = false;
  bool closed_ = false;
  Interrupt interrupt_ = Interrupt::kNone;
};

void InboundServer::State::accept() {
  auto self = shared_from_this();
  acceptor.async_accept([self](boost::system::error_code ec, tcp::socket socket) {
    if (self->stopping) return;
    if (!ec) {
      ++self->counters.connections;
      const bool over = self->active >= self->options.max_connections;
      if (over) {
        ++self->counters.refused_connections;
      } else {
        ++self->active;
      }
      auto connection = std::make_shared<Connection>(self, std::move(socket), !over);
      std::erase_if(self->connections, [](const auto& w) { return w.expired(); });
      self->connections.push_back(connection);
      connection->start();
    } else if (ec != asio::error::operation_aborted) {
      spdlog::warn("inbound: accept: {}", ec.message());
    }
    self->accept();
  });
}

InboundServer::InboundServer(asio::io_context& io, const tcp::endpoint& endpoint,
                             InboundServerOptions options, Deliver deliver)
    : state_(std::make_shared<State>(io, endpoint, std::move(options), std::move(deliver))) {
  state_->accept();
}

InboundServer::~InboundServer() {
  state_->on_drained = nullptr;
  if (!state_->stopping) {
    state_->stopping = true;
    boost::system::error_code ignored;
    state_->acceptor.close(ignored);
  }
  close_all();
}

tcp::endpoint InboundServer::local_endpoint() const {
  return state_->acceptor.local_endpoint();
}

void InboundServer::shutdown(std::function<void()> on_drained) {
  state_->stopping = true;
  boost::system::error_code ignored;
  state_->acceptor.close(ignored);
  state_->on_drained = std::move(on_drained);
  for (auto& w : state_->connections) {
    if (auto c = w.lock()) c->drain();
  }
  if (state_->active == 0 && state_->on_drained) {
    asio::post(state_->io, std::exchange(state_->on_drained, nullptr));
  }
}

void InboundServer::close_all() {
  for (auto& w : state_->connections) {
    if (auto c = w.lock()) c->close();
  }
}

std::size_t InboundServer::active_connections() const {
  return state_->active;
}

const InboundCounters& InboundServer::counters() const {
  return state_->counters;
}

}  // namespace mailer::app
