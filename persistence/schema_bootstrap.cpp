#include "persistence/schema_bootstrap.hpp"

#include <boost/json/array.hpp>

#include "persistence/db_error.hpp"
#include "persistence/migrations.hpp"
#include "persistence/pg_pool.hpp"
#include "telemetry/logging.hpp"

namespace mercato::persistence {

schema_bootstrap::schema_bootstrap(options opts) : opts_(std::move(opts)) {}

schema_bootstrap::~schema_bootstrap() { stop(); }

bool schema_bootstrap::attempt() {
  try {
    auto conn = open_connection(opts_.dsn, std::chrono::seconds(2), std::chrono::minutes(5));
    auto report = apply_migrations(*conn, bundled_migrations());
    boost::json::array applied;
    for (int v : report.applied) {
      applied.push_back(v);
    }
    telemetry::log_info("schema ready", {{"schema_version", report.schema_version}, {"applied", applied}});
    if (opts_.load_demo_catalog) {
      const int added = load_demo_catalog(*conn);
      telemetry::log_info("demo catalog loaded", {{"products_added", added}});
    }
    if (opts_.after_migrations) {
      opts_.after_migrations(*conn);
    }
    done_.store(true, std::memory_order_release);
    return true;
  } catch (...) {
    auto err = classify_current_exception();
    if (err.message != last_error_) {
      telemetry::log_warn("schema not ready; retrying", {{"error", err.message}});
      last_error_ = err.message;
    }
    return false;
  }
}

void schema_bootstrap::start() {
  if (attempt()) {
    return;
  }
  thread_ = std::thread([this] {
    std::unique_lock<std::mutex> lock{mutex_};
    while (!stopping_) {
      cv_.wait_for(lock, opts_.retry_interval, [this] { return stopping_; });
      if (stopping_) {
        return;
      }
      lock.unlock();
      const bool ok = attempt();
      lock.lock();
      if (ok) {
        return;
      }
    }
  });
}

void schema_bootstrap::stop() {
  {
    std::lock_guard<std::mutex> lock{mutex_};
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

}  // namespace mercato::persistence
