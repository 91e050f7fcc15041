#include "app/doctor/dns_address.h"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <algorithm>

namespace mailer::app {

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  const std::string s(text);
  IpAddress a;
  if (::inet_pton(AF_INET, s.c_str(), a.bytes_.data()) == 1) return a;
  if (::inet_pton(AF_INET6, s.c_str(), a.bytes_.data()) == 1) {
    a.v6_ = true;
    return a;
  }
  return std::nullopt;
}

IpAddress IpAddress::v4(const std::array<std::uint8_t, 4>& bytes) {
  IpAddress a;
  std::copy(bytes.begin(), bytes.end(), a.bytes_.begin());
  return a;
}

IpAddress IpAddress::v6(const std::array<std::uint8_t, 16>& bytes) {
  IpAddress a;
  a.v6_ = true;
  a.bytes_ = bytes;
  return a;
}

std::string IpAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(v6_ ? AF_INET6 : AF_INET, bytes_.data(), buf, sizeof buf);
  return buf;
}

std::string IpAddress::reversed_labels() const {
  std::string out;
  if (!v6_) {
    for (int i = 3; i >= 0; --i) {
      out += fmt::format("{}", bytes_[static_cast<std::size_t>(i)]);
      if (i > 0) out += '.';
    }
    return out;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i) {
    const std::uint8_t b = bytes_[static_cast<std::size_t>(i)];
    out += kHex[b & 0xf];
    out += '.';
    out += kHex[b >> 4];
    if (i > 0) out += '.';
  }
  return out;
}

std::string IpAddress::reverse_name() const {
  return reversed_labels() + (v6_ ? ".ip6.arpa" : ".in-addr.arpa");
}

bool IpAddress::in_network(const IpAddress& network, int prefix_bits) const {
  if (v6_ != network.v6_) return false;
  const int length = v6_ ? 128 : 32;
  int bits = std::clamp(prefix_bits, 0, length);
  for (std::size_t i = 0; bits > 0; ++i, bits -= 8) {
    const int take = std::min(bits, 8);
    const auto mask = static_cast<std::uint8_t>(0xff << (8 - take));
    if ((bytes_[i] & mask) != (network.bytes_[i] & mask)) return false;
  }
  return true;
}

}  // namespace mailer::app
