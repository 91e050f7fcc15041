// Drives one libcurl multi handle from a Boost.Asio io_context: curl tells us
// which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when to wake it
// (CURLMOPT_TIMERFUNCTION); readiness and timer expiry go back through
// curl_multi_socket_action, and finished transfers are reported after every
// action. No polling loop and no threads.
//
// curl keeps ownership of every socket: a watched descriptor is released from
// Asio (never closed) when curl says CURL_POLL_REMOVE, which curl always does
// before it closes the socket.
//
// Threading: single-threaded; every member and every callback runs on the
// io_context's thread. The done handler may add and remove easy handles.
#pragma once

#include <curl/curl.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <memory>
#include <unordered_map>

namespace mailer::sender {

class CurlMultiLoop {
 public:
  // Called once per finished transfer with curl's result. The handler owns
  // what happens next, including removing the easy handle.
  using DoneHandler = std::function<void(CURL* easy, CURLcode result)>;

  CurlMultiLoop(boost::asio::io_context& io, DoneHandler on_done);
  // Closes curl's cached connections. Remove every easy handle first.
  ~CurlMultiLoop();
  CurlMultiLoop(const CurlMultiLoop&) = delete;
  CurlMultiLoop& operator=(const CurlMultiLoop&) = delete;

  CURLM* multi() const { return multi_; }

  // Starts a transfer; the timer callback that follows kicks it off from the
  // io_context (never from inside this call). Throws std::runtime_error when
  // curl refuses the handle.
  void add(CURL* easy);
  // Stops watching a transfer (finished or not); safe to call from the done
  // handler.
  void remove(CURL* easy);
  // Lets curl look at the transfers on every watched socket now
  // (curl_multi_socket_action with no event), so it can notice a timeout
  // nothing else would wake it for. Finished transfers are reported as usual.
  void nudge_all();

 private:
  struct Watch;

  static int on_socket(CURL* easy, curl_socket_t fd, int what, void* self, void* socketp);
  static int on_timer(CURLM* multi, long timeout_ms, void* self);
  void watch(curl_socket_t fd, int what);
  void unwatch(curl_socket_t fd);
  void arm(const std::shared_ptr<Watch>& w);
  void act(curl_socket_t fd, int events);
  void report_done();

  boost::asio::io_context& io_;
  DoneHandler on_done_;
  CURLM* multi_ = nullptr;
  boost::asio::steady_timer timer_;
  // A wait on timer_ is pending (curl's last timeout was positive).
  bool timer_armed_ = false;
  // An immediate timeout is queued on the io_context.
  bool act_posted_ = false;
  std::unordered_map<curl_socket_t, std::shared_ptr<Watch>> watches_;
  // Handlers hold a weak reference: a handler that runs after the loop died
  // (queued before destruction) sees it expired and does nothing.
  std::shared_ptr<CurlMultiLoop*> self_;
};

}  // namespace mailer::sender
