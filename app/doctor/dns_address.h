// An IPv4 or IPv6 address as `mailer doctor` and its SPF evaluator need it:
// parsed from text, printed canonically, turned into its reverse DNS name
// (in-addr.arpa octets or ip6.arpa nibbles, the form DNS blocklists also
// use) and matched against a CIDR network.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mailer::app {

class IpAddress {
 public:
  // The address in `text` ("192.0.2.1", "2001:db8::1"); nullopt if it is
  // neither form.
  static std::optional<IpAddress> parse(std::string_view text);
  // From network-order bytes: 4 for IPv4, 16 for IPv6.
  static IpAddress v4(const std::array<std::uint8_t, 4>& bytes);
  static IpAddress v6(const std::array<std::uint8_t, 16>& bytes);

  bool is_v6() const { return v6_; }
  // Canonical text form (inet_ntop).
  std::string to_string() const;
  // The labels before the reverse zone: "1.2.0.192" for 192.0.2.1, 32
  // nibbles for IPv6; prefix of a blocklist zone or of reverse_zone().
  std::string reversed_labels() const;
  // The PTR query name: "1.2.0.192.in-addr.arpa" / "...ip6.arpa".
  std::string reverse_name() const;
  // True when the first `prefix_bits` bits equal those of `network` (same
  // family only; prefix_bits is clamped to the address length).
  bool in_network(const IpAddress& network, int prefix_bits) const;

  friend bool operator==(const IpAddress&, const IpAddress&) = default;

 private:
  bool v6_ = false;
  std::array<std::uint8_t, 16> bytes_{};  // IPv4 uses the first 4
};

}  // namespace mailer::app
