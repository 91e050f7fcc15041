// The import's MX lookups (lists/mx_lookup.h) answered by the sender's DNS
// resolver (sender/dns_resolver.h): lists/ may not include sender/, so the
// two meet here. Only the mail host names are asked for (the import records
// them and classifies the provider by the first); the addresses of MX hosts
// are not looked up.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "lists/mx_lookup.h"
#include "sender/dns_resolver.h"

namespace mailer::app {

// The sender resolver's answer in the import's terms: an implicit MX is
// a_fallback, a temporary failure is error, and so on.
lists::MxAnswer to_mx_answer(const sender::MxResult& result);

class ImportMxLookup : public lists::MxLookup {
 public:
  // Throws std::invalid_argument for a malformed DNS server and
  // std::runtime_error when c-ares cannot start.
  explicit ImportMxLookup(sender::DnsResolverOptions options);

  void start(const std::string& domain, Done done) override;
  void wait() override;

 private:
  sender::BlockingDnsResolver dns_;
  std::uint64_t started_ = 0;
  std::uint64_t finished_ = 0;
};

}  // namespace mailer::app
