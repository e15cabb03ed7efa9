#include "support/tcp_proxy.hpp"

#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace mercato::test {

namespace {

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

bool write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    const auto w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) {
      continue;
    }
    if (w <= 0) {
      return false;
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

// Both ends of one proxied connection, closed when both pumps are done with them.
struct link {
  link(int c, int s) : client(c), server(s) {}
  link(const link&) = delete;
  link& operator=(const link&) = delete;
  int client;
  int server;
  ~link() {
    ::close(client);
    ::close(server);
  }
};

}  // namespace

tcp_proxy::tcp_proxy(std::uint16_t target_port) : target_(target_port) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) {
    throw std::runtime_error("tcp_proxy: socket failed");
  }
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  auto addr = loopback(0);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 64) != 0) {
    ::close(listen_fd_);
    throw std::runtime_error(std::string{"tcp_proxy: bind/listen failed: "} + std::strerror(errno));
  }
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

tcp_proxy::~tcp_proxy() {
  stop_ = true;
  {
    std::lock_guard<std::mutex> lock{m_};
    stalled_ = false;
  }
  cv_.notify_all();
  acceptor_.join();
  std::list<std::thread> pumps;
  {
    std::lock_guard<std::mutex> lock{m_};
    pumps.swap(pumps_);
  }
  for (auto& t : pumps) {
    t.join();
  }
  ::close(listen_fd_);
}

void tcp_proxy::set_delay(std::chrono::milliseconds d) {
  std::lock_guard<std::mutex> lock{m_};
  delay_ = d;
}

void tcp_proxy::stall(bool on) {
  {
    std::lock_guard<std::mutex> lock{m_};
    stalled_ = on;
  }
  cv_.notify_all();
}

void tcp_proxy::hold() {
  std::unique_lock<std::mutex> lock{m_};
  cv_.wait(lock, [this] { return !stalled_ || stop_.load(); });
  const auto d = delay_;
  lock.unlock();
  if (d.count() > 0) {
    std::this_thread::sleep_for(d);
  }
}

void tcp_proxy::accept_loop() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) {
      continue;
    }
    const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) {
      continue;
    }
    const int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    auto to = loopback(target_);
    if (server < 0 || ::connect(server, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
      ::close(client);
      if (server >= 0) {
        ::close(server);
      }
      continue;
    }
    int one = 1;
    ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ++connections_;
    auto l = std::make_shared<link>(client, server);
    std::lock_guard<std::mutex> lock{m_};
    pumps_.emplace_back([this, l] { pump(l->client, l->server); ::shutdown(l->client, SHUT_RDWR); });
    pumps_.emplace_back([this, l] { pump(l->server, l->client); ::shutdown(l->server, SHUT_RDWR); });
  }
}

void tcp_proxy::pump(int from, int to) {
  char buf[64 * 1024];
  while (!stop_) {
    pollfd p{from, POLLIN, 0};
    const int ready = ::poll(&p, 1, 100);
    if (ready < 0 && errno != EINTR) {
      break;
    }
    if (ready <= 0) {
      continue;
    }
    const auto n = ::recv(from, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    hold();
    if (stop_ || !write_all(to, buf, static_cast<std::size_t>(n))) {
      break;
    }
    ++chunks_;
  }
  // One side ended: end the other's direction too, so both pumps finish.
  ::shutdown(to, SHUT_WR);
  ::shutdown(from, SHUT_RD);
}

}  // namespace mercato::test
