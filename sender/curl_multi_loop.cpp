#include "sender/curl_multi_loop.h"

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace mailer::sender {

namespace asio = boost::asio;

// One socket curl asked us to watch. `wanted` is curl's latest interest; a
// wait in flight for a direction curl no longer wants completes harmlessly.
struct CurlMultiLoop::Watch {
  Watch(asio::io_context& io, curl_socket_t fd) : fd(fd), descriptor(io, fd) {}
  ~Watch() { release(); }
  void release() {
    if (descriptor.is_open()) {
      boost::system::error_code ignored;
      descriptor.cancel(ignored);
      descriptor.release();  // curl closes the socket, not us
    }
  }

  curl_socket_t fd;
  asio::posix::stream_descriptor descriptor;
  int wanted = 0;
  bool read_pending = false;
  bool write_pending = false;
  bool removed = false;
};

CurlMultiLoop::CurlMultiLoop(asio::io_context& io, DoneHandler on_done)
    : io_(io),
      on_done_(std::move(on_done)),
      multi_(curl_multi_init()),
      timer_(io),
      self_(std::make_shared<CurlMultiLoop*>(this)) {
  if (multi_ == nullptr) throw std::runtime_error("curl_multi_init failed");
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &CurlMultiLoop::on_socket);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &CurlMultiLoop::on_timer);
  curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
}

CurlMultiLoop::~CurlMultiLoop() {
  self_.reset();
  // Cleanup may still call the socket callback (CURL_POLL_REMOVE) while it
  // closes cached connections, so the watches stay valid until it returns.
  curl_multi_cleanup(multi_);
  for (auto& [fd, w] : watches_) {
    w->removed = true;
    w->release();
  }
  watches_.clear();
  timer_.cancel();
}

void CurlMultiLoop::add(CURL* easy) {
  CURLMcode rc = curl_multi_add_handle(multi_, easy);
  if (rc != CURLM_OK) {
    throw std::runtime_error(std::string("curl_multi_add_handle: ") + curl_multi_strerror(rc));
  }
}

void CurlMultiLoop::remove(CURL* easy) {
  curl_multi_remove_handle(multi_, easy);
}

int CurlMultiLoop::on_socket(CURL*, curl_socket_t fd, int what, void* self, void*) {
  auto* loop = static_cast<CurlMultiLoop*>(self);
  if (what == CURL_POLL_REMOVE) {
    loop->unwatch(fd);
  } else {
    loop->watch(fd, what);
  }
  return 0;
}

int CurlMultiLoop::on_timer(CURLM*, long timeout_ms, void* self) {
  auto* loop = static_cast<CurlMultiLoop*>(self);
  if (timeout_ms < 0) {
    if (loop->timer_armed_) loop->timer_.cancel();
    loop->timer_armed_ = false;
    return 0;
  }
  std::weak_ptr<CurlMultiLoop*> alive = loop->self_;
  if (timeout_ms == 0) {
    // "Act now" (curl asks for it after most state changes, thousands of
    // times a second) goes through the io_context's queue, not the timer:
    // curl forbids calling curl_multi_socket_action from inside its own
    // callbacks, and re-arming the timer costs a system call each time. A
    // timer still armed may fire later; curl ignores a timeout with nothing due.
    // Requests made before the queued one ran are served by it.
    if (loop->act_posted_) return 0;
    loop->act_posted_ = true;
    boost::asio::post(loop->io_, [alive] {
      auto self = alive.lock();
      if (!self) return;
      (*self)->act_posted_ = false;
      (*self)->act(CURL_SOCKET_TIMEOUT, 0);
    });
    return 0;
  }
  const auto expiry = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  // The same deadline again (within a millisecond) keeps the armed timer.
  if (loop->timer_armed_ && loop->timer_.expiry() <= expiry &&
      expiry - loop->timer_.expiry() < std::chrono::milliseconds(1)) {
    return 0;
  }
  loop->timer_.expires_at(expiry);
  loop->timer_armed_ = true;
  loop->timer_.async_wait([alive](const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted) return;
    auto self = alive.lock();
    if (!self) return;
    (*self)->timer_armed_ = false;
    (*self)->act(CURL_SOCKET_TIMEOUT, 0);
  });
  return 0;
}

void CurlMultiLoop::watch(curl_socket_t fd, int what) {
  auto it = watches_.find(fd);
  if (it == watches_.end()) {
    it = watches_.emplace(fd, std::make_shared<Watch>(io_, fd)).first;
  }
  it->second->wanted = what;
  arm(it->second);
}

void CurlMultiLoop::unwatch(curl_socket_t fd) {
  auto it = watches_.find(fd);
  if (it == watches_.end()) return;
  it->second->removed = true;
  it->second->release();
  watches_.erase(it);
}

void CurlMultiLoop::arm(const std::shared_ptr<Watch>& w) {
  std::weak_ptr<CurlMultiLoop*> alive = self_;
  auto on_ready = [alive, w](int event) {
    return [alive, w, event](const boost::system::error_code& ec) {
      (event == CURL_CSELECT_IN ? w->read_pending : w->write_pending) = false;
      if (w->removed || ec == asio::error::operation_aborted) return;
      auto self = alive.lock();
      if (!self) return;
      int interest = event == CURL_CSELECT_IN ? CURL_POLL_IN : CURL_POLL_OUT;
      if ((w->wanted & interest) == 0) return;  // curl changed its mind
      (*self)->act(w->fd, ec ? CURL_CSELECT_ERR : event);
      if (!w->removed) (*self)->arm(w);
    };
  };
  if ((w->wanted & CURL_POLL_IN) != 0 && !w->read_pending) {
    w->read_pending = true;
    w->descriptor.async_wait(asio::posix::stream_descriptor::wait_read, on_ready(CURL_CSELECT_IN));
  }
  if ((w->wanted & CURL_POLL_OUT) != 0 && !w->write_pending) {
    w->write_pending = true;
    w->descriptor.async_wait(asio::posix::stream_descriptor::wait_write,
                             on_ready(CURL_CSELECT_OUT));
  }
}

void CurlMultiLoop::act(curl_socket_t fd, int events) {
  int running = 0;
  curl_multi_socket_action(multi_, fd, events, &running);
  report_done();
}

void CurlMultiLoop::nudge_all() {
  std::vector<curl_socket_t> fds;
  for (const auto& [fd, w] : watches_) fds.push_back(fd);
  std::weak_ptr<CurlMultiLoop*> alive = self_;
  for (curl_socket_t fd : fds) {
    if (alive.expired()) return;
    if (watches_.contains(fd)) act(fd, 0);
  }
}

void CurlMultiLoop::report_done() {
  // Collect first: the done handler removes handles, which invalidates the
  // messages curl_multi_info_read returned.
  std::vector<std::pair<CURL*, CURLcode>> finished;
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi_, &left)) {
    if (msg->msg == CURLMSG_DONE) finished.emplace_back(msg->easy_handle, msg->data.result);
  }
  std::weak_ptr<CurlMultiLoop*> alive = self_;
  for (auto& [easy, result] : finished) {
    if (alive.expired()) return;
    on_done_(easy, result);
  }
}

}  // namespace mailer::sender
