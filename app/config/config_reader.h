// Reads one TOML table of the configuration strictly: typed getters with
// defaults, errors that name the file, line, key and what was expected, and
// unknown keys reported instead of silently ignored.
#pragma once

#include <toml++/toml.h>

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "app/base/duration.h"

namespace mailer::app {

// The longest duration any key accepts unless it sets a tighter bound: a year
// is beyond every sensible wait, retry age or window, and keeps timestamps
// computed from it (now + duration) well inside PostgreSQL's range.
inline constexpr Duration kMaxConfigDuration = std::chrono::hours(24 * 365);

// At most this many bytes of a configuration value are quoted in an error;
// the rest is elided, so a huge value gives a short, one-line message.
inline constexpr std::size_t kMaxQuotedBytes = 80;
// At most this many bytes of a message from a library (which may quote a value
// inside it) are repeated in an error.
inline constexpr std::size_t kMaxMessageBytes = 240;

// `value` in double quotes for an error message: control characters escaped
// (the message stays one line) and cut after kMaxQuotedBytes with "…".
std::string quote_value(std::string_view value);
// The same without quotes and with a limit of its own, for messages from
// elsewhere (toml++, libpq) that may repeat a value.
std::string elide_text(std::string_view text, std::size_t max_bytes = kMaxMessageBytes);

class ConfigReader {
 public:
  // `table` may be null (section absent: every getter returns its default).
  // `path` is the dotted key of the table ("providers.gmail"), "" for the root.
  ConfigReader(const toml::table* table, std::string file, std::string path);

  std::string get_string(std::string_view key, std::string fallback);
  double get_number(std::string_view key, double fallback);
  // An integer within [min, max], checked before any narrowing: "must be at
  // least MIN" / "must be at most MAX" otherwise. Every integer key uses it.
  long long get_integer(std::string_view key, long long fallback, long long min, long long max);
  // The same for keys held in an int (min and max within int's range).
  int get_int(std::string_view key, int fallback, int min, int max);
  bool get_bool(std::string_view key, bool fallback);
  // A duration string of at most `max` ("must be at most ..." otherwise).
  // Every duration key has an upper bound so that time arithmetic on it (now
  // plus a lease, a backoff doubling) stays far from overflow.
  Duration get_duration(std::string_view key, Duration fallback, Duration max = kMaxConfigDuration);
  // An array of strings.
  std::vector<std::string> get_string_list(std::string_view key, std::vector<std::string> fallback);
  // One of `allowed`; the error lists them.
  std::string get_choice(std::string_view key, std::string fallback,
                         const std::vector<std::string>& allowed);

  // A sub-table (absent: a reader over nothing). Wrong type is an error.
  ConfigReader table(std::string_view key);
  // An array of tables ([[dkim]]) or a single table, as a list of readers.
  std::vector<ConfigReader> tables(std::string_view key);
  // Keys of this table, for sections whose keys are names ([routes]).
  std::vector<std::string> keys() const;
  // Marks a key as known without reading it.
  void accept(std::string_view key) { seen_.insert(std::string(key)); }

  // Throws UsageError for the first key never read or accepted.
  void reject_unknown() const;

  // Throws UsageError "FILE:LINE: key \"path.key\": WHAT".
  [[noreturn]] void fail(std::string_view key, std::string_view what) const;

  const std::string& path() const { return path_; }
  bool present() const { return table_ != nullptr; }

 private:
  const toml::node* find(std::string_view key);
  std::string full_key(std::string_view key) const;
  std::string location(const toml::node* node) const;

  const toml::table* table_;
  std::string file_;
  std::string path_;
  std::set<std::string> seen_;
};

// "a string", "an integer", ... for error messages.
std::string_view toml_type_name(const toml::node& node);

}  // namespace mailer::app
