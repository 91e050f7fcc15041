// The two kinds of failure a command reports; main() maps them to the exit
// codes of the CLI contract (2 bad usage or input, 1 operational failure).
#pragma once

#include <stdexcept>
#include <string>

namespace mailer::app {

// Bad usage or bad input: the message names the file, line and field. Exit 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The environment failed us: database down, peer refused, I/O error. Exit 1.
class OperationalError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline constexpr int kExitOk = 0;
inline constexpr int kExitOperational = 1;
inline constexpr int kExitUsage = 2;

}  // namespace mailer::app
