#pragma once
// A list of IP addresses and CIDR networks, as a setting spells it ("10.0.0.0/8, 192.0.2.7, fd00::/8"):
// the reverse proxies of http.trusted_proxies (http/client_address.hpp).

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/network_v4.hpp>
#include <boost/asio/ip/network_v6.hpp>

namespace mercato::config {

// An address as text; an IPv4 address written as ::ffff:a.b.c.d comes back as a.b.c.d. nullopt: not one.
std::optional<boost::asio::ip::address> parse_ip(std::string_view text);

class network_list {
 public:
  network_list() = default;

  // Comma-separated addresses and networks; empty entries are skipped, so "" is the empty list. nullopt
  // when an entry is neither, with that entry in `bad`.
  static std::optional<network_list> parse(std::string_view list, std::string* bad = nullptr);

  bool empty() const { return v4_.empty() && v6_.empty(); }
  bool contains(const boost::asio::ip::address& a) const;

 private:
  std::vector<boost::asio::ip::network_v4> v4_;
  std::vector<boost::asio::ip::network_v6> v6_;
};

}  // namespace mercato::config
