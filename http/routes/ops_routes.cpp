#include "http/routes/ops_routes.hpp"

#include <boost/json/object.hpp>
#include <pqxx/pqxx>

#include "config/embedded_file.hpp"
#include "telemetry/metrics.hpp"

namespace mercato {
const std::vector<embedded_file>& bundled_openapi();
}

namespace mercato::http {
namespace {

struct checks {
  bool schema = false;
  bool leases = false;
};

response readiness(bool postgres_ok, checks c, const std::string& node_id) {
  const bool ready = postgres_ok && c.schema && c.leases;
  boost::json::object body{
      {"status", ready ? "ready" : "not_ready"},
      {"node_id", node_id},
      {"checks", boost::json::object{{"postgres", postgres_ok ? "ok" : "unavailable"},
                                     {"migrations", c.schema ? "applied" : "pending"},
                                     {"leases", c.leases ? "held" : "pending"}}}};
  auto r = response::json(ready ? 200 : 503, body);
  r.with_header("Cache-Control", "no-store");
  return r;
}

}  // namespace

void add_ops_routes(router& routes, ops_dependencies deps) {
  routes.add(bhttp::verb::get, "/healthz", [](auto, responder respond) {
    respond(response::json_text(200, R"({"status":"ok"})").with_header("Cache-Control", "no-store"));
  });

  routes.add(bhttp::verb::get, "/readyz", [deps](auto, responder respond) {
    const checks schema_ok{deps.schema_ready && deps.schema_ready(), deps.leases_held && deps.leases_held()};
    const std::string node_id = deps.node_id;
    // A live round trip through the same pool the API uses: if requests cannot reach PostgreSQL,
    // neither does this check.
    const bool queued = deps.pool->submit(
        [respond, schema_ok, node_id](pqxx::connection& conn) {
          pqxx::nontransaction tx{conn};
          tx.exec("SELECT 1");
          respond(readiness(true, schema_ok, node_id));
        },
        [respond, schema_ok, node_id](const persistence::db_error&) {
          respond(readiness(false, schema_ok, node_id));
        });
    if (!queued) {
      respond(readiness(false, schema_ok, node_id));
    }
  });

  routes.add(bhttp::verb::get, "/metrics", [metrics = deps.metrics](auto, responder respond) {
    response r;
    r.status = 200;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = metrics->scrape();
    respond(std::move(r));
  });

  routes.add(bhttp::verb::get, "/api/v1/openapi.yaml", [](auto, responder respond) {
    response r;
    r.status = 200;
    r.content_type = "application/yaml";
    r.body = std::string(bundled_openapi().front().content);
    respond(std::move(r));
  });
}

}  // namespace mercato::http
