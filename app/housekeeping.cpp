#include "app/housekeeping.hpp"

#include <exception>
#include <string>
#include <vector>

#include <caf/make_message.hpp>
#include <caf/send.hpp>
#include <pqxx/pqxx>

#include "actors/protocol/atoms.hpp"
#include "actors/protocol/inventory_messages.hpp"
#include "actors/protocol/type_ids.hpp"
#include "app/entity_runtime.hpp"
#include "persistence/pg_pool.hpp"
#include "telemetry/logging.hpp"
#include "telemetry/metrics.hpp"

namespace mercato::app {

housekeeping::housekeeping(housekeeping_options opts, entity_runtime& runtime, telemetry::metrics* metrics)
    : opts_(std::move(opts)), runtime_(runtime), metrics_(metrics) {}

housekeeping::~housekeeping() { stop(); }

void housekeeping::start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable() || stopping_) {
    return;
  }
  thread_ = std::thread([this] { loop(); });
}

void housekeeping::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

void housekeeping::loop() {
  std::unique_ptr<pqxx::connection> conn;
  std::unique_lock<std::mutex> lock(mu_);
  // Start-up: once the node is ready, the checkouts its previous life left unfinished are resumed.
  bool resumed = !opts_.resume_checkout && !opts_.resume_operation;
  while (!resumed && !stopping_) {
    if (!opts_.ready || opts_.ready()) {
      lock.unlock();
      try {
        if (!conn || !conn->is_open()) {
          conn = persistence::open_connection(opts_.dsn, opts_.connect_timeout, opts_.statement_timeout);
        }
        const auto older_than = !opts_.alone || opts_.alone() ? std::chrono::milliseconds(0) : opts_.stale_checkout;
        resume_checkouts(*conn, older_than);
        resume_operations(*conn, older_than);
        resumed = true;
      } catch (const std::exception& e) {
        conn.reset();
        telemetry::log_warn("resuming unfinished checkouts failed; retrying", {{"error", e.what()}});
      }
      lock.lock();
    }
    if (!resumed) {
      wake_.wait_for(lock, std::chrono::milliseconds(200), [this] { return stopping_; });
    }
  }
  while (!wake_.wait_for(lock, opts_.interval, [this] { return stopping_; })) {
    lock.unlock();
    try {
      if (!conn || !conn->is_open()) {
        conn = persistence::open_connection(opts_.dsn, opts_.connect_timeout, opts_.statement_timeout);
      }
      run_once(*conn);
    } catch (const std::exception& e) {
      conn.reset();  // a broken connection is opened again next round
      telemetry::log_warn("housekeeping round failed; retrying next interval", {{"error", e.what()}});
    }
    lock.lock();
  }
}

