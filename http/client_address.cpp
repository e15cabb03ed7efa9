#include "http/client_address.hpp"

namespace mercato::http {

std::string client_address(const config::network_list& trusted, const std::string& peer,
                           std::string_view forwarded_for) {
  if (trusted.empty()) {
    return peer;
  }
  const auto peer_address = config::parse_ip(peer);
  if (!peer_address || !trusted.contains(*peer_address)) {
    return peer;
  }
  std::string client = peer;
  // Right to left: the last entry was appended by the proxy that talked to this node.
  while (!forwarded_for.empty()) {
    const auto comma = forwarded_for.rfind(',');
    const auto entry = comma == std::string_view::npos ? forwarded_for : forwarded_for.substr(comma + 1);
    forwarded_for = comma == std::string_view::npos ? std::string_view{} : forwarded_for.substr(0, comma);
    if (entry.find_first_not_of(" \t") == std::string_view::npos) {
      continue;
    }
    const auto a = config::parse_ip(entry);
    if (!a) {
      break;
    }
    client = a->to_string();
    if (!trusted.contains(*a)) {
      break;
    }
  }
  return client;
}

}  // namespace mercato::http
