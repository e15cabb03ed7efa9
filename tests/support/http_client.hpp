#pragma once
// A blocking HTTP/1.1 client for tests (Beast), keep-alive by default, loopback only.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <boost/json/value.hpp>

namespace mercato::test {

struct http_reply {
  unsigned status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;

  std::string header(const std::string& name) const;
  boost::json::value json() const;  // throws when the body is not JSON
};

// When `port` is a contract proxy's (support/contract_proxy.hpp), requests go through it and every
// answer that breaks openapi.yaml fails the running test; what Prism would not forward unchanged
// (HEAD, malformed JSON, raw bytes, ...) goes to the node behind it directly.
class http_client {
 public:
  // `source`: the loopback address the connection comes from (e.g. 127.0.0.2, to be another client
  // address for per-address limits); empty: chosen by the kernel.
  explicit http_client(std::uint16_t port, std::string host = "127.0.0.1", std::string source = {});
  ~http_client();
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  http_reply request(const std::string& method, const std::string& target, const std::string& body = {},
                     const std::vector<std::pair<std::string, std::string>>& headers = {});
  http_reply get(const std::string& target, const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    return request("GET", target, {}, headers);
  }
  // Sends raw bytes and reads one response (for malformed requests and pipelining); never via a proxy.
  std::vector<http_reply> raw(const std::string& bytes, std::size_t responses = 1);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// The value of one series in the node's GET /metrics ("name{labels}" exactly as exposed); -1 when absent.
double metric(http_client& c, const std::string& series);

// Waits until GET path answers `status` (polling every 50 ms) or the deadline passes.
bool wait_for_status(std::uint16_t port, const std::string& path, unsigned status, std::chrono::milliseconds timeout);

}  // namespace mercato::test
