#pragma once
// Cuts off a PostgreSQL connection whose answer is overdue. statement_timeout bounds a slow server,
// but not a network that stopped passing bytes, or a server that stopped reading: libpq would then
// wait in recv() for ever (until TCP gives up, hours later), holding a pool thread or a writer lane
// and every request queued behind it. Armed around each job, the watchdog shuts the connection's
// socket down once the deadline passes: libpq reports the connection lost, the caller treats it as
// an outage (503, the writer's doubt check), and the connection is opened again.

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <thread>

#include <pqxx/connection>

namespace mercato::persistence {

class io_watchdog {
 public:
  using clock = std::chrono::steady_clock;

  // One per process, its thread started on first use.
  static io_watchdog& instance();
  // How often it looks for overdue connections: a cut-off comes at most this late (deadlines are seconds).
  static constexpr std::chrono::milliseconds tick{250};

  // Disarms at scope exit; must end before the connection is closed (the socket is still valid then).
  class guard {
   public:
    guard() = default;
    guard(io_watchdog* w, std::uint64_t id) : w_(w), id_(id) {}
    guard(guard&& o) noexcept : w_(o.w_), id_(o.id_) { o.w_ = nullptr; }
    guard& operator=(guard&&) = delete;
    guard(const guard&) = delete;
    ~guard();

   private:
    io_watchdog* w_ = nullptr;
    std::uint64_t id_ = 0;
  };

  [[nodiscard]] guard arm(pqxx::connection& conn, clock::time_point deadline);
  // Connections cut off so far (for the logs and tests).
  std::uint64_t cut_offs() const;

  io_watchdog(const io_watchdog&) = delete;
  io_watchdog& operator=(const io_watchdog&) = delete;

 private:
  io_watchdog();
  void loop();
  void disarm(std::uint64_t id);

  struct entry {
    int socket;
    clock::time_point deadline;
  };
  mutable std::mutex m_;
  std::map<std::uint64_t, entry> armed_;
  std::uint64_t next_id_ = 1;
  std::uint64_t cut_offs_ = 0;
  std::thread thread_;
};

}  // namespace mercato::persistence
