#pragma once
// The client's address behind reverse proxies the operator trusts (http.trusted_proxies).
//
// Without trusted proxies the client is the TCP peer, and X-Forwarded-For is ignored: anyone can send it,
// so believing it would let a client pick the address its rate limits, logs and anonymous idempotency
// scope are keyed by. With them, a request whose peer is a trusted proxy is attributed to the rightmost
// X-Forwarded-For entry that is not itself a trusted proxy (each proxy appends the address it received
// the request from, so entries left of the first untrusted one were written by the client and prove
// nothing). Scanning stops at an entry that is not an IP address; the last good one is used.

#include <string>
#include <string_view>

#include "config/network_list.hpp"

namespace mercato::http {

// `forwarded_for`: every X-Forwarded-For header of the request, joined with commas in their order.
std::string client_address(const config::network_list& trusted, const std::string& peer,
                           std::string_view forwarded_for);

}  // namespace mercato::http
