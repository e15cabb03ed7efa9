#include "app/node.hpp"

#include <stdexcept>

#include <caf/all.hpp>

#include "actors/cart/cart_model.hpp"
#include "actors/protocol/protocol.hpp"
#include "http/pipeline.hpp"
#include "http/router.hpp"
#include "http/routes/catalog_routes.hpp"
#include "http/routes/ops_routes.hpp"
#include "http/server.hpp"
#include "persistence/pg_pool.hpp"
#include "persistence/schema_bootstrap.hpp"
#include "persistence/snapshot_writer.hpp"
#include "supervisors/entity.hpp"
#include "supervisors/entity_router.hpp"
#include "telemetry/logging.hpp"
#include "telemetry/metrics.hpp"

namespace mercato::app {

// Declaration order is start-up order; members are destroyed in reverse.
struct node::parts {
  explicit parts(const config::settings& s)
      : cart_env(make_env(actors::cart_model::kind)),
        bootstrap({s.postgres.dsn, s.load_demo_catalog, std::chrono::milliseconds(1000),
                   [this, node_id = s.node_id](pqxx::connection& conn) {
                     // One node holds every lease until the cluster arrives; restarting bumps the
                     // epoch, which fences writes of any earlier incarnation.
                     cart_env->epoch = persistence::acquire_all_leases(conn, cart_env->kind, cart_env->shards, node_id);
                   }}),
        pool({s.postgres.dsn, s.postgres.pool_size, s.postgres.queue_limit, s.postgres.statement_timeout,
              std::chrono::milliseconds(2000), std::chrono::milliseconds(10'000)},
             &metrics),
        writer(writer_options(s), &metrics),
        edge(routes, &metrics),
        server(s.http, edge, &metrics) {
    cart_env->pool = &pool;
    cart_env->writer = &writer;
    protocol::register_protocol(caf_config);
    if (s.scheduler_threads > 0) {
      caf_config.set("scheduler.max-threads", s.scheduler_threads);
    }
    system = std::make_unique<caf::actor_system>(caf_config);
  }

  std::shared_ptr<supervisors::entity_env> make_env(const char* kind) {
    auto env = std::make_shared<supervisors::entity_env>();
    env->kind = kind;
    env->metrics = &metrics;
    // Create the kind's series now, so dashboards see zeros rather than nothing.
    metrics.entities_active(kind);
    metrics.entity_activations(kind);
    metrics.entity_passivations(kind);
    metrics.entity_restarts(kind);
    metrics.entity_poison_dropped(kind);
    return env;
  }

  static persistence::snapshot_writer_options writer_options(const config::settings& s) {
    persistence::snapshot_writer_options o;
    o.dsn = s.postgres.dsn;
    o.node_id = s.node_id;
    return o;
  }

  telemetry::metrics metrics;
  std::shared_ptr<supervisors::entity_env> cart_env;
  persistence::schema_bootstrap bootstrap;
  persistence::pg_pool pool;
  persistence::snapshot_writer writer;
  caf::actor_system_config caf_config;
  std::unique_ptr<caf::actor_system> system;
  caf::actor cart_router;
  http::router routes;
  http::pipeline edge;
  http::server server;
};

node::node(config::settings s) : settings_(std::move(s)) {}

node::~node() { stop(); }

void node::start() {
  parts_ = std::make_unique<parts>(settings_);
  auto& p = *parts_;
  p.bootstrap.start();
  p.cart_router = p.system->spawn(supervisors::entity_router, std::shared_ptr<const supervisors::entity_env>(p.cart_env),
                                  supervisors::spawner_for<actors::cart_model>(),
                                  static_cast<int>(p.system->scheduler().num_workers()));
  http::add_ops_routes(p.routes, {&p.pool, &p.metrics, [&p] { return p.bootstrap.done(); },
                                  [&p] { return p.cart_env->epoch.load() > 0; }, settings_.node_id});
  http::add_catalog_routes(p.routes, p.pool);
  p.server.start();
  telemetry::log_info("listening", {{"node_id", settings_.node_id},
                                    {"address", settings_.http.bind_address},
                                    {"port", p.server.port()},
                                    {"http_threads", settings_.http.threads},
                                    {"pg_pool_size", settings_.postgres.pool_size}});
}

void node::stop() {
  if (!parts_) {
    return;
  }
  auto& p = *parts_;
  const auto cut = p.server.shutdown(settings_.http.shutdown_grace);
  if (cut > 0) {
    telemetry::log_warn("connections cut at the shutdown deadline", {{"connections", cut}});
  }
  // Entities next (their in-flight writes finish in the writer), then the writer drains, then the pool.
  caf::anon_send_exit(p.cart_router, caf::exit_reason::user_shutdown);
  p.cart_router = caf::actor{};
  p.system->await_all_actors_done();
  p.writer.stop();
  p.pool.stop();
  p.bootstrap.stop();
  parts_.reset();
}

std::uint16_t node::http_port() const { return parts_ ? parts_->server.port() : 0; }

}  // namespace mercato::app
