#pragma once
// The built-in `sandbox` payment provider (API.md): deterministic by card token — `tok_ok` approves,
// `tok_decline` declines (card_declined), `tok_slow` answers only after `slow_delay` (set it past the
// provider timeout to exercise the timeout path), anything else is declined (invalid_token). Like a
// real provider it remembers every operation by its idempotency key, in PostgreSQL
// (`sandbox_payment_operations`), so a call repeated after a crash answers as the first did and the
// ledger never shows a second charge. A few worker threads, each with its own connection (every call
// is a committed transaction, so one thread would make every checkout of the node queue behind it).

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <pqxx/connection>

#include "actors/payment/payment_provider.hpp"

namespace mercato::persistence {

class sandbox_payments final : public actors::payment_provider {
 public:
  sandbox_payments(std::string dsn, std::chrono::milliseconds slow_delay, unsigned workers = 4);
  ~sandbox_payments() override;  // answers nothing more; pending callbacks are dropped

  std::string name() const override { return "sandbox"; }
  void authorize(const std::string& key, std::int64_t amount, const std::string& currency,
                 const std::string& card_token, callback done) override;
  void capture(const std::string& key, const std::string& authorization, std::int64_t amount,
               callback done) override;
  void void_authorization(const std::string& key, const std::string& authorization, callback done) override;
  void refund(const std::string& key, const std::string& authorization, std::int64_t amount,
              callback done) override;

 private:
  struct job {
    std::string operation;  // authorize, capture, void, refund
    std::string key;
    std::string target;     // card token (authorize) or authorization reference
    std::int64_t amount = 0;
    callback done;
  };
  struct delayed {
    actors::provider_answer answer;
    callback done;
  };
  void enqueue(job j);
  void run();
  actors::provider_answer execute(pqxx::connection& conn, const job& j);

  std::string dsn_;
  std::chrono::milliseconds slow_delay_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<job> jobs_;
  std::multimap<std::chrono::steady_clock::time_point, delayed> later_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace mercato::persistence
