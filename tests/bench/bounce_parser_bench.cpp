// The bounce parser over a corpus of messages, two ways:
//   bounce_parser_bench --json FILE...     one JSON object a line per (file,
//       recipient), the shape of `mailer bounces parse --json`; a file with
//       no report gives {"file":S,"kind":"not_a_report"}. Used by
//       tests/lists/sisimai_compare.sh.
//   bounce_parser_bench --bench SECONDS FILE...   parses the files round
//       robin on one thread for about SECONDS and prints messages/s.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "lists/bounce_parser.h"

using mailer::lists::BounceReport;
using mailer::lists::parse_bounce;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

int print_json(int argc, char** argv) {
  for (int i = 2; i < argc; ++i) {
    const BounceReport report = parse_bounce(read_file(argv[i]));
    if (report.recipients.empty()) {
      nlohmann::json line = {{"file", argv[i]},
                             {"kind", "not_a_report"},
                             {"format", mailer::lists::to_string(report.format)}};
      std::cout << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
      continue;
    }
    for (const auto& r : report.recipients) {
      nlohmann::json line = {{"file", argv[i]},
                             {"recipient", r.address},
                             {"kind", mailer::lists::to_string(r.kind)},
                             {"status", r.status},
                             {"diagnostic", r.diagnostic},
                             {"format", mailer::lists::to_string(report.format)},
                             {"message_id", report.original.message_id}};
      std::cout << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
    }
  }
  return 0;
}

int bench(int argc, char** argv) {
  if (argc < 4) return 2;
  const double seconds = std::atof(argv[2]);
  std::vector<std::string> messages;
  std::size_t bytes = 0;
  for (int i = 3; i < argc; ++i) {
    messages.push_back(read_file(argv[i]));
    bytes += messages.back().size();
  }
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  const std::clock_t cpu_start = std::clock();
  std::size_t parsed = 0;
  std::size_t recipients = 0;
  double elapsed = 0;
  do {
    for (const std::string& m : messages) recipients += parse_bounce(m).recipients.size();
    parsed += messages.size();
    elapsed = std::chrono::duration<double>(clock::now() - start).count();
  } while (elapsed < seconds);
  // CPU time as well as wall time: on a shared machine the thread does not
  // have its core to itself, and CPU time is what the parser costs.
  const double cpu = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
  std::printf(
      "bounce parser: %zu messages (%zu files, mean %zu bytes, %zu recipients) on one thread: "
      "%.0f messages/s of CPU time (%.2f s), %.0f messages/s of wall time (%.2f s), "
      "%.1f MB/s of CPU time\n",
      parsed, messages.size(), messages.empty() ? 0 : bytes / messages.size(), recipients,
      parsed / cpu, cpu, parsed / elapsed, elapsed,
      static_cast<double>(bytes) * (parsed / messages.size()) / cpu / 1e6);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "--json") return print_json(argc, argv);
  if (argc >= 2 && std::string(argv[1]) == "--bench") return bench(argc, argv);
  std::fprintf(stderr, "usage: %s --json FILE... | --bench SECONDS FILE...\n", argv[0]);
  return 2;
}
