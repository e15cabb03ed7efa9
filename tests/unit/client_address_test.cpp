// http.trusted_proxies: which address a request is attributed to (http/client_address.hpp), and the
// address list the setting is parsed into (config/network_list.hpp).
#include <doctest/doctest.h>

#include <string>

#include "config/network_list.hpp"
#include "http/client_address.hpp"

using mercato::config::network_list;
using mercato::http::client_address;

namespace {

network_list list(const std::string& text) {
  auto parsed = network_list::parse(text);
  REQUIRE(parsed.has_value());
  return *parsed;
}

bool has(const network_list& l, const std::string& address) { return l.contains(*mercato::config::parse_ip(address)); }

}  // namespace

TEST_CASE("network_list: addresses and CIDR networks, v4 and v6; anything else names the bad entry") {
  const auto l = list(" 10.0.0.0/8, 192.0.2.7 ,fd00::/8, ::1, ");
  CHECK(has(l, "10.1.2.3"));
  CHECK_FALSE(has(l, "11.0.0.1"));
  CHECK(has(l, "192.0.2.7"));
  CHECK_FALSE(has(l, "192.0.2.8"));
  CHECK(has(l, "fd12::5"));
  CHECK(has(l, "::1"));
  CHECK_FALSE(has(l, "fe80::1"));
  CHECK(has(l, "::ffff:10.9.9.9"));  // an IPv4 client on a dual-stack socket
  CHECK(list("").empty());
  CHECK(list(" , ").empty());
  CHECK(list("10.0.0.1/8").contains(*mercato::config::parse_ip("10.200.0.1")));  // host bits ignored

  for (const char* bad : {"proxy.internal", "10.0.0.0/33", "10.0.0", "fd00::/129", "1.2.3.4/x"}) {
    CAPTURE(bad);
    std::string named;
    CHECK_FALSE(network_list::parse(std::string("127.0.0.1, ") + bad, &named).has_value());
    CHECK(named == bad);
  }
}

TEST_CASE("client address: the peer unless it is a trusted proxy; then the rightmost untrusted X-Forwarded-For") {
  const auto proxies = list("127.0.0.2, 10.0.0.0/8");
  // No trusted proxies, or an untrusted peer: X-Forwarded-For is ignored (anyone can send it).
  CHECK(client_address(network_list{}, "127.0.0.2", "203.0.113.7") == "127.0.0.2");
  CHECK(client_address(proxies, "127.0.0.3", "203.0.113.7") == "127.0.0.3");
  // A trusted peer: the entry it appended.
  CHECK(client_address(proxies, "127.0.0.2", "203.0.113.7") == "203.0.113.7");
  // Entries the client wrote itself (left of the first untrusted one) prove nothing.
  CHECK(client_address(proxies, "127.0.0.2", "198.51.100.1, 203.0.113.7") == "203.0.113.7");
  // A chain of trusted proxies is walked through.
  CHECK(client_address(proxies, "127.0.0.2", "198.51.100.1, 203.0.113.7, 10.1.1.1,10.2.2.2") == "203.0.113.7");
  // Every entry trusted: the leftmost.
  CHECK(client_address(proxies, "127.0.0.2", "10.1.1.1, 10.2.2.2") == "10.1.1.1");
  // No header, or an empty one: the proxy itself.
  CHECK(client_address(proxies, "127.0.0.2", "") == "127.0.0.2");
  CHECK(client_address(proxies, "127.0.0.2", " , ") == "127.0.0.2");
  // Garbage stops the walk at the last good entry.
  CHECK(client_address(proxies, "127.0.0.2", "203.0.113.7, unknown") == "127.0.0.2");
  CHECK(client_address(proxies, "127.0.0.2", "unknown, 10.3.3.3") == "10.3.3.3");
  // IPv6 and mapped IPv4 entries.
  CHECK(client_address(proxies, "127.0.0.2", "2001:db8::1") == "2001:db8::1");
  CHECK(client_address(proxies, "::ffff:127.0.0.2", "::ffff:203.0.113.9") == "203.0.113.9");
}
