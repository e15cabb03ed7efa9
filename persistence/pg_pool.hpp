#pragma once
// A small pool of dedicated threads, each owning one PostgreSQL connection. All blocking database
// I/O of a node runs here: never on CAF workers, never on Asio threads. Callers submit a job and
// get its outcome through a callback on the pool thread; they post it on to wherever they live.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <pqxx/connection>

#include "persistence/db_error.hpp"

namespace mercato::telemetry {
class metrics;
}

namespace mercato::persistence {

// How long past its statement_timeout a job may wait for PostgreSQL's answer before its connection is
// cut off (persistence/io_watchdog): a network that stopped passing bytes never times out by itself.
inline constexpr std::chrono::milliseconds io_grace{2'000};

struct pg_pool_options {
  std::string dsn;
  unsigned size = 4;
  std::size_t queue_limit = 10'000;
  std::chrono::milliseconds statement_timeout{5'000};
  std::chrono::milliseconds connect_timeout{2'000};
  // A job that waited in the queue longer than this fails with `unavailable` instead of running late.
  std::chrono::milliseconds queue_timeout{10'000};
};

class pg_pool {
 public:
  // Runs on a pool thread with a live connection. Throwing pqxx exceptions is fine: the pool maps
  // them to a db_error and hands that to `fail`.
  using work_fn = std::function<void(pqxx::connection&)>;
  using fail_fn = std::function<void(const db_error&)>;

  pg_pool(pg_pool_options opts, telemetry::metrics* metrics);
  ~pg_pool();
  pg_pool(const pg_pool&) = delete;
  pg_pool& operator=(const pg_pool&) = delete;

  // Queues a job. Returns false at once when the queue is full (the caller answers 503 overloaded);
  // then neither callback runs.
  [[nodiscard]] bool submit(work_fn work, fail_fn fail);

  // Stops taking jobs, fails queued ones with `shutting_down`, joins the threads.
  void stop();

  // True while the last connection attempt or job on any connection succeeded.
  bool reachable() const { return reachable_.load(std::memory_order_relaxed); }
  std::size_t queue_depth() const;
  const pg_pool_options& options() const { return opts_; }

 private:
  struct job {
    work_fn work;
    fail_fn fail;
    std::chrono::steady_clock::time_point queued_at;
  };

  void worker_loop();
  void run_job(std::unique_ptr<pqxx::connection>& conn, job& j);

  pg_pool_options opts_;
  telemetry::metrics* metrics_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<job> queue_;
  bool stopping_ = false;
  std::atomic<bool> reachable_{false};
  std::atomic<int> in_use_{0};
  std::vector<std::thread> threads_;
};

// Opens a connection with the pool's session settings (statement timeout, the same bound on a transaction
// left idle, connect timeout, UTC), and a bound on any one wait for a lock when lock_timeout is given.
std::unique_ptr<pqxx::connection> open_connection(const std::string& dsn, std::chrono::milliseconds connect_timeout,
                                                  std::chrono::milliseconds statement_timeout,
                                                  std::chrono::milliseconds lock_timeout = {});

}  // namespace mercato::persistence
