#include "persistence/pg_pool.hpp"

#include <pqxx/pqxx>

#include "persistence/io_watchdog.hpp"
#include "telemetry/logging.hpp"
#include "telemetry/metrics.hpp"

namespace mercato::persistence {
namespace {

std::string with_connect_timeout(const std::string& dsn, std::chrono::milliseconds timeout) {
  auto secs = std::max<long long>(1, std::chrono::duration_cast<std::chrono::seconds>(timeout).count());
  const bool is_uri = dsn.rfind("postgresql://", 0) == 0 || dsn.rfind("postgres://", 0) == 0;
  if (is_uri) {
    return dsn + (dsn.find('?') == std::string::npos ? "?" : "&") + "connect_timeout=" + std::to_string(secs);
  }
  return dsn + " connect_timeout=" + std::to_string(secs);
}

}  // namespace

std::unique_ptr<pqxx::connection> open_connection(const std::string& dsn, std::chrono::milliseconds connect_timeout,
                                                  std::chrono::milliseconds statement_timeout,
                                                  std::chrono::milliseconds lock_timeout) {
  auto conn = std::make_unique<pqxx::connection>(with_connect_timeout(dsn, connect_timeout));
  // One round trip for all of the session's settings.
  // A transaction left open by a process that stopped between two statements (frozen, or stuck) keeps
  // its row locks: another node's takeover of those rows would wait for it indefinitely. Our
  // transactions send their statements back to back, so one idle for as long as a statement may run
  // is abandoned, and the server ends its session.
  std::string settings = "SET statement_timeout = " + std::to_string(statement_timeout.count()) +
                         "; SET idle_in_transaction_session_timeout = " + std::to_string(statement_timeout.count()) +
                         "; SET TIME ZONE 'UTC'";
  if (lock_timeout.count() > 0) {
    settings += "; SET lock_timeout = " + std::to_string(lock_timeout.count());
  }
  pqxx::nontransaction{*conn}.exec(settings);
  return conn;
}

pg_pool::pg_pool(pg_pool_options opts, telemetry::metrics* metrics) : opts_(std::move(opts)), metrics_(metrics) {
  if (metrics_) {
    metrics_->db_pool_size.Set(opts_.size);
  }
  threads_.reserve(opts_.size);
  for (unsigned i = 0; i < opts_.size; ++i) {
    threads_.emplace_back([this] { worker_loop(); });
  }
}

pg_pool::~pg_pool() { stop(); }

bool pg_pool::submit(work_fn work, fail_fn fail) {
  {
    std::lock_guard<std::mutex> lock{mutex_};
    if (stopping_ || queue_.size() >= opts_.queue_limit) {
      return false;
    }
    queue_.push_back(job{std::move(work), std::move(fail), std::chrono::steady_clock::now()});
    if (metrics_) {
      metrics_->db_queue_depth.Set(static_cast<double>(queue_.size()));
    }
  }
  cv_.notify_one();
  return true;
}

std::size_t pg_pool::queue_depth() const {
  std::lock_guard<std::mutex> lock{mutex_};
  return queue_.size();
}

void pg_pool::stop() {
  std::deque<job> abandoned;
  {
    std::lock_guard<std::mutex> lock{mutex_};
    if (stopping_ && threads_.empty()) {
      return;
    }
    stopping_ = true;
    abandoned.swap(queue_);
  }
  cv_.notify_all();
  for (auto& j : abandoned) {
    if (j.fail) {
      j.fail(db_error{db_error_kind::shutting_down, "database pool is stopping", {}});
    }
  }
  for (auto& t : threads_) {
    if (t.joinable()) {
      t.join();
    }
  }
  threads_.clear();
}

void pg_pool::worker_loop() {
  std::unique_ptr<pqxx::connection> conn;
  for (;;) {
    job j;
    {
      std::unique_lock<std::mutex> lock{mutex_};
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) {
        return;
      }
      j = std::move(queue_.front());
      queue_.pop_front();
      if (metrics_) {
        metrics_->db_queue_depth.Set(static_cast<double>(queue_.size()));
      }
    }
    if (std::chrono::steady_clock::now() - j.queued_at > opts_.queue_timeout) {
      if (j.fail) {
        j.fail(db_error{db_error_kind::unavailable, "waited too long for a database connection", {}});
      }
      continue;
    }
    in_use_.fetch_add(1);
    if (metrics_) {
      metrics_->db_pool_in_use.Increment();
    }
    run_job(conn, j);
    in_use_.fetch_sub(1);
    if (metrics_) {
      metrics_->db_pool_in_use.Decrement();
    }
  }
}

void pg_pool::run_job(std::unique_ptr<pqxx::connection>& conn, job& j) {
  try {
    if (!conn || !conn->is_open()) {
      conn.reset();
      conn = open_connection(opts_.dsn, opts_.connect_timeout, opts_.statement_timeout);
      if (!reachable_.exchange(true)) {
        telemetry::log_info("postgresql reachable");
      }
      if (metrics_) {
        metrics_->db_up.Set(1);
      }
    }
    {
      // The server cancels a statement after statement_timeout; a network that stopped passing bytes
      // is cut off a little later (the guard ends before the catch below may close the connection).
      auto armed = io_watchdog::instance().arm(*conn, std::chrono::steady_clock::now() + opts_.statement_timeout + io_grace);
      j.work(*conn);
    }
    reachable_.store(true, std::memory_order_relaxed);
  } catch (...) {
    db_error err = classify_current_exception();
    if (err.kind == db_error_kind::unavailable) {
      // Drop the connection: the next job reconnects, so a PostgreSQL restart heals without us.
      conn.reset();
      if (reachable_.exchange(false)) {
        telemetry::log_warn("postgresql unreachable", {{"error", err.message}});
      }
      if (metrics_) {
        metrics_->db_up.Set(0);
      }
    }
    if (metrics_) {
      metrics_->db_failures.Increment();
    }
    if (j.fail) {
      j.fail(err);
    }
  }
}

}  // namespace mercato::persistence
