// The rehearsal sink on its own thread and io_context, for tests that talk
// to it from another loop or with blocking sockets.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "sender/smtp_sink.h"

namespace mailer::testing {

using sender::SinkCounters;
using sender::SinkOptions;
using sender::SmtpSink;

// A sink on its own thread and io_context: a test's client (or a worker
// process) and the sink never wait on each other's event loop.
class SinkThread {
 public:
  // Listens on `address`:`port` (port 0: one the kernel picks).
  explicit SinkThread(SinkOptions options, const std::string& address = "127.0.0.1",
                      unsigned short port = 0)
      : work_(io_.get_executor()) {
    std::promise<void> ready;
    thread_ = std::thread([&] {
      sink_ = std::make_unique<SmtpSink>(
          io_, boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address(address), port),
          std::move(options));
      ready.set_value();
      io_.run();
    });
    ready.get_future().wait();
  }
  ~SinkThread() {
    boost::asio::post(io_, [this] {
      sink_->stop();
      sink_.reset();
      work_.reset();
    });
    thread_.join();
  }
  unsigned short port() const { return sink_->local_endpoint().port(); }
  std::string route() const {
    return "smtp://127.0.0.1:" + std::to_string(sink_->local_endpoint().port());
  }
  SinkCounters counters() {
    std::promise<SinkCounters> p;
    boost::asio::post(io_, [&] { p.set_value(sink_->counters()); });
    return p.get_future().get();
  }

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::unique_ptr<SmtpSink> sink_;
  std::thread thread_;
};

}  // namespace mailer::testing
