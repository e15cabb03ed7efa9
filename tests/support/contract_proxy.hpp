#pragma once
// The contract proxy: with MERCATO_TEST_CONTRACT_PROXY=1 every node_process puts a Prism proxy
// (`prism proxy openapi.yaml http://127.0.0.1:<node port>`, from tests/tools) in front of its node,
// and http_client sends the tests' requests through it. Prism validates each exchange against
// openapi.yaml and lists what breaks it in the `sl-violations` response header; the client turns
// those into test failures, so a response that does not match the published spec fails the suite.
//
// Prism runs without --errors: with it, Prism answers a request that breaks the spec itself (422)
// instead of forwarding it, and the tests' deliberately invalid requests would never reach the node.
// Without it every request is forwarded and the header is the verdict:
//   - a response violation fails the test, whatever the status;
//   - a request violation fails it only when the node accepted the request (2xx/3xx): the node and
//     the spec then disagree on what is valid. A refused request (4xx) is the test's own bad input.
//   - an answer Prism made itself (no X-Request-Id, which the node puts on every response) fails too.
//
// Prism does not forward everything unchanged (HEAD fails, JSON bodies are parsed and serialised
// again, query strings are decoded and encoded again, paths are normalised); requests it would alter
// go to the node directly (`forwards_unchanged`), so the proxy never changes what a request means.
// Answers do change in one way: Prism serialises JSON bodies again (JSON.stringify: 1.761E0 becomes
// 1.761), so a test that compares a body's bytes with the node's own (a HEAD's Content-Length, the
// access log's byte count) asks the node directly, through node_process::node_port().

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace mercato::test {

struct http_reply;

namespace contract {

// MERCATO_TEST_CONTRACT_PROXY=1.
bool enabled();

// Which node port a proxy port stands for (node_process registers its proxy; http_client asks).
void register_proxy(std::uint16_t proxy_port, std::uint16_t node_port);
void unregister_proxy(std::uint16_t proxy_port);
std::optional<std::uint16_t> node_behind(std::uint16_t port);

// True when Prism would hand this request to the node exactly as the test wrote it.
bool forwards_unchanged(const std::string& method, const std::string& target, const std::string& body,
                        const std::vector<std::pair<std::string, std::string>>& headers);

// What is wrong with one exchange that went through the proxy, one readable line each; empty when
// the exchange matches openapi.yaml.
std::vector<std::string> violations(const http_reply& reply);

// Counts an exchange of a client of a proxied node: validated by the proxy, or sent to the node directly.
void count_exchange(bool through_proxy);

// Reports the violations of an exchange as a failure of the running test (a doctest check), or,
// outside any test case, on stderr followed by abort(): a violation can never pass silently.
void report(const std::string& method, const std::string& target, const http_reply& reply,
            const std::vector<std::string>& problems);

// One `prism proxy` child process.
class proxy_process {
 public:
  // Starts Prism on `proxy_port` in front of 127.0.0.1:`node_port`; throws when Prism is not installed.
  proxy_process(std::uint16_t proxy_port, std::uint16_t node_port);
  ~proxy_process();
  proxy_process(const proxy_process&) = delete;
  proxy_process& operator=(const proxy_process&) = delete;

  std::uint16_t port() const { return port_; }
  // Polls GET /healthz through the proxy until it answers 200 (the node must be up).
  bool wait_ready(std::chrono::milliseconds timeout);
  bool running();
  void stop();
  std::string log() const;

 private:
  int pid_ = -1;
  std::uint16_t port_ = 0;
  std::string log_path_;
  bool exited_ = false;
};

}  // namespace contract
}  // namespace mercato::test
