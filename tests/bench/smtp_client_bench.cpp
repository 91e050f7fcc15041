// Throughput of SmtpClient alone: C connections on one io_context and one
// thread, each sending message after message for S seconds to HOST:PORT;
// prints one line of JSON. With a sink that answers the final "." after a
// latency L, the rate should be about C / L: connections in flight, not
// threads, make the throughput. Built and run by tests/bench/smtp_client_latency.sh.
#include <sys/resource.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "sender/smtp_client.h"

namespace {

using namespace mailer::sender;
using Clock = std::chrono::steady_clock;

struct Bench {
  boost::asio::io_context io;
  boost::asio::ip::tcp::endpoint endpoint;
  std::shared_ptr<const std::string> content;
  Clock::time_point end;
  long accepted = 0;
  long failed = 0;
  std::vector<std::shared_ptr<SmtpClient>> clients;
};

void send_next(Bench& b, std::shared_ptr<SmtpClient> client) {
  if (Clock::now() >= b.end) return client->quit([](SmtpResult) {});
  SmtpMessage m;
  m.envelope_from = "bench@example.com";
  m.recipients = {"rcpt@example.net"};
  m.content = b.content;
  client->send(std::move(m), [&b, client](SmtpResult r) {
    (r.ok() ? b.accepted : b.failed)++;
    if (r.ok()) send_next(b, client);
  });
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s HOST PORT CONNECTIONS SECONDS [BYTES]\n", argv[0]);
    return 2;
  }
  Bench b;
  b.endpoint = {boost::asio::ip::make_address(argv[1]),
                static_cast<unsigned short>(std::atoi(argv[2]))};
  long connections = std::atol(argv[3]);
  double seconds = std::atof(argv[4]);
  std::size_t bytes = argc > 5 ? std::strtoul(argv[5], nullptr, 10) : 4096;
  std::string message = "From: <bench@example.com>\r\nTo: <rcpt@example.net>\r\nSubject: b\r\n\r\n";
  while (message.size() < bytes)
    message += "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdef\r\n";
  b.content = std::make_shared<const std::string>(std::move(message));

  SmtpClientOptions options;
  options.helo_name = "bench.example.com";
  options.starttls = StartTls::kNone;
  options.max_messages = static_cast<std::size_t>(-1);
  auto start = Clock::now();
  b.end =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  long connected = 0;
  for (long i = 0; i < connections; ++i) {
    auto client = SmtpClient::create(b.io, options);
    b.clients.push_back(client);
    client->connect({b.endpoint}, "localhost", [&b, &connected, client](SmtpResult r) {
      if (!r.ok()) {
        std::fprintf(stderr, "connect: %s\n", r.error.c_str());
        return;
      }
      ++connected;
      send_next(b, client);
    });
  }
  b.io.run();
  double took = std::chrono::duration<double>(Clock::now() - start).count();
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  std::printf(
      "{\"connections\":%ld,\"connected\":%ld,\"seconds\":%.2f,\"accepted\":%ld,\"failed\":%ld,"
      "\"per_second\":%.1f,\"max_rss_mb\":%.1f,\"cpu_s\":%.2f}\n",
      connections, connected, took, b.accepted, b.failed, b.accepted / took,
      usage.ru_maxrss / 1024.0,
      usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
          (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6);
  return 0;
}
