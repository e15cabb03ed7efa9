#pragma once
// Operations endpoints: /healthz, /readyz, /metrics and the published contract /api/v1/openapi.yaml.

#include <functional>

#include "http/router.hpp"
#include "persistence/pg_pool.hpp"

namespace mercato::telemetry {
class metrics;
}

namespace mercato::http {

struct ops_dependencies {
  persistence::pg_pool* pool = nullptr;
  telemetry::metrics* metrics = nullptr;
  std::function<bool()> schema_ready;  // migrations applied
  std::function<bool()> leases_held;   // this node holds its shard leases
  std::string node_id;
};

void add_ops_routes(router& routes, ops_dependencies deps);

}  // namespace mercato::http
