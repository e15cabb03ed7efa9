#include "support/node_process.hpp"

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <boost/json/parse.hpp>

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "support/contract_proxy.hpp"
#include "support/scratch_database.hpp"
#include "support/http_client.hpp"

extern char** environ;

namespace mercato::test {

namespace {
std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}
}  // namespace

std::string test_pg_dsn() { return env_or("MERCATO_TEST_PG_DSN", "postgresql://mercato@127.0.0.1:55433/mercato"); }
std::string test_jwt_secret() { return "mercato-e2e-test-signing-key-0123456789abcdef"; }

// Never empty: a test that needs Redis fails when the test services' Redis is not there.
std::string test_redis_url() { return env_or("MERCATO_TEST_REDIS_URL", "redis://127.0.0.1:56380"); }
std::string services_script() {
  return env_or("MERCATO_TEST_SERVICES_SCRIPT", std::string(MERCATO_SOURCE_DIR) + "/scripts/services");
}

std::uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot bind a free port");
  }
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

int run_command(const std::string& cmd) {
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// The database of the nodes a test program starts without naming one: its own, created on first use and
// dropped at exit, so test programs running side by side never share data or cluster membership (nodes of
// one database form a cluster).
const std::string& program_database_dsn() {
  static scratch_database db;
  return db.dsn();
}

node_process::node_process(std::vector<std::string> args, std::map<std::string, std::string> env) {
  port_ = free_port();
  char tmpl[] = "/tmp/mercatod-test-XXXXXX";
  const int log_fd = ::mkstemp(tmpl);
  if (log_fd < 0) {
    throw std::runtime_error("cannot create a log file");
  }
  log_path_ = tmpl;

  std::map<std::string, std::string> vars;
  for (char** e = environ; *e; ++e) {
    std::string kv{*e};
    auto eq = kv.find('=');
    if (eq != std::string::npos) {
      vars[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
  }
  vars["MERCATO_PG_DSN"] = program_database_dsn();
  vars["MERCATO_HTTP_PORT"] = std::to_string(port_);
  vars["MERCATO_LOG_FORMAT"] = "json";
  // Nodes of one test database form a cluster: each needs its own id (a test that restarts a node on
  // the same data passes the same MERCATO_NODE_ID each time, as an operator would).
  static std::atomic<int> started{0};
  vars["MERCATO_NODE_ID"] = "t" + std::to_string(::getpid()) + "-" + std::to_string(++started);
  // Every e2e node shares one test Redis and one client address: limits would leak between tests.
  // Tests of rate limiting switch them on with their own MERCATO_REDIS_KEY_PREFIX.
  vars["MERCATO_RATE_LIMITS"] = "off";
  // One signing key for every node a test starts, so tokens from one node work on another.
  vars["MERCATO_JWT_SECRET"] = test_jwt_secret();
  vars.erase("MERCATO_REDIS_URL");
  if (!test_redis_url().empty()) {
    vars["MERCATO_REDIS_URL"] = test_redis_url();
  }
  for (auto& [k, v] : env) {
    vars[k] = v;
  }
  std::vector<std::string> env_strings;
  for (auto& [k, v] : vars) {
    // Test-only variables stay with the test runner; the node rejects unknown MERCATO_* names.
    if (k.rfind("MERCATO_TEST_", 0) == 0) {
      continue;
    }
    env_strings.push_back(k + "=" + v);
  }
  std::vector<char*> envp;
  for (auto& s : env_strings) {
    envp.push_back(s.data());
  }
  envp.push_back(nullptr);
  std::string binary = MERCATOD_PATH;
  std::vector<std::string> argv_strings{binary};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : argv_strings) {
    argv.push_back(s.data());
  }
  argv.push_back(nullptr);

  pid_ = ::fork();
  if (pid_ < 0) {
    throw std::runtime_error("fork failed");
  }
  if (pid_ == 0) {
    // A test that crashes must not leave its node running (and holding a port and a database).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    ::close(log_fd);
    ::execve(binary.c_str(), argv.data(), envp.data());
    std::_Exit(127);
  }
  ::close(log_fd);

  if (contract::enabled()) {
    std::uint16_t proxy_port = free_port();
    while (proxy_port == port_) {
      proxy_port = free_port();
    }
    try {
      proxy_ = std::make_unique<contract::proxy_process>(proxy_port, port_);
    } catch (...) {
      stop(SIGKILL, std::chrono::seconds(5));
      ::unlink(log_path_.c_str());
      throw;
    }
    contract::register_proxy(proxy_port, port_);
  }
}

node_process::~node_process() {
  if (running()) {
    stop(SIGKILL, std::chrono::seconds(5));
  }
  if (proxy_) {
    contract::unregister_proxy(proxy_->port());
    proxy_.reset();
  }
  ::unlink(log_path_.c_str());
}

std::uint16_t node_process::port() const { return proxy_ ? proxy_->port() : port_; }

bool node_process::running() {
  if (pid_ <= 0 || exit_status_ >= 0) {
    return false;
  }
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  return true;
}

bool node_process::wait_ready(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!running()) {
      return false;
    }
    if (wait_for_status(port_, "/readyz", 200, std::chrono::milliseconds(200))) {
      if (!proxy_) {
        return true;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (proxy_->wait_ready(std::max(left, std::chrono::milliseconds(0)))) {
        return true;
      }
      std::cerr << "node_process: the contract proxy (Prism) on port " << proxy_->port()
                << " did not answer GET /healthz 200; its log:\n"
                << proxy_->log() << std::endl;
      return false;
    }
  }
  return false;
}

int node_process::stop(int sig, std::chrono::milliseconds timeout) {
  const int status = stop_node(sig, timeout);
  if (proxy_) {
    proxy_->stop();
  }
  return status;
}

int node_process::stop_node(int sig, std::chrono::milliseconds timeout) {
  if (!running()) {
    return exit_status_;
  }
  ::kill(pid_, sig);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!running()) {
      return exit_status_;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  exit_status_ = 128 + SIGKILL;
  return -1;
}

std::string node_process::log() const {
  std::ifstream in{log_path_};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<boost::json::object> node_process::log_entries(std::string_view msg) const {
  std::vector<boost::json::object> out;
  std::ifstream in{log_path_};
  for (std::string line; std::getline(in, line);) {
    boost::system::error_code ec;
    auto v = boost::json::parse(line, ec);
    if (ec || !v.is_object()) {
      continue;  // not a log line of the node (or cut short while it was being written)
    }
    const auto* m = v.as_object().if_contains("msg");
    if (m && m->is_string() && m->as_string() == msg) {
      out.push_back(std::move(v.as_object()));
    }
  }
  return out;
}

}  // namespace mercato::test
