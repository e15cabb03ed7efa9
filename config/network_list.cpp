#include "config/network_list.hpp"

#include <algorithm>

namespace mercato::config {

namespace ip = boost::asio::ip;

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace

std::optional<ip::address> parse_ip(std::string_view text) {
  boost::system::error_code ec;
  auto a = ip::make_address(std::string(trim(text)), ec);
  if (ec) {
    return std::nullopt;
  }
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    a = ip::make_address_v4(ip::v4_mapped, a.to_v6());
  }
  return a;
}

std::optional<network_list> network_list::parse(std::string_view list, std::string* bad) {
  network_list out;
  while (!list.empty()) {
    const auto comma = list.find(',');
    const auto entry = trim(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    if (entry.empty()) {
      continue;
    }
    boost::system::error_code ec;
    if (entry.find('/') != std::string_view::npos) {
      const std::string text{entry};
      if (entry.find(':') == std::string_view::npos) {
        const auto net = ip::make_network_v4(text, ec);
        if (!ec) {
          out.v4_.push_back(net.canonical());
          continue;
        }
      } else {
        const auto net = ip::make_network_v6(text, ec);
        if (!ec) {
          out.v6_.push_back(net.canonical());
          continue;
        }
      }
    } else if (const auto a = parse_ip(entry)) {
      if (a->is_v4()) {
        out.v4_.emplace_back(a->to_v4(), 32);
      } else {
        out.v6_.emplace_back(a->to_v6(), 128);
      }
      continue;
    }
    if (bad != nullptr) {
      *bad = std::string(entry);
    }
    return std::nullopt;
  }
  return out;
}

bool network_list::contains(const ip::address& a) const {
  if (a.is_v4()) {
    const ip::network_v4 host{a.to_v4(), 32};
    return std::any_of(v4_.begin(), v4_.end(),
                       [&](const ip::network_v4& n) { return host == n || host.is_subnet_of(n); });
  }
  const ip::network_v6 host{a.to_v6(), 128};
  return std::any_of(v6_.begin(), v6_.end(),
                     [&](const ip::network_v6& n) { return host == n || host.is_subnet_of(n); });
}

}  // namespace mercato::config
