#include "app/config/config_reader.h"

#include <fmt/format.h>

#include <cstdint>

#include "app/base/errors.h"
#include "throttle/duration.h"

namespace mailer::app {

std::string_view toml_type_name(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::date:
    case toml::node_type::time:
    case toml::node_type::date_time:
      return "a date/time";
    default:
      return "nothing";
  }
}

namespace {

// `value` with control characters escaped (and quotes and backslashes when
// `quoted`), cut after `max_bytes`, never inside a UTF-8 sequence.
std::string bounded_text(std::string_view value, bool quoted, std::size_t max_bytes) {
  std::string out = quoted ? "\"" : "";
  std::size_t i = 0;
  for (; i < value.size(); ++i) {
    const auto c = static_cast<unsigned char>(value[i]);
    // Continuation bytes are 10xxxxxx: cut only before a character's start.
    if (i >= max_bytes && (c & 0xC0) != 0x80) break;
    if (quoted && (c == '"' || c == '\\')) {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7F) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  if (i < value.size()) out += "\u2026";
  if (quoted) out += '"';
  if (i < value.size()) out += fmt::format(" ({} bytes)", value.size());
  return out;
}

}  // namespace

std::string quote_value(std::string_view value) {
  return bounded_text(value, true, kMaxQuotedBytes);
}

std::string elide_text(std::string_view text, std::size_t max_bytes) {
  return bounded_text(text, false, max_bytes);
}

ConfigReader::ConfigReader(const toml::table* table, std::string file, std::string path)
    : table_(table), file_(std::move(file)), path_(std::move(path)) {}

const toml::node* ConfigReader::find(std::string_view key) {
  seen_.insert(std::string(key));
  if (table_ == nullptr) return nullptr;
  return table_->get(key);
}

std::string ConfigReader::full_key(std::string_view key) const {
  return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
}

std::string ConfigReader::location(const toml::node* node) const {
  if (node != nullptr && node->source().begin.line > 0) {
    return fmt::format("{}:{}", file_, node->source().begin.line);
  }
  if (table_ != nullptr && table_->source().begin.line > 0) {
    return fmt::format("{}:{}", file_, table_->source().begin.line);
  }
  return file_;
}

void ConfigReader::fail(std::string_view key, std::string_view what) const {
  const toml::node* node = table_ != nullptr ? table_->get(key) : nullptr;
  throw UsageError(fmt::format("{}: key {}: {}", location(node), quote_value(full_key(key)), what));
}

std::string ConfigReader::get_string(std::string_view key, std::string fallback) {
  const toml::node* node = find(key);
  if (node == nullptr) return fallback;
  if (!node->is_string())
    fail(key, fmt::format("expected a string, got {}", toml_type_name(*node)));
  return std::string(node->as_string()->get());
}

std::vector<std::string> ConfigReader::get_string_list(std::string_view key,
                                                       std::vector<std::string> fallback) {
  const toml::node* node = find(key);
  if (node == nullptr) return fallback;
  const toml::array* array = node->as_array();
  if (array == nullptr) {
    fail(key, fmt::format("expected an array of strings, got {}", toml_type_name(*node)));
  }
  std::vector<std::string> values;
  for (const toml::node& element : *array) {
    if (!element.is_string()) {
      fail(key,
           fmt::format("expected an array of strings, found {} in it", toml_type_name(element)));
    }
    values.emplace_back(element.as_string()->get());
  }
  return values;
}

double ConfigReader::get_number(std::string_view key, double fallback) {
  const toml::node* node = find(key);
  if (node == nullptr) return fallback;
  if (node->is_integer()) return static_cast<double>(node->as_integer()->get());
  if (node->is_floating_point()) return node->as_floating_point()->get();
  fail(key, fmt::format("expected a number, got {}", toml_type_name(*node)));
}

long long ConfigReader::get_integer(std::string_view key, long long fallback, long long min,
                                    long long max) {
  const toml::node* node = find(key);
  if (node == nullptr) return fallback;
  if (!node->is_integer()) {
    fail(key, fmt::format("expected an integer, got {}", toml_type_name(*node)));
  }
  const std::int64_t value = node->as_integer()->get();
  if (value < min) fail(key, fmt::format("must be at least {}, got {}", min, value));
  if (value > max) fail(key, fmt::format("must be at most {}, got {}", max, value));
  return value;
}

int ConfigReader::get_int(std::string_view key, int fallback, int min, int max) {
  return static_cast<int>(get_integer(key, fallback, min, max));
}

bool ConfigReader::get_bool(std::string_view key, bool fallback) {
  const toml::node* node = find(key);
  if (node == nullptr) return fallback;
  if (!node->is_boolean())
    fail(key, fmt::format("expected a boolean, got {}", toml_type_name(*node)));
  return node->as_boolean()->get();
}

Duration ConfigReader::get_duration(std::string_view key, Duration fallback, Duration max) {
  const toml::node* node = find(key);
  if (node == nullptr) return fallback;
  if (!node->is_string()) {
    fail(key, fmt::format("expected a duration string like \"30s\", \"5m\", \"4h\", got {}",
                          toml_type_name(*node)));
  }
  const std::string_view text = node->as_string()->get();
  auto d = throttle::parse_duration(text);
  if (!d) {
    fail(key,
         fmt::format("expected a duration like \"500ms\", \"30s\", \"5m\", \"4h\", \"3d\", got {}",
                     quote_value(text)));
  }
  if (*d > max) {
    fail(key, fmt::format("must be at most {}, got {}", throttle::format_duration(max),
                          quote_value(text)));
  }
  return std::chrono::duration_cast<Duration>(*d);
}

std::string ConfigReader::get_choice(std::string_view key, std::string fallback,
                                     const std::vector<std::string>& allowed) {
  std::string value = get_string(key, std::move(fallback));
  for (const auto& a : allowed) {
    if (a == value) return value;
  }
  fail(key,
       fmt::format("expected one of {}, got {}", fmt::join(allowed, ", "), quote_value(value)));
}

ConfigReader ConfigReader::table(std::string_view key) {
  const toml::node* node = find(key);
  if (node == nullptr) return ConfigReader(nullptr, file_, full_key(key));
  if (!node->is_table()) fail(key, fmt::format("expected a table, got {}", toml_type_name(*node)));
  return ConfigReader(node->as_table(), file_, full_key(key));
}

std::vector<ConfigReader> ConfigReader::tables(std::string_view key) {
  const toml::node* node = find(key);
  std::vector<ConfigReader> out;
  if (node == nullptr) return out;
  if (node->is_table()) {
    out.emplace_back(node->as_table(), file_, full_key(key));
    return out;
  }
  if (!node->is_array()) {
    fail(key, fmt::format("expected a table or an array of tables, got {}", toml_type_name(*node)));
  }
  std::size_t i = 0;
  for (const toml::node& item : *node->as_array()) {
    if (!item.is_table()) {
      fail(key,
           fmt::format("expected an array of tables, element {} is {}", i, toml_type_name(item)));
    }
    out.emplace_back(item.as_table(), file_, fmt::format("{}[{}]", full_key(key), i));
    ++i;
  }
  return out;
}

std::vector<std::string> ConfigReader::keys() const {
  std::vector<std::string> out;
  if (table_ == nullptr) return out;
  for (const auto& [k, v] : *table_) out.emplace_back(k.str());
  return out;
}

void ConfigReader::reject_unknown() const {
  if (table_ == nullptr) return;
  for (const auto& [k, v] : *table_) {
    if (seen_.count(std::string(k.str())) == 0) {
      throw UsageError(
          fmt::format("{}: unknown key {}", location(&v), quote_value(full_key(k.str()))));
    }
  }
}

}  // namespace mailer::app
