#include "support/cart_runtime.hpp"

#include <pqxx/pqxx>

#include "actors/cart/cart_model.hpp"
#include "actors/protocol/atoms.hpp"
#include "actors/protocol/errors.hpp"
#include "actors/protocol/protocol.hpp"
#include "actors/protocol/type_ids.hpp"
#include "persistence/migrations.hpp"
#include <algorithm>
#include <atomic>

namespace mercato::test {

cart_runtime::cart_runtime(cart_runtime_options opts) : opts_(std::move(opts)) {
  pool_ = std::make_unique<persistence::pg_pool>(
      persistence::pg_pool_options{opts_.dsn, 4, 100'000, std::chrono::milliseconds(5000),
                                   // connect: generous, the test machine may be busy compiling
                                   std::chrono::milliseconds(10'000), std::chrono::milliseconds(10'000)},
      &metrics_);
  app::entity_runtime_options ro;
  ro.dsn = opts_.dsn;
  ro.node_id = opts_.node_id;
  ro.shards = 64;
  ro.scheduler_threads = 2;
  ro.hosts_per_kind = opts_.hosts;
  ro.limits = opts_.limits;
  ro.writer.queue_limit = opts_.writer_queue_limit;
  ro.writer.commit_deadline = opts_.commit_deadline;
  runtime_ = std::make_unique<app::entity_runtime>(ro, *pool_, &metrics_);
  if (opts_.on_events) {
    runtime_->subscribe("test", opts_.on_events);
  }
  runtime_->start_outbox();
  runtime_->start_cluster();
  if (!runtime_->await_leases(std::chrono::seconds(30))) {
    throw std::runtime_error("the test runtime did not get its shard leases");
  }
  router_ = runtime_->router(actors::cart_model::kind);
}

cart_runtime::~cart_runtime() { stop(); }

void cart_runtime::stop() {
  router_ = caf::actor{};
  runtime_->stop();
  pool_->stop();
}

caf::expected<protocol::cart_view> cart_runtime::ask_message(const std::string& id, caf::message cmd,
                                                             std::chrono::milliseconds timeout) {
  caf::scoped_actor self{runtime_->system()};
  caf::expected<protocol::cart_view> out{caf::make_error(protocol::errc::timeout)};
  self->request(router_, timeout, protocol::to_entity_atom::value, id, std::move(cmd))
      .receive([&](protocol::cart_view& v) { out = std::move(v); }, [&](caf::error& e) { out = std::move(e); });
  return out;
}

std::shared_ptr<reply_log> cart_runtime::send_all(const std::string& id, std::vector<caf::message> cmds,
                                                  std::chrono::milliseconds timeout) {
  auto log = std::make_shared<reply_log>(cmds.size());
  // The router as a spawn argument (CAF 0.17.6 misbehaves for function actors spawned without one).
  system().spawn([log, id, cmds = std::move(cmds), timeout](caf::event_based_actor* self, caf::actor router) {
    for (std::size_t i = 0; i < cmds.size(); ++i) {
      self->request(router, timeout, protocol::to_entity_atom::value, id, cmds[i])
          .then([log, i](protocol::cart_view& v) { log->set(i, std::move(v)); },
                [log, i](caf::error& e) { log->set(i, std::move(e)); });
    }
  }, router_);
  return log;
}

void reply_log::set(std::size_t i, caf::expected<protocol::cart_view> r) {
  {
    std::lock_guard<std::mutex> lock{m_};
    results_[i] = std::move(r);
    at_[i] = std::chrono::steady_clock::now();
    done_[i] = true;
  }
  cv_.notify_all();
}

bool reply_log::wait(std::size_t i, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock{m_};
  return cv_.wait_for(lock, timeout, [&] { return static_cast<bool>(done_[i]); });
}

bool reply_log::wait_all(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock{m_};
  return cv_.wait_for(lock, timeout, [&] { return std::all_of(done_.begin(), done_.end(), [](bool d) { return d; }); });
}

bool reply_log::done(std::size_t i) {
  std::lock_guard<std::mutex> lock{m_};
  return done_[i];
}

caf::expected<protocol::cart_view> reply_log::result(std::size_t i) {
  std::lock_guard<std::mutex> lock{m_};
  return results_[i];
}

std::chrono::steady_clock::time_point reply_log::at(std::size_t i) {
  std::lock_guard<std::mutex> lock{m_};
  return at_[i];
}

std::uint64_t cart_runtime::passivate_idle(std::chrono::milliseconds idle_for) {
  caf::scoped_actor self{runtime_->system()};
  std::uint64_t asked = 0;
  self->request(router_, std::chrono::seconds(10), protocol::idle_atom::value, caf::timespan{idle_for})
      .receive([&](std::uint64_t n) { asked = n; }, [&](caf::error&) {});
  return asked;
}

std::pair<std::uint64_t, std::uint64_t> cart_runtime::stats() {
  caf::scoped_actor self{runtime_->system()};
  std::pair<std::uint64_t, std::uint64_t> out{0, 0};
  self->request(router_, std::chrono::seconds(10), protocol::stats_atom::value)
      .receive([&](std::uint64_t a, std::uint64_t w) { out = {a, w}; }, [&](caf::error&) {});
  return out;
}

double cart_runtime::counter(const std::string& family) const {
  double sum = 0;
  for (const auto& f : const_cast<telemetry::metrics&>(metrics_).registry().Collect()) {
    if (f.name != family) {
      continue;
    }
    for (const auto& m : f.metric) {
      for (const auto& l : m.label) {
        if (l.name == "kind" && l.value == "cart") {
          sum += f.type == prometheus::MetricType::Gauge ? m.gauge.value : m.counter.value;
        }
      }
    }
  }
  return sum;
}

protocol::cart_line demo_line(int n, std::int32_t quantity) {
  return protocol::cart_line{"00000000-0000-4000-8000-" + std::string(12 - std::to_string(n).size(), '0') +
                                 std::to_string(n),
                             "SKU-" + std::to_string(n), "Product " + std::to_string(n), quantity, 1000 + n};
}

std::string error_code(const caf::error& e) {
  if (e.category() == caf::atom("mercato")) {
    return protocol::to_string(static_cast<protocol::errc>(e.code()));
  }
  return caf::to_string(e);
}

std::string fresh_command_id() {
  static std::atomic<std::uint64_t> next{1};
  return "test-cmd-" + std::to_string(next.fetch_add(1));
}

protocol::cart_get get_cmd(std::string user) {
  protocol::cart_get c;
  c.meta.user_id = std::move(user);
  return c;
}

protocol::cart_open open_cmd(std::string owner) {
  protocol::cart_open c;
  c.meta.user_id = owner;
  c.owner_user_id = std::move(owner);
  c.meta.request_id = "req-open";
  c.meta.command_id = fresh_command_id();
  return c;
}

protocol::cart_add_item add_cmd(int n, std::int32_t qty) {
  protocol::cart_add_item c;
  c.line = demo_line(n, qty);
  c.meta.user_id = test_owner;
  c.meta.request_id = "req-add-" + std::to_string(n);
  c.meta.command_id = fresh_command_id();
  return c;
}

cart_db_fixture::cart_db_fixture() {
  pqxx::connection conn{db.dsn()};
  persistence::apply_migrations(conn, persistence::bundled_migrations());
}

std::int64_t cart_db_fixture::stored_version(const std::string& id) {
  pqxx::connection conn{db.dsn()};
  pqxx::nontransaction tx{conn};
  auto r = tx.exec_params("SELECT version FROM entity_snapshots WHERE kind = 'cart' AND id = $1", id);
  return r.empty() ? 0 : r[0][0].as<std::int64_t>();
}

int cart_db_fixture::count(const std::string& sql) {
  pqxx::connection conn{db.dsn()};
  pqxx::nontransaction tx{conn};
  return tx.exec(sql)[0][0].as<int>();
}

}  // namespace mercato::test
