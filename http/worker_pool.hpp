#pragma once
// Threads for blocking work that is not a database query: Redis round trips (rate limits, the L2
// cache) and password hashing (argon2id, ~20 MiB and tens of milliseconds each). It keeps that work
// off the Asio io threads and off the PostgreSQL pool, whose threads each hold a connection.
//
// A bounded FIFO: submit() fails at once when `queue_limit` jobs are waiting (the caller answers
// 503 overloaded). stop() runs what is queued, then joins.

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace mercato::http {

class worker_pool {
 public:
  using job = std::function<void()>;

  worker_pool(std::string name, unsigned threads, std::size_t queue_limit);
  ~worker_pool();
  worker_pool(const worker_pool&) = delete;
  worker_pool& operator=(const worker_pool&) = delete;

  // False when the queue is full or the pool stopped; the job is dropped then.
  [[nodiscard]] bool submit(job j);
  // Runs the queued jobs, then joins the threads. Later submits fail.
  void stop();

  std::size_t queue_depth() const;
  unsigned threads() const { return static_cast<unsigned>(threads_.size()); }

 private:
  void loop();

  std::string name_;
  std::size_t queue_limit_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<job> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace mercato::http
