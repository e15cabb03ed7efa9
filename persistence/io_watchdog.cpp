#include "persistence/io_watchdog.hpp"


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
  // No wake-up: the watchdog looks every `tick`, so arming costs a job one uncontended lock.
  std::lock_guard<std::mutex> lock{m_};
  const auto id = next_id_++;
  armed_.emplace(id, entry{fd, deadline});
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
  for (;;) {
    std::this_thread::sleep_for(tick);
    int cut = 0;
    {
      std::lock_guard<std::mutex> lock{m_};
      const auto now = clock::now();
      for (auto it = armed_.begin(); it != armed_.end();) {
        if (it->second.deadline > now) {
          ++it;
          continue;
        }
        // Still armed, so its owner has not closed the connection: the descriptor is still its socket.
        ::shutdown(it->second.socket, SHUT_RDWR);
        it = armed_.erase(it);
        ++cut_offs_;
        ++cut;
      }
    }
    // Logged outside the lock: every database job arms and disarms under it.
    for (int i = 0; i < cut; ++i) {
      telemetry::log_warn("postgresql connection cut off: no answer before its deadline");
    }
  }
}

}  // namespace mercato::persistence
