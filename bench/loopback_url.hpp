// Parses the `http://host:port/path` targets of the load generator and refuses any host that is not loopback.
//
// A load generator pointed at someone else's machine is a denial-of-service tool, so the rule is enforced here,
// before any socket exists: only literal 127.0.0.0/8 or ::1 addresses, or the name `localhost` (taken as
// 127.0.0.1 without asking a resolver), are accepted.
#pragma once

#include <boost/asio/ip/address.hpp>

#include <cctype>
#include <string>
#include <string_view>

namespace mercato::bench {

struct loopback_url {
  boost::asio::ip::address address;
  unsigned short port = 80;
  std::string host_header;  // host[:port] as written, for the Host header
  std::string target;       // path and query, always starting with '/'
};

inline bool is_loopback(const boost::asio::ip::address& a) {
  if (a.is_v4()) return (a.to_v4().to_uint() >> 24) == 127;
  const auto v6 = a.to_v6();
  if (v6.is_loopback()) return true;
  if (v6.is_v4_mapped()) {
    return (boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, v6).to_uint() >> 24) == 127;
  }
  return false;
}

inline std::string to_lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Returns an empty string on success, else what is wrong with `text`.
[[nodiscard]] inline std::string parse_loopback_url(std::string_view text, loopback_url& out) {
  const std::string lowered = to_lower(text.substr(0, 8));
  if (lowered.rfind("https://", 0) == 0) return "https is not supported: '" + std::string(text) + "'";
  if (lowered.rfind("http://", 0) != 0) return "not an http:// URL: '" + std::string(text) + "'";
  std::string_view rest = text.substr(7);

  const auto authority_end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, authority_end);
  std::string_view target = authority_end == std::string_view::npos ? std::string_view{} : rest.substr(authority_end);
  if (const auto hash = target.find('#'); hash != std::string_view::npos) target = target.substr(0, hash);
  if (authority.find('@') != std::string_view::npos) return "user info is not supported: '" + std::string(text) + "'";

  std::string_view host;
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return "unterminated IPv6 literal: '" + std::string(text) + "'";
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return "bad authority: '" + std::string(text) + "'";
      port_text = after.substr(1);
    }
  } else {
    const auto colon = authority.rfind(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
  }
  if (host.empty()) return "missing host: '" + std::string(text) + "'";

  unsigned long port = 80;
  if (!port_text.empty()) {
    if (port_text.size() > 5 || port_text.find_first_not_of("0123456789") != std::string_view::npos) {
      return "bad port: '" + std::string(text) + "'";
    }
    port = std::stoul(std::string(port_text));
    if (port == 0 || port > 65535) return "bad port: '" + std::string(text) + "'";
  }

  boost::system::error_code ec;
  boost::asio::ip::address address;
  if (to_lower(host) == "localhost") {
    address = boost::asio::ip::make_address_v4("127.0.0.1");
  } else {
    address = boost::asio::ip::make_address(std::string(host), ec);
    if (ec) {
      return "host must be a literal loopback address (127.0.0.0/8, ::1) or localhost, got '" + std::string(host) +
             "'";
    }
  }
  if (!is_loopback(address)) {
    return "refusing non-loopback host '" + std::string(host) + "': load tests may only target 127.0.0.0/8 or ::1";
  }

  out.address = address;
  out.port = static_cast<unsigned short>(port);
  out.host_header = std::string(authority);
  out.target = target.empty() ? "/" : std::string(target);
  if (out.target.front() == '?') out.target.insert(0, "/");
  return {};
}

}  // namespace mercato::bench
