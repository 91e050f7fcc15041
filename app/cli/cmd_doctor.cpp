// `mailer doctor --domain D [--selector S] [--ip A] [--dns HOST:PORT] [--json]`:
// the sending-domain checklist (SPF, DKIM, DMARC, MX, PTR, DNS blocklists;
// see app/doctor.h). Prints a pass / warn / fail table, or one JSON object
// with --json. Exit 0 when nothing failed, 1 when a check failed, 2 for bad
// usage (malformed domain, IP, selector or DNS server, bad configuration).
#include <fmt/format.h>

#include <iostream>
#include <memory>

#include "app/cli/commands.h"
#include "app/doctor/doctor.h"
#include "app/base/errors.h"
#include "sender/dns_resolver.h"

namespace mailer::app {
namespace {

// Per-try DNS timeout and tries: a list or server that does not answer
// costs at most about 4 s, and all questions wait in parallel, so a whole
// run stays within a few seconds even when several blocklists are silent.
constexpr std::chrono::milliseconds kDoctorDnsTimeout{2000};
constexpr int kDoctorDnsTries = 2;

struct DoctorOptions {
  std::string domain;
  std::string selector;
  std::string ip;
  std::string dns;
  bool json = false;
};

int run(Context& ctx, const DoctorOptions& o) {
  DoctorRequest request;
  const auto domain = normalize_domain(o.domain);
  if (!domain) {
    throw UsageError(fmt::format(
        "doctor: --domain \"{}\" is not a domain name (letter-digit-hyphen labels, A-labels for "
        "IDNs)",
        o.domain));
  }
  request.domain = *domain;
  if (!o.selector.empty()) {
    if (!valid_selector(o.selector)) {
      throw UsageError(fmt::format("doctor: --selector \"{}\" is not a DKIM selector", o.selector));
    }
    request.selector = o.selector;
  }
  if (!o.ip.empty()) {
    request.ip = IpAddress::parse(o.ip);
    if (!request.ip) {
      throw UsageError(fmt::format("doctor: --ip \"{}\" is not an IPv4 or IPv6 address", o.ip));
    }
  }
  const Config& config = ctx.config();
  request.dkim = config.dkim;
  request.ip_blocklists = config.doctor.ip_blocklists;
  request.domain_blocklists = config.doctor.domain_blocklists;

  sender::DnsResolverOptions dns_options;
  dns_options.dns_server = o.dns.empty() ? config.doctor.dns_server : o.dns;
  dns_options.timeout = kDoctorDnsTimeout;
  dns_options.tries = kDoctorDnsTries;
  std::unique_ptr<sender::BlockingDnsResolver> dns;
  try {
    dns = std::make_unique<sender::BlockingDnsResolver>(dns_options);
  } catch (const std::invalid_argument& e) {
    throw UsageError(fmt::format("doctor: {}", e.what()));
  }

  const DoctorReport report = run_doctor(*dns, request);
  if (o.json) {
    print_json(report.to_json());
  } else {
    std::cout << report.to_table();
  }
  return report.any_failed() ? kExitOperational : kExitOk;
}

}  // namespace

void register_doctor(CLI::App& root, Context& ctx, Action& action) {
  auto opts = std::make_shared<DoctorOptions>();
  CLI::App* cmd = root.add_subcommand(
      "doctor", "check SPF, DKIM, DMARC, MX, PTR and blocklists for a sending domain");
  cmd->add_option("--domain", opts->domain, "sending domain (the From and DKIM d= domain)")
      ->required();
  cmd->add_option("--selector", opts->selector,
                  "DKIM selector to check (default: every [[dkim]] of the domain)");
  cmd->add_option("--ip", opts->ip,
                  "sending IP: SPF authorisation, PTR and IP blocklists are checked for it");
  cmd->add_option("--dns", opts->dns,
                  "DNS server HOST:PORT (default: [doctor] dns_server, else /etc/resolv.conf)");
  cmd->add_flag("--json", opts->json, "print one JSON object instead of the table");
  cmd->footer(
      "Exit status: 0 no check failed (warnings allowed), 1 a check failed, 2 bad usage.\n"
      "Blocklist zones come from [doctor] ip_blocklists and domain_blocklists.");
  cmd->callback([&ctx, &action, opts] { action = [&ctx, opts] { return run(ctx, *opts); }; });
}

}  // namespace mailer::app
