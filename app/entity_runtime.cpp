#include "app/entity_runtime.hpp"

#include <stdexcept>

#include <caf/all.hpp>

#include "actors/cart/cart_model.hpp"
#include "actors/inventory/inventory_model.hpp"
#include "actors/order/order_model.hpp"
#include "actors/payment/payment_model.hpp"
#include "actors/protocol/protocol.hpp"
#include "persistence/pg_pool.hpp"
#include "supervisors/entity.hpp"
#include "supervisors/entity_router.hpp"
#include "telemetry/metrics.hpp"

namespace mercato::app {

struct entity_runtime::impl {
  struct kind_slot {
    std::shared_ptr<supervisors::entity_env> env;
    caf::actor router;
  };

  impl(entity_runtime_options o, persistence::pg_pool& pool, telemetry::metrics* m)
      : opts(std::move(o)), metrics(m) {
    if (opts.dispatch_outbox) {
      auto oo = opts.outbox;
      oo.dsn = opts.dsn;
      dispatcher = std::make_unique<persistence::outbox_dispatcher>(std::move(oo), metrics);
    }
    auto wo = opts.writer;
    wo.dsn = opts.dsn;
    wo.node_id = opts.node_id;
    if (dispatcher) {
      wo.on_events_committed = [d = dispatcher.get(), next = std::move(wo.on_events_committed)] {
        d->notify();
        if (next) {
          next();
        }
      };
    }
    writer = std::make_unique<persistence::snapshot_writer>(std::move(wo), metrics);
    protocol::register_protocol(caf_config);
    if (opts.scheduler_threads > 0) {
      caf_config.set("scheduler.max-threads", opts.scheduler_threads);
    }
    system = std::make_unique<caf::actor_system>(caf_config);
    const int hosts = opts.hosts_per_kind > 0 ? opts.hosts_per_kind
                                              : static_cast<int>(system->scheduler().num_workers());
    add_kind(actors::cart_model::kind, supervisors::spawner_for<actors::cart_model>(), pool, hosts);
    add_kind(actors::inventory_model::kind, supervisors::spawner_for<actors::inventory_model>(), pool, hosts);
    add_kind(actors::order_model::kind, supervisors::spawner_for<actors::order_model>(), pool, hosts);
    add_kind(actors::payment_model::kind, supervisors::spawner_for<actors::payment_model>(), pool, hosts);
  }

  void add_kind(const char* kind, supervisors::entity_spawner spawn, persistence::pg_pool& pool, int hosts) {
    auto env = std::make_shared<supervisors::entity_env>();
    env->kind = kind;
    env->shards = opts.shards;
    env->pool = &pool;
    env->writer = writer.get();
    env->metrics = metrics;
    env->limits = opts.limits;
    if (metrics) {
      // Create the kind's series now, so dashboards see zeros rather than nothing.
      metrics->entities_active(kind);
      metrics->entity_activations(kind);
      metrics->entity_passivations(kind);
      metrics->entity_restarts(kind);
      metrics->entity_poison_dropped(kind);
    }
    auto router = system->spawn(supervisors::entity_router, std::shared_ptr<const supervisors::entity_env>(env),
                                std::move(spawn), hosts);
    kinds.push_back({std::move(env), std::move(router)});
  }

  const kind_slot& slot(std::string_view kind) const {
    for (const auto& k : kinds) {
      if (k.env->kind == kind) {
        return k;
      }
    }
    throw std::invalid_argument("no entity kind " + std::string(kind));
  }

  entity_runtime_options opts;
  telemetry::metrics* metrics;
  std::unique_ptr<persistence::outbox_dispatcher> dispatcher;  // outlives the writer that wakes it
  std::unique_ptr<persistence::snapshot_writer> writer;
  caf::actor_system_config caf_config;
  std::unique_ptr<caf::actor_system> system;
  std::vector<kind_slot> kinds;
  bool stopped = false;
};

entity_runtime::entity_runtime(entity_runtime_options opts, persistence::pg_pool& pool, telemetry::metrics* metrics)
    : impl_(std::make_unique<impl>(std::move(opts), pool, metrics)) {}

entity_runtime::~entity_runtime() { stop(); }

void entity_runtime::subscribe(std::string name, persistence::outbox_dispatcher::handler fn,
                               persistence::outbox_filter filter) {
  if (impl_->dispatcher) {
    impl_->dispatcher->subscribe(std::move(name), std::move(fn), std::move(filter));
  }
}

void entity_runtime::start_outbox() {
  if (impl_->dispatcher) {
    impl_->dispatcher->start();
  }
}

void entity_runtime::take_leases(pqxx::connection& conn) {
  // One node holds every lease until the cluster arrives; taking them again bumps the epoch, which
  // fences writes of any earlier incarnation.
  for (auto& k : impl_->kinds) {
    k.env->epoch = persistence::acquire_all_leases(conn, k.env->kind, k.env->shards, impl_->opts.node_id);
  }
}

bool entity_runtime::leases_held() const {
  for (const auto& k : impl_->kinds) {
    if (k.env->epoch.load() <= 0) {
      return false;
    }
  }
  return true;
}

caf::actor entity_runtime::router(std::string_view kind) const { return impl_->slot(kind).router; }

const supervisors::entity_env& entity_runtime::env(std::string_view kind) const { return *impl_->slot(kind).env; }

caf::actor_system& entity_runtime::system() { return *impl_->system; }

persistence::snapshot_writer& entity_runtime::writer() { return *impl_->writer; }

void entity_runtime::stop() {
  if (!impl_ || impl_->stopped) {
    return;
  }
  impl_->stopped = true;
  // Routers first (their hosts and entities follow, answering what they hold), then the writer
  // drains what the entities handed it.
  for (auto& k : impl_->kinds) {
    caf::anon_send_exit(k.router, caf::exit_reason::user_shutdown);
    k.router = caf::actor{};
  }
  impl_->system->await_all_actors_done();
  impl_->writer->stop();
  if (impl_->dispatcher) {
    impl_->dispatcher->stop();
  }
}

}  // namespace mercato::app
