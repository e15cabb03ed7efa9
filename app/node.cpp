#include "app/node.hpp"

#include <stdexcept>

#include "http/pipeline.hpp"
#include "http/router.hpp"
#include "http/routes/catalog_routes.hpp"
#include "http/routes/ops_routes.hpp"
#include "http/server.hpp"
#include "persistence/pg_pool.hpp"
#include "persistence/schema_bootstrap.hpp"
#include "telemetry/logging.hpp"
#include "telemetry/metrics.hpp"

namespace mercato::app {

// Declaration order is start-up order; members are destroyed in reverse.
struct node::parts {
  explicit parts(const config::settings& s)
      : bootstrap({s.postgres.dsn, s.load_demo_catalog, std::chrono::milliseconds(1000)}),
        pool({s.postgres.dsn, s.postgres.pool_size, s.postgres.queue_limit, s.postgres.statement_timeout,
              std::chrono::milliseconds(2000), std::chrono::milliseconds(10'000)},
             &metrics),
        edge(routes, &metrics),
        server(s.http, edge, &metrics) {}

  telemetry::metrics metrics;
  persistence::schema_bootstrap bootstrap;
  persistence::pg_pool pool;
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
  http::add_ops_routes(p.routes, {&p.pool, &p.metrics, [&p] { return p.bootstrap.done(); }, settings_.node_id});
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
  p.pool.stop();
  p.bootstrap.stop();
  parts_.reset();
}

std::uint16_t node::http_port() const { return parts_ ? parts_->server.port() : 0; }

}  // namespace mercato::app