housekeeping_round housekeeping::run_once(pqxx::connection& conn) {
  housekeeping_round out;
  const auto batch = static_cast<std::int64_t>(opts_.batch_size);

  // Inventory entities with a reservation due. The entity decides what expired (its clock, its
  // reservations); this only wakes it. The projection row moves on once the expiry is committed.
  std::vector<std::string> due;
  {
    pqxx::nontransaction tx(conn);
    for (const auto& row : tx.exec_params(
             "SELECT product_id::text FROM inventory WHERE next_expiry <= now() ORDER BY next_expiry LIMIT $1",
             batch)) {
      due.push_back(row[0].as<std::string>());
    }
  }
  if (!due.empty()) {
    const auto router = runtime_.router("inventory");
    const auto round = std::to_string(++rounds_);
    for (const auto& id : due) {
      protocol::inventory_expire cmd;
      cmd.meta.request_id = "housekeeping-" + round;
      cmd.meta.source = "housekeeping";
      caf::anon_send(router, protocol::to_entity_atom::value, id, caf::make_message(std::move(cmd)));
    }
    out.reservations_due = due.size();
  }

  // Idempotency-Key records past their expiry (a repeat after that is a new request anyway).
  {
    pqxx::work tx(conn);
    const auto r = tx.exec_params(
        "DELETE FROM idempotency_keys WHERE ctid IN "
        "(SELECT ctid FROM idempotency_keys WHERE expires_at < now() LIMIT $1)",
        batch);
    tx.commit();
    out.idempotency_deleted = static_cast<std::size_t>(r.affected_rows());
  }

  // Cart gauges: open carts with items, split by their last change.
  {
    pqxx::nontransaction tx(conn);
    const auto row = tx.exec_params1(
        "SELECT count(*) FILTER (WHERE updated_at >= now() - make_interval(secs => $1)), "
        "       count(*) FILTER (WHERE updated_at <  now() - make_interval(secs => $1)) "
        "FROM carts WHERE status = 'open' AND item_count > 0",
        static_cast<double>(opts_.abandoned_after.count()));
    out.carts_active = row[0].as<std::int64_t>();
    out.carts_abandoned = row[1].as<std::int64_t>();
  }

  // One node of the cluster at a time resumes stale operations: a resumed one refreshes its row within
  // milliseconds, so the next node's round no longer finds it stale. (Session lock: released below, or
  // with the connection if this round throws.)
  bool resume_turn = false;
  {
    pqxx::nontransaction tx(conn);
    resume_turn = tx.exec("SELECT pg_try_advisory_lock(hashtext('mercato.housekeeping.resume'))")[0][0].as<bool>();
  }
  if (resume_turn) {
    out.checkouts_resumed = resume_checkouts(conn, opts_.stale_checkout);
    out.operations_resumed = resume_operations(conn, opts_.stale_checkout);
    pqxx::nontransaction tx(conn);
    tx.exec("SELECT pg_advisory_unlock(hashtext('mercato.housekeeping.resume'))");
  }

  if (metrics_) {
    metrics_->reservations_expired.Increment(static_cast<double>(out.reservations_due));
    metrics_->idempotency_keys_deleted.Increment(static_cast<double>(out.idempotency_deleted));
    metrics_->carts_active.Set(static_cast<double>(out.carts_active));
    metrics_->carts_abandoned.Set(static_cast<double>(out.carts_abandoned));
    const auto with_items = out.carts_active + out.carts_abandoned;
    metrics_->cart_abandonment_ratio.Set(with_items > 0 ? static_cast<double>(out.carts_abandoned) / with_items : 0.0);
  }
  return out;
}

std::size_t housekeeping::resume_checkouts(pqxx::connection& conn, std::chrono::milliseconds older_than) {
  if (!opts_.resume_checkout) {
    return 0;
  }
  std::vector<std::string> orders;
  {
    pqxx::nontransaction tx(conn);
    for (const auto& row : tx.exec_params(
             "SELECT order_id::text FROM order_sagas WHERE step IN ('reserving', 'pending_payment') "
             "AND updated_at < now() - make_interval(secs => $1) ORDER BY updated_at LIMIT $2",
             static_cast<double>(older_than.count()) / 1000.0, static_cast<std::int64_t>(opts_.batch_size))) {
      orders.push_back(row[0].as<std::string>());
    }
  }
  for (const auto& id : orders) {
    telemetry::log_info("resuming an unfinished checkout", {{"order_id", id}});
    opts_.resume_checkout(id);
  }
  return orders.size();
}

std::size_t housekeeping::resume_operations(pqxx::connection& conn, std::chrono::milliseconds older_than) {
  if (!opts_.resume_operation) {
    return 0;
  }
  const auto secs = static_cast<double>(older_than.count()) / 1000.0;
  const auto limit = static_cast<std::int64_t>(opts_.batch_size);
  std::vector<std::pair<std::string, std::string>> work;
  {
    pqxx::nontransaction tx(conn);
    for (const auto& row : tx.exec_params(
             "SELECT CASE step WHEN 'canceling' THEN 'cancel' ELSE 'receive' END, order_id::text FROM order_sagas "
             "WHERE step IN ('canceling', 'receiving') AND updated_at < now() - make_interval(secs => $1) "
             "ORDER BY updated_at LIMIT $2",
             secs, limit)) {
      work.emplace_back(row[0].as<std::string>(), row[1].as<std::string>());
    }
    for (const auto& row : tx.exec_params(
             "SELECT id::text FROM payments WHERE pending_refunds > 0 "
             "AND updated_at < now() - make_interval(secs => $1) ORDER BY updated_at LIMIT $2",
             secs, limit)) {
      work.emplace_back("refunds", row[0].as<std::string>());
    }
  }
  for (const auto& [what, id] : work) {
    telemetry::log_info("resuming an operation left under way", {{"operation", what}, {"id", id}});
    opts_.resume_operation(what, id);
  }
  return work.size();
}

}  // namespace mercato::app
