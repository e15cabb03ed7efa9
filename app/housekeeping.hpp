#pragma once
// Periodic housekeeping of a node, on one thread with its own PostgreSQL connection:
// - stock reservations past their TTL on products nobody touches: the inventory entities whose
//   earliest reservation is due (inventory.next_expiry) are sent inventory_expire, which drops them
//   and commits ReservationExpired (an abandoned checkout never holds stock for ever);
// - Idempotency-Key records past their 24 h expiry are deleted (in batches);
// - the cart gauges of the business metrics: active and abandoned carts (open, with items, unchanged
//   for cart.abandoned_after_s) and the abandonment ratio;
// - checkouts nobody is driving any more (the node died mid-saga): orders still reserving or
//   pending_payment after `stale_checkout` are handed to `resume_checkout`, which drives them to
//   their end (the saga continues where the order's snapshot says it stopped);
// - operations after checkout a dead node left under way, likewise after `stale_checkout`: orders
//   being canceled or receiving a return (order_sagas.step canceling / receiving) and payments with
//   refunds asked of the provider but not recorded (payments.pending_refunds) go to `resume_operation`.
// Every node runs it; each step is idempotent, so two nodes doing the same round is harmless.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <pqxx/connection>

namespace mercato::telemetry {
class metrics;
}

namespace mercato::app {

class entity_runtime;

struct housekeeping_options {
  std::string dsn;
  std::chrono::milliseconds connect_timeout{2'000};
  std::chrono::milliseconds statement_timeout{5'000};  // also bounds a transaction left idle
  std::chrono::milliseconds interval{30'000};
  std::size_t batch_size = 1000;
  std::chrono::seconds abandoned_after{3600};
  std::chrono::milliseconds stale_checkout{60'000};
  std::function<void(const std::string& order_id)> resume_checkout;  // null: no checkouts on this node
  // what: "cancel" or "receive" (an order id), "refunds" (a payment id). Null: none on this node.
  std::function<void(const std::string& what, const std::string& id)> resume_operation;
  // True once the node may drive entities (migrations applied, leases held); the thread first waits
  // for it, then resumes every unfinished checkout (null: ready at once).
  std::function<bool()> ready;
  // True while no other cluster node is live (null: alone). A node alone resumes every unfinished
  // operation at start-up (they were its previous life's); with other nodes live it resumes only stale
  // ones, since a live node may be driving the others right now.
  std::function<bool()> alone;
};

struct housekeeping_round {
  std::size_t reservations_due = 0;     // inventory entities sent inventory_expire
  std::size_t idempotency_deleted = 0;
  std::int64_t carts_active = 0;
  std::int64_t carts_abandoned = 0;
  std::size_t checkouts_resumed = 0;
  std::size_t operations_resumed = 0;
};

class housekeeping {
 public:
  // `runtime` must outlive this object; `metrics` may be null.
  housekeeping(housekeeping_options opts, entity_runtime& runtime, telemetry::metrics* metrics);
  ~housekeeping();
  housekeeping(const housekeeping&) = delete;
  housekeeping& operator=(const housekeeping&) = delete;

  void start();  // the periodic thread (first round after one interval)
  void stop();   // idempotent; waits for a round in progress

  // One round on `conn`, now (the thread's body; tests call it directly).
  housekeeping_round run_once(pqxx::connection& conn);
  // Hands every unfinished checkout older than `older_than` to resume_checkout; returns how many.
  // The node calls it once at start-up with 0 (every unfinished saga of its database is orphaned then).
  std::size_t resume_checkouts(pqxx::connection& conn, std::chrono::milliseconds older_than);
  // Hands every cancel, return receipt and refund under way for longer than `older_than` to
  // resume_operation; returns how many. Also once at start-up with 0.
  std::size_t resume_operations(pqxx::connection& conn, std::chrono::milliseconds older_than);

 private:
  void loop();

  housekeeping_options opts_;
  entity_runtime& runtime_;
  telemetry::metrics* metrics_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
  std::uint64_t rounds_ = 0;
};

}  // namespace mercato::app
