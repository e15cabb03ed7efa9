#pragma once
// Runs mercatod as a child process for end-to-end tests: its own port and node id, the test program's own
// database (unless MERCATO_PG_DSN is given), stderr captured to a file, and a stop that sends a real signal.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>

namespace mercato::test {

namespace contract {
class proxy_process;
}

// The test services' settings, from the environment scripts/test exports.
std::string test_pg_dsn();
std::string test_redis_url();  // the test services' Redis (scripts/test starts it)
std::string test_jwt_secret();  // the MERCATO_JWT_SECRET every node_process gets (tests forge tokens with it)
std::string services_script();  // scripts/services, for pg-stop / pg-start
std::uint16_t free_port();

// With MERCATO_TEST_CONTRACT_PROXY=1 a Prism proxy validating against openapi.yaml runs in front of
// the node (support/contract_proxy.hpp): port() is then the proxy's, node_port() the node's own.
class node_process {
 public:
  // Extra environment entries override the defaults (MERCATO_PG_DSN, MERCATO_HTTP_PORT, ...).
  explicit node_process(std::vector<std::string> args = {"--demo"}, std::map<std::string, std::string> env = {});
  ~node_process();
  node_process(const node_process&) = delete;
  node_process& operator=(const node_process&) = delete;

  // Where test clients connect: the contract proxy when there is one, else the node.
  std::uint16_t port() const;
  // The node itself (for what cannot go through a proxy: raw or malformed HTTP, HEAD).
  std::uint16_t node_port() const { return port_; }
  int pid() const { return pid_; }
  // Waits for GET /readyz 200 (and then for the contract proxy, when there is one).
  bool wait_ready(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Sends `sig` and waits for the exit; returns the exit status (or 128+signal when killed). Stops
  // the contract proxy too.
  int stop(int sig, std::chrono::milliseconds timeout = std::chrono::seconds(30));
  bool running();
  std::string log() const;  // everything it wrote to stderr and stdout so far
  // Its log lines (JSON: node_process sets MERCATO_LOG_FORMAT=json) whose "msg" is `msg`, in order.
  std::vector<boost::json::object> log_entries(std::string_view msg) const;

 private:
  int stop_node(int sig, std::chrono::milliseconds timeout);

  int pid_ = -1;
  std::uint16_t port_ = 0;
  std::string log_path_;
  int exit_status_ = -1;
  std::unique_ptr<contract::proxy_process> proxy_;
};

// Runs a command, returns its exit code; output goes to the test's stderr.
int run_command(const std::string& cmd);

}  // namespace mercato::test
