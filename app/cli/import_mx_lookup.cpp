#include "app/cli/import_mx_lookup.h"

namespace mailer::app {

lists::MxAnswer to_mx_answer(const sender::MxResult& r) {
  lists::MxAnswer a;
  switch (r.status) {
    case sender::MxStatus::kOk:
      a.status = r.implicit ? lists::MxStatus::kAFallback : lists::MxStatus::kOk;
      break;
    case sender::MxStatus::kNullMx:
      a.status = lists::MxStatus::kNullMx;
      break;
    case sender::MxStatus::kNoSuchDomain:
      a.status = lists::MxStatus::kNxDomain;
      break;
    case sender::MxStatus::kNoMailHost:
      a.status = lists::MxStatus::kNoAddress;
      break;
    case sender::MxStatus::kTemporaryFailure:
      a.status = lists::MxStatus::kError;
      break;
  }
  for (const auto& host : r.hosts) a.hosts.push_back(host.name);
  a.ttl = r.ttl;
  a.error = r.error;
  return a;
}

ImportMxLookup::ImportMxLookup(sender::DnsResolverOptions options) : dns_(std::move(options)) {}

void ImportMxLookup::start(const std::string& domain, Done done) {
  ++started_;
  dns_.resolver().resolve_mx(
      domain,
      [this, done = std::move(done)](const sender::MxResult& r) {
        ++finished_;
        done(to_mx_answer(r));
      },
      sender::HostAddresses::kSkip);
}

void ImportMxLookup::wait() {
  const std::uint64_t before = finished_;
  while (finished_ == before && finished_ < started_ && dns_.run_one()) {
  }
}

}  // namespace mailer::app
