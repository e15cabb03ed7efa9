#pragma once
// A TCP proxy on loopback for fault drills: put it between a node and PostgreSQL (or Redis) and make
// the network slow (a delay before every chunk it forwards, each way) or stalled (bytes held, every
// connection kept open, as a peer that stopped answering). Blocking sockets, two threads per
// connection; meant for the handful of connections a node's pools open.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <mutex>
#include <thread>

namespace mercato::test {

class tcp_proxy {
 public:
  // Forwards every connection accepted on a free 127.0.0.1 port to 127.0.0.1:`target_port`.
  explicit tcp_proxy(std::uint16_t target_port);
  ~tcp_proxy();
  tcp_proxy(const tcp_proxy&) = delete;
  tcp_proxy& operator=(const tcp_proxy&) = delete;

  std::uint16_t port() const { return port_; }
  // Added before each chunk is passed on, in both directions (0: none).
  void set_delay(std::chrono::milliseconds d);
  // While stalled nothing is passed on in either direction; connections stay open.
  void stall(bool on);
  // Chunks passed on so far (both directions): proof that traffic really goes through the proxy.
  std::uint64_t chunks() const { return chunks_.load(); }
  int connections() const { return connections_.load(); }

 private:
  void accept_loop();
  void pump(int from, int to);
  // Blocks while stalled (or until stopping); then sleeps the current delay.
  void hold();

  std::uint16_t target_;
  std::uint16_t port_ = 0;
  int listen_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> chunks_{0};
  std::atomic<int> connections_{0};
  std::mutex m_;
  std::condition_variable cv_;
  bool stalled_ = false;
  std::chrono::milliseconds delay_{0};
  std::thread acceptor_;
  std::list<std::thread> pumps_;  // guarded by m_
};

}  // namespace mercato::test
