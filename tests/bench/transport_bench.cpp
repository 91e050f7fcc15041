// Throughput of SmtpTransport alone: N messages of a given size to one route
// over C connections, all submitted at once; prints one line of JSON.
// Built and run by tests/bench/transport.sh.
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "sender/smtp_transport.h"

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s smtp://HOST:PORT MESSAGES CONNECTIONS BYTES\n", argv[0]);
    return 2;
  }
  using namespace mailer::sender;
  std::string route = argv[1];
  long n = std::atol(argv[2]);
  long connections = std::atol(argv[3]);
  std::size_t bytes = std::strtoul(argv[4], nullptr, 10);

  std::string message =
      "From: <bench@example.com>\r\nTo: <rcpt@example.net>\r\nSubject: bench\r\n\r\n";
  const std::string line =
      "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstu\r\n";
  while (message.size() < bytes) message += line;
  auto shared = std::make_shared<const std::string>(std::move(message));

  boost::asio::io_context io;
  SmtpTransport transport(io);
  transport.set_connection_limit(route, static_cast<std::size_t>(connections));
  long accepted = 0, other = 0;
  auto start = std::chrono::steady_clock::now();
  for (long i = 0; i < n; ++i) {
    SendRequest r;
    r.route = route;
    r.tls = TlsMode::kNone;
    r.envelope_from = "bench@example.com";
    r.recipient = "rcpt" + std::to_string(i) + "@example.net";
    r.message = shared;
    transport.submit(std::move(r), [&](SendResult res) {
      (res.outcome == SendOutcome::kAccepted ? accepted : other)++;
    });
  }
  io.run();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  auto c = transport.counters(route);
  std::printf(
      "{\"messages\":%ld,\"accepted\":%ld,\"failed\":%ld,\"seconds\":%.3f,\"per_second\":%.1f,"
      "\"connections_opened\":%llu}\n",
      n, accepted, other, seconds, static_cast<double>(accepted) / seconds,
      static_cast<unsigned long long>(c.connections_opened));
  return other == 0 ? 0 : 1;
}
