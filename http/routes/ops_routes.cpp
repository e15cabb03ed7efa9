#include "http/routes/ops_routes.hpp"

#include <boost/json/object.hpp>
#include <pqxx/pqxx>

#include "config/embedded_file.hpp"
#include "http/catalog_cache.hpp"
#include "http/problem.hpp"
#include "http/product_lines.hpp"
#include "persistence/redis_client.hpp"
#include "security/jwt.hpp"
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

constexpr const char* kRedisUp = "up";
constexpr const char* kRedisDown = "down (serving from PostgreSQL and local cache)";
constexpr const char* kRedisNone = "not configured";

// Without a round trip: what the client learnt from its last command (optimistic before the first).
const char* redis_state_known(const std::shared_ptr<persistence::redis_client>& redis) {
  if (!redis) {
    return kRedisNone;
  }
  return redis->available() ? kRedisUp : kRedisDown;
}

// A live PING: blocks for at most about one command timeout, and not at all while the client is in
// its backoff after a failure (then it fails fast; one probe per backoff period goes through, so
// this also notices Redis coming back). Pool threads only.
const char* redis_state_live(const std::shared_ptr<persistence::redis_client>& redis) {
  if (!redis) {
    return kRedisNone;
  }
  return redis->ping().ok() ? kRedisUp : kRedisDown;
}

// `redis` is detail only: it does not take part in `ready`.
response readiness(bool postgres_ok, checks c, const std::string& node_id, const char* redis) {
  const bool ready = postgres_ok && c.schema && c.leases;
  boost::json::object body{
      {"status", ready ? "ready" : "not_ready"},
      {"node_id", node_id},
      {"checks", boost::json::object{{"postgres", postgres_ok ? "ok" : "unavailable"},
                                     {"migrations", c.schema ? "applied" : "pending"},
                                     {"leases", c.leases ? "held" : "pending"},
                                     {"redis", redis}}}};
  auto r = response::json(ready ? 200 : 503, body);
  r.with_header("Cache-Control", "no-store");
  return r;
}

}  // namespace

void add_ops_routes(router& routes, ops_dependencies deps) {
  // Probes and scrapes are never rate limited: an orchestrator must always see the node's state.
  route_options probe;
  probe.rate_limited = false;
  routes.add(bhttp::verb::get, "/healthz", [](auto, responder respond) {
    respond(response::json_text(200, R"({"status":"ok"})").with_header("Cache-Control", "no-store"));
  }, probe);

  routes.add(bhttp::verb::get, "/readyz", [deps](auto, responder respond) {
    const checks schema_ok{deps.schema_ready && deps.schema_ready(), deps.leases_held && deps.leases_held()};
    const std::string node_id = deps.node_id;
    auto redis = deps.redis;
    // A live round trip through the same pool the API uses: if requests cannot reach PostgreSQL,
    // neither does this check. The Redis PING rides on the same pool thread (the io thread must not
    // wait for it); when the job cannot run, the Redis detail is the client's last known state.
    const bool queued = deps.pool->submit(
        [respond, schema_ok, node_id, redis](pqxx::connection& conn) {
          pqxx::nontransaction tx{conn};
          tx.exec("SELECT 1");
          respond(readiness(true, schema_ok, node_id, redis_state_live(redis)));
        },
        [respond, schema_ok, node_id, redis](const persistence::db_error&) {
          respond(readiness(false, schema_ok, node_id, redis_state_known(redis)));
        });
    if (!queued) {
      respond(readiness(false, schema_ok, node_id, redis_state_known(redis)));
    }
  }, probe);

  // The scrape: open, or with metrics.token only for its bearer (compared in constant time). The pipeline
  // leaves Authorization alone here (access_token = false): the scrape token is not an access token.
  route_options scrape = probe;
  scrape.access_token = false;
  routes.add(bhttp::verb::get, "/metrics", [metrics = deps.metrics, cache = deps.cache,
                                            token = deps.metrics_token](auto ctx, responder respond) {
    const auto presented = bearer_credential(ctx->header(bhttp::field::authorization));
    if (token && !(presented && security::constant_time_equal(*presented, *token))) {
      respond(response::from(problem{401, "unauthenticated", "Unauthorized",
                                     "/metrics needs \"Authorization: Bearer <metrics.token>\"", {}})
                  .with_header("WWW-Authenticate", "Bearer realm=\"metrics\""));
      return;
    }
    if (cache) {
      // Non-blocking: atomics and the L1 shard mutexes only.
      const auto s = cache->stats();
      telemetry::metrics::cache_counts c;
      c.l1_hits = s.l1_hits;
      c.l1_misses = s.l1_misses;
      c.l2_hits = s.l2_hits;
      c.l2_misses = s.l2_misses;
      c.l2_errors = s.l2_errors;
      c.loads = s.loads;
      c.l1_evictions = s.l1_evictions;
      c.remote_invalidations = s.remote_invalidations;
      c.l1_entries = cache->l1_entries();
      c.l1_bytes = cache->l1_bytes();
      if (const auto& lines = cache->lines()) {
        const auto l = lines->stats();
        c.lines_hits = l.hits;
        c.lines_misses = l.misses;
      }
      metrics->report_cache(c);
    }
    response r;
    r.status = 200;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = metrics->scrape();
    respond(std::move(r));
  }, scrape);

  routes.add(bhttp::verb::get, "/api/v1/openapi.yaml", [](auto, responder respond) {
    response r;
    r.status = 200;
    r.content_type = "application/yaml";
    r.body = std::string(bundled_openapi().front().content);
    respond(std::move(r));
  });
}

}  // namespace mercato::http
