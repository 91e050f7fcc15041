#include "app/base/bounded_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "app/base/errors.h"

namespace mailer::app {
namespace {

// Closes a descriptor on scope exit.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

[[noreturn]] void fail(const std::string& path, std::string_view what) {
  throw FileReadError(path, std::string(what));
}

[[noreturn]] void fail_errno(const std::string& path, int error) {
  fail(path, std::strerror(error));
}

}  // namespace

std::string read_bounded_file(const std::string& path, std::size_t max_bytes) {
  // O_NONBLOCK: opening a FIFO without a writer must not wait for one.
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (fd.get() < 0) fail_errno(path, errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) fail_errno(path, errno);
  if (S_ISDIR(st.st_mode)) fail(path, "is a directory, not a file");
  if (S_ISREG(st.st_mode) && static_cast<std::uintmax_t>(st.st_size) > max_bytes) {
    fail(path, fmt::format("larger than {} bytes", max_bytes));
  }
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0) fail_errno(path, errno);

  std::string text;
  char buf[16384];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_errno(path, errno);
    if (n == 0) return text;
    if (text.size() + static_cast<std::size_t>(n) > max_bytes) {
      fail(path, fmt::format("larger than {} bytes", max_bytes));
    }
    text.append(buf, static_cast<std::size_t>(n));
  }
}

std::string read_configured_file(const std::string& source, const std::string& key,
                                 const std::string& path, std::size_t max_bytes) {
  try {
    return read_bounded_file(path, max_bytes);
  } catch (const FileReadError& e) {
    throw UsageError(fmt::format("{}: key \"{}\": {}", source, key, e.what()));
  }
}

}  // namespace mailer::app
