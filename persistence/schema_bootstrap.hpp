#pragma once
// Brings the schema up at start-up and keeps trying while PostgreSQL is away, so a node started
// before its database becomes ready by itself once the database appears (no restart needed).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include <pqxx/connection>

namespace mercato::persistence {

class schema_bootstrap {
 public:
  struct options {
    std::string dsn;
    bool load_demo_catalog = false;
    std::chrono::milliseconds retry_interval{1'000};
    // Runs after the migrations, in the same attempt (e.g. taking the shard leases); throwing makes
    // the attempt fail and retry.
    std::function<void(pqxx::connection&)> after_migrations;
  };

  explicit schema_bootstrap(options opts);
  ~schema_bootstrap();
  schema_bootstrap(const schema_bootstrap&) = delete;
  schema_bootstrap& operator=(const schema_bootstrap&) = delete;

  // Tries once in the calling thread (so a healthy start is ready before the port opens), then
  // keeps retrying in the background until it succeeds or stop() is called.
  void start();
  void stop();

  // True once every bundled migration is applied (and the demo catalog loaded, when asked for).
  bool done() const { return done_.load(std::memory_order_acquire); }

 private:
  bool attempt();

  options opts_;
  std::atomic<bool> done_{false};
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
  std::string last_error_;
};

}  // namespace mercato::persistence
