#pragma once
// Redis servers for tests that must stop or starve Redis without touching the shared test instance:
// a redis-server child on a free loopback port, and a listener that never answers. Header-only:
// included by doctest test files (uses REQUIRE).

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include <atomic>
#include <memory>
#include <random>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include <doctest/doctest.h>

#include "persistence/redis_client.hpp"
#include "support/node_process.hpp"

namespace mercato::test {

using namespace std::chrono_literals;

// A redis-server child on a free loopback port (stoppable without disturbing anyone else). With
// `persistent`, an append-only file in a temporary directory keeps the data across a restart.
class private_redis {
 public:
  explicit private_redis(bool persistent = false) : port_(test::free_port()), persistent_(persistent) {
    if (persistent_) {
      char tmpl[] = "/tmp/mercato-redis-test-XXXXXX";
      if (::mkdtemp(tmpl) != nullptr) {
        dir_ = tmpl;
      }
    }
  }
  ~private_redis() {
    stop();
    if (!dir_.empty()) {
      std::system(("rm -rf '" + dir_ + "'").c_str());
    }
  }
  static bool installed() { return std::system("command -v redis-server >/dev/null 2>&1") == 0; }

  bool start() {
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      const int devnull = ::open("/dev/null", O_RDWR);
      ::dup2(devnull, 1);
      ::dup2(devnull, 2);
      const std::string port = std::to_string(port_);
      const std::string dir = dir_.empty() ? "/tmp" : dir_;
      const char* aof = persistent_ ? "yes" : "no";
      ::execlp("redis-server", "redis-server", "--port", port.c_str(), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", aof, "--appendfsync", "always", "--dir", dir.c_str(), "--daemonize", "no",
               "--loglevel", "warning", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    // Raw hiredis, so that waiting does not log "redis unavailable" on every attempt.
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, timeval{0, 200'000});
      bool up = false;
      if (c != nullptr && c->err == 0) {
        auto* reply = static_cast<redisReply*>(redisCommand(c, "PING"));
        up = reply != nullptr && reply->type == REDIS_REPLY_STATUS;
        if (reply != nullptr) {
          freeReplyObject(reply);
        }
      }
      if (c != nullptr) {
        redisFree(c);
      }
      if (up) {
        return true;
      }
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }
  // SIGTERM: a clean stop; SIGKILL: Redis killed.
  void stop(int sig = SIGTERM) {
    if (pid_ > 0) {
      ::kill(pid_, sig);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
    }
  }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

 private:
  std::uint16_t port_;
  bool persistent_;
  std::string dir_;
  pid_t pid_ = -1;
};

// Accepts TCP connections (through the kernel backlog) and never answers: every command times out.
class blackhole {
 public:
  blackhole() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd_, 128) == 0);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~blackhole() { ::close(fd_); }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

// The test profile's Redis (MERCATO_TEST_REDIS_URL, default the test profile's port).
inline std::string shared_redis_url() {
  const char* v = std::getenv("MERCATO_TEST_REDIS_URL");
  return v != nullptr && *v != '\0' ? v : "redis://127.0.0.1:56380";
}

// A key prefix no other test (or run) uses.
inline std::string unique_key_prefix() {
  static std::atomic<int> n{0};
  std::random_device rd;
  return "t:" + std::to_string(::getpid()) + ":" + std::to_string(rd()) + ":" + std::to_string(n++) + ":";
}

// The shared Redis plus a prefix whose keys are deleted when the test ends.
struct shared_redis {
  std::string prefix = unique_key_prefix();
  std::shared_ptr<persistence::redis_client> client = std::make_shared<persistence::redis_client>(shared_redis_url());
  shared_redis() {
    REQUIRE_MESSAGE(client->ping().ok(), "Redis at " << shared_redis_url()
                                                     << " is not reachable; run scripts/services start --profile test");
  }
  ~shared_redis() { (void)client->delete_by_pattern(prefix + "*"); }
  shared_redis(const shared_redis&) = delete;
  shared_redis& operator=(const shared_redis&) = delete;
  std::shared_ptr<persistence::redis_client> another_client() const {
    return std::make_shared<persistence::redis_client>(shared_redis_url());
  }
};

}  // namespace mercato::test
