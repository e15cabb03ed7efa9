#include "support/cart_runtime.hpp"

#include <pqxx/pqxx>

#include "actors/cart/cart_model.hpp"
#include "actors/protocol/atoms.hpp"
#include "actors/protocol/errors.hpp"
#include "actors/protocol/protocol.hpp"
#include "actors/protocol/type_ids.hpp"
#include "persistence/migrations.hpp"
#include "supervisors/entity.hpp"
#include "supervisors/entity_router.hpp"

namespace mercato::test {

cart_runtime::cart_runtime(cart_runtime_options opts) : opts_(std::move(opts)) {
  pool_ = std::make_unique<persistence::pg_pool>(
      persistence::pg_pool_options{opts_.dsn, 4, 100'000, std::chrono::milliseconds(5000),
                                   std::chrono::milliseconds(2000), std::chrono::milliseconds(10'000)},
      &metrics_);
  persistence::snapshot_writer_options wo;
  wo.dsn = opts_.dsn;
  wo.node_id = opts_.node_id;
  wo.queue_limit = opts_.writer_queue_limit;
  wo.commit_deadline = opts_.commit_deadline;
  writer_ = std::make_unique<persistence::snapshot_writer>(wo, &metrics_);
  env_ = std::make_shared<supervisors::entity_env>();
  env_->kind = actors::cart_model::kind;
  env_->shards = 64;
  {
    pqxx::connection conn{opts_.dsn};
    env_->epoch = persistence::acquire_all_leases(conn, env_->kind, env_->shards, opts_.node_id);
  }
  env_->pool = pool_.get();
  env_->writer = writer_.get();
  env_->metrics = &metrics_;
  env_->limits = opts_.limits;
  cfg_ = std::make_unique<caf::actor_system_config>();
  protocol::register_protocol(*cfg_);
  cfg_->set("scheduler.max-threads", 2);
  system_ = std::make_unique<caf::actor_system>(*cfg_);
  router_ = system_->spawn(supervisors::entity_router, std::shared_ptr<const supervisors::entity_env>(env_),
                           supervisors::spawner_for<actors::cart_model>(), opts_.hosts);
}

cart_runtime::~cart_runtime() {
  caf::anon_send_exit(router_, caf::exit_reason::user_shutdown);
  router_ = caf::actor{};
  system_->await_all_actors_done();
  writer_->stop();
  pool_->stop();
}

caf::expected<protocol::cart_view> cart_runtime::ask_message(const std::string& id, caf::message cmd,
                                                             std::chrono::milliseconds timeout) {
  caf::scoped_actor self{*system_};
  caf::expected<protocol::cart_view> out{caf::make_error(protocol::errc::timeout)};
  self->request(router_, timeout, protocol::to_entity_atom::value, id, std::move(cmd))
      .receive([&](protocol::cart_view& v) { out = std::move(v); }, [&](caf::error& e) { out = std::move(e); });
  return out;
}

std::uint64_t cart_runtime::passivate_idle(std::chrono::milliseconds idle_for) {
  caf::scoped_actor self{*system_};
  std::uint64_t asked = 0;
  self->request(router_, std::chrono::seconds(10), protocol::idle_atom::value, caf::timespan{idle_for})
      .receive([&](std::uint64_t n) { asked = n; }, [&](caf::error&) {});
  return asked;
}

std::pair<std::uint64_t, std::uint64_t> cart_runtime::stats() {
  caf::scoped_actor self{*system_};
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

protocol::cart_open open_cmd(std::string owner) {
  protocol::cart_open c;
  c.owner_user_id = std::move(owner);
  c.meta.request_id = "req-open";
  return c;
}

protocol::cart_add_item add_cmd(int n, std::int32_t qty) {
  protocol::cart_add_item c;
  c.line = demo_line(n, qty);
  c.meta.request_id = "req-add-" + std::to_string(n);
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
