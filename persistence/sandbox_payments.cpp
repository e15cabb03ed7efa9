#include "persistence/sandbox_payments.hpp"

#include <algorithm>
#include <exception>

#include <pqxx/pqxx>

namespace mercato::persistence {

sandbox_payments::sandbox_payments(std::string dsn, std::chrono::milliseconds slow_delay, unsigned workers)
    : dsn_(std::move(dsn)), slow_delay_(slow_delay) {
  for (unsigned i = 0; i < std::max(1u, workers); ++i) {
    threads_.emplace_back([this] { run(); });
  }
}

sandbox_payments::~sandbox_payments() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    t.join();
  }
}

void sandbox_payments::authorize(const std::string& key, std::int64_t amount, const std::string&,
                                 const std::string& card_token, callback done) {
  enqueue({"authorize", key, card_token, amount, std::move(done)});
}

void sandbox_payments::capture(const std::string& key, const std::string& authorization, std::int64_t amount,
                               callback done) {
  enqueue({"capture", key, authorization, amount, std::move(done)});
}

void sandbox_payments::void_authorization(const std::string& key, const std::string& authorization, callback done) {
  enqueue({"void", key, authorization, 0, std::move(done)});
}

void sandbox_payments::refund(const std::string& key, const std::string& authorization, std::int64_t amount,
                              callback done) {
  enqueue({"refund", key, authorization, amount, std::move(done)});
}

void sandbox_payments::enqueue(job j) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(std::move(j));
  }
  cv_.notify_one();
}

// Records the operation under its key unless the key was seen (then the first answer stands).
actors::provider_answer sandbox_payments::execute(pqxx::connection& conn, const job& j) {
  bool approved = false;
  std::string decline;
  std::string reference = "sbx_" + j.operation + "_" + j.key.substr(j.key.size() > 36 ? j.key.size() - 36 : 0);
  pqxx::work tx{conn};
  if (j.operation == "authorize") {
    approved = j.target == "tok_ok" || j.target == "tok_slow";
    if (!approved) {
      decline = j.target == "tok_decline" ? "card_declined" : "invalid_token";
    }
  } else {
    // capture / void / refund act on an approved authorization that was not voided; a capture or a
    // refund never exceeds what was authorized (refunds: what was captured, less earlier refunds).
    const auto auth = tx.exec_params(
        "SELECT amount FROM sandbox_payment_operations WHERE key = $1 AND operation = 'authorize' AND approved",
        j.target);
    const bool voided = !tx.exec_params("SELECT 1 FROM sandbox_payment_operations WHERE target = $1 AND "
                                        "operation = 'void' AND approved",
                                        j.target)
                             .empty();
    if (auth.empty() || (voided && j.operation != "void")) {
      decline = "no_such_authorization";
    } else if (j.operation == "capture") {
      approved = j.amount <= auth[0][0].as<std::int64_t>();
      decline = approved ? "" : "amount_too_large";
    } else if (j.operation == "refund") {
      const auto row = tx.exec_params1(
          "SELECT COALESCE(SUM(amount) FILTER (WHERE operation = 'capture'), 0), "
          "       COALESCE(SUM(amount) FILTER (WHERE operation = 'refund'), 0) "
          "FROM sandbox_payment_operations WHERE target = $1 AND approved",
          j.target);
      approved = j.amount <= row[0].as<std::int64_t>() - row[1].as<std::int64_t>();
      decline = approved ? "" : "amount_too_large";
    } else {
      approved = true;  // void
    }
  }
  tx.exec_params(
      "INSERT INTO sandbox_payment_operations (key, operation, target, amount, approved, reference, decline_code) "
      "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (key) DO NOTHING",
      j.key, j.operation, j.operation == "authorize" ? std::string("card") : j.target, j.amount, approved, reference,
      decline);
  const auto stored = tx.exec_params1(
      "SELECT approved, reference, decline_code FROM sandbox_payment_operations WHERE key = $1", j.key);
  tx.commit();
  return actors::provider_answer{stored[0].as<bool>(), stored[1].as<std::string>(), stored[2].as<std::string>()};
}

void sandbox_payments::run() {
  std::unique_ptr<pqxx::connection> conn;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    const auto next_due = later_.empty() ? std::chrono::steady_clock::time_point::max() : later_.begin()->first;
    cv_.wait_until(lock, next_due, [&] {
      return stopping_ || !jobs_.empty() || (!later_.empty() && later_.begin()->first <= std::chrono::steady_clock::now());
    });
    if (stopping_) {
      return;
    }
    // Answers whose delay is over.
    while (!later_.empty() && later_.begin()->first <= std::chrono::steady_clock::now()) {
      auto d = std::move(later_.begin()->second);
      later_.erase(later_.begin());
      lock.unlock();
      d.done(d.answer);
      lock.lock();
    }
    if (jobs_.empty()) {
      continue;
    }
    auto j = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    try {
      if (!conn || !conn->is_open()) {
        conn = std::make_unique<pqxx::connection>(dsn_);
      }
      auto answer = execute(*conn, j);
      if (j.operation == "authorize" && j.target == "tok_slow") {
        lock.lock();
        later_.emplace(std::chrono::steady_clock::now() + slow_delay_, delayed{std::move(answer), std::move(j.done)});
        cv_.notify_all();  // the earliest delayed answer may be earlier now: every waiter re-reads it
        continue;
      }
      j.done(std::move(answer));
    } catch (const std::exception&) {
      conn.reset();  // an outage: no answer, the caller's timeout decides (as with a real provider)
    }
    lock.lock();
  }
}

}  // namespace mercato::persistence
