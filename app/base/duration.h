// Durations as the configuration holds them (millisecond resolution); parsing
// and printing of "500ms", "30s", "5m", "4h", "3d" is throttle/duration.h's.
#pragma once

#include <chrono>

namespace mailer::app {

using Duration = std::chrono::milliseconds;

}  // namespace mailer::app
