#include "persistence/io_watchdog.hpp"

#include <algorithm>

#include <sys/socket.h>

#include <pqxx/connection>

#include "telemetry/logging.hpp"

namespace mercato::persistence {

io_watchdog& io_watchdog::instance() {
  // Never destroyed: pools and writers may still disarm during static destruction.
  static auto* w = new io_watchdog();
  return *w;
}

io_watchdog::io_watchdog() {
  thread_ = std::thread([this] { loop(); });
  thread_.detach();
}

io_watchdog::guard::~guard() {
  if (w_ != nullptr) {
    w_->disarm(id_);
  }
}

io_watchdog::guard io_watchdog::arm(pqxx::connection& conn, clock::time_point deadline) {
  const int fd = conn.sock();
  if (fd < 0) {
    return {};
  }
  std::uint64_t id = 0;
  bool earliest = false;
  {
    std::lock_guard<std::mutex> lock{m_};
    id = next_id_++;
    earliest = std::all_of(armed_.begin(), armed_.end(), [&](const auto& e) { return e.second.deadline > deadline; });
    armed_.emplace(id, entry{fd, deadline});
  }
  if (earliest) {
    cv_.notify_one();
  }
  return guard{this, id};
}

void io_watchdog::disarm(std::uint64_t id) {
  std::lock_guard<std::mutex> lock{m_};
  armed_.erase(id);
}

std::uint64_t io_watchdog::cut_offs() const {
  std::lock_guard<std::mutex> lock{m_};
  return cut_offs_;
}

void io_watchdog::loop() {
  std::unique_lock<std::mutex> lock{m_};
  for (;;) {
    if (armed_.empty()) {
      cv_.wait(lock);
      continue;
    }
    auto next = std::min_element(armed_.begin(), armed_.end(),
                                 [](const auto& a, const auto& b) { return a.second.deadline < b.second.deadline; });
    // A copy: the entry may be erased while this thread waits (the lock is released meanwhile).
    const auto deadline = next->second.deadline;
    if (clock::now() < deadline) {
      cv_.wait_until(lock, deadline);
      continue;
    }
    // Still armed, so its owner has not closed the connection: the descriptor is still its socket.
    ::shutdown(next->second.socket, SHUT_RDWR);
    armed_.erase(next);
    ++cut_offs_;
    telemetry::log_warn("postgresql connection cut off: no answer before its deadline");
  }
}

}  // namespace mercato::persistence
