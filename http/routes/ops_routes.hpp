#pragma once
// Operations endpoints: /healthz, /readyz, /metrics and the published contract /api/v1/openapi.yaml.

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "http/router.hpp"
#include "persistence/pg_pool.hpp"

namespace mercato::telemetry {
class metrics;
}
namespace mercato::persistence {
class redis_client;
}

namespace mercato::http {

class catalog_cache;

struct ops_dependencies {
  persistence::pg_pool* pool = nullptr;
  telemetry::metrics* metrics = nullptr;
  std::function<bool()> schema_ready;  // migrations applied
  std::function<bool()> leases_held;   // this node holds its shard leases
  std::string node_id;
  // Optional. Redis is a cache (and shared rate-limit counters), never the system of record: /readyz
  // reports it in its detail ("up", "down (serving from PostgreSQL and local cache)" or
  // "not configured") but never turns 503 because of it.
  std::shared_ptr<persistence::redis_client> redis;
  // Optional: its counters go into /metrics (mercato_cache_*) at each scrape.
  std::shared_ptr<catalog_cache> cache;
  // Optional (metrics.token): /metrics then answers only "Authorization: Bearer <token>", else 401.
  std::optional<std::string> metrics_token;
};

void add_ops_routes(router& routes, ops_dependencies deps);

}  // namespace mercato::http
