// Reading the files the configuration names (the configuration itself,
// secrets, DKIM keys, password files, import tables) with a size limit, so
// that a path to /dev/zero, a directory or a runaway file is refused with a
// clear error instead of exhausting memory or passing as empty.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>

namespace mailer::app {

// Limits per kind of file: far above any real file of that kind.
// A configuration file: hand-written TOML.
inline constexpr std::size_t kMaxConfigFileBytes = 16 << 20;
// A secret, password or PEM key (an RSA-16384 key is about 13 KiB).
inline constexpr std::size_t kMaxSecretFileBytes = 64 << 10;
// A PEM bundle of certificate authorities (a system bundle is about 200 KiB).
inline constexpr std::size_t kMaxCertificateFileBytes = 8 << 20;
// A list-hygiene table (role accounts, disposable or typo domains).
inline constexpr std::size_t kMaxTableFileBytes = 64 << 20;

// The file could not be read or is not acceptable; what() is one line that
// starts with the path: "PATH: is a directory", "PATH: larger than N bytes",
// "PATH: No such file or directory".
class FileReadError : public std::runtime_error {
 public:
  FileReadError(const std::string& path, std::string reason)
      : std::runtime_error(path + ": " + reason), reason_(std::move(reason)) {}
  // What is wrong, without the path: "is a directory, not a file".
  const std::string& reason() const { return reason_; }

 private:
  std::string reason_;
};

// The whole content of `path`, which must not be a directory nor hold more
// than `max_bytes` bytes. Reads at most max_bytes + 1 bytes whatever the
// file is (a device, a pipe). Throws FileReadError.
std::string read_bounded_file(const std::string& path, std::size_t max_bytes);

// read_bounded_file for the file named by configuration key `key` (dotted,
// "unsubscribe.secret_file") of the configuration `source`; throws
// UsageError "SOURCE: key \"KEY\": PATH: WHAT".
std::string read_configured_file(const std::string& source, const std::string& key,
                                 const std::string& path, std::size_t max_bytes);

}  // namespace mailer::app
