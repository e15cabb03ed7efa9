#include "http/worker_pool.hpp"

#include <exception>

#include "telemetry/logging.hpp"

namespace mercato::http {

worker_pool::worker_pool(std::string name, unsigned threads, std::size_t queue_limit)
    : name_(std::move(name)), queue_limit_(queue_limit) {
  threads_.reserve(threads == 0 ? 1 : threads);
  for (unsigned i = 0; i < (threads == 0 ? 1u : threads); ++i) {
    threads_.emplace_back([this] { loop(); });
  }
}

worker_pool::~worker_pool() { stop(); }

bool worker_pool::submit(job j) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_ || queue_.size() >= queue_limit_) {
      return false;
    }
    queue_.push_back(std::move(j));
  }
  cv_.notify_one();
  return true;
}

void worker_pool::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_ && threads_.empty()) {
      return;
    }
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) {
      t.join();
    }
  }
  threads_.clear();
}

std::size_t worker_pool::queue_depth() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.size();
}

void worker_pool::loop() {
  for (;;) {
    job j;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) {
        return;  // stopping and drained
      }
      j = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      j();
    } catch (const std::exception& e) {
      telemetry::log_error("worker job threw", {{"pool", name_}, {"error", e.what()}});
    } catch (...) {
      telemetry::log_error("worker job threw", {{"pool", name_}, {"error", "unknown exception"}});
    }
  }
}

}  // namespace mercato::http
