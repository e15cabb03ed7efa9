#include "app/node.hpp"

#include <filesystem>
#include <stdexcept>
#include <system_error>

#include <caf/all.hpp>

#include "app/entity_runtime.hpp"
#include "app/housekeeping.hpp"
#include "app/business_analytics.hpp"
#include "http/routes/analytics_routes.hpp"
#include "http/routes/cluster_routes.hpp"
#include "http/pipeline.hpp"
#include "http/router.hpp"
#include "http/catalog_cache.hpp"
#include "http/product_lines.hpp"
#include "http/rate_gate.hpp"
#include "http/entity_bridge.hpp"
#include "http/idempotency.hpp"
#include "http/routes/auth_routes.hpp"
#include "http/routes/cart_routes.hpp"
#include "http/routes/inventory_routes.hpp"
#include "actors/order/order_ops.hpp"
#include "http/routes/order_routes.hpp"
#include "persistence/sandbox_payments.hpp"
#include "http/routes/notification_routes.hpp"
#include "http/routes/catalog_admin_routes.hpp"
#include "http/routes/catalog_routes.hpp"
#include "http/routes/product_routes.hpp"
#include "http/routes/ops_routes.hpp"
#include "http/routes/static_routes.hpp"
#include "http/server.hpp"
#include "http/ws/hub.hpp"
#include "http/ws/live_route.hpp"
#include "http/ws/live_values.hpp"
#include "http/worker_pool.hpp"
#include "notifications/order_notifications.hpp"
#include "notifications/pg_notifier.hpp"
#include "persistence/pg_pool.hpp"
#include "persistence/redis_client.hpp"
#include "persistence/schema_bootstrap.hpp"
#include "persistence/snapshot_writer.hpp"
#include "persistence/user_store.hpp"
#include "security/password.hpp"
#include "telemetry/logging.hpp"
#include "telemetry/metrics.hpp"

namespace mercato::app {

// Declaration order is start-up order; members are destroyed in reverse.
struct node::parts {
  explicit parts(const config::settings& s)
      : bootstrap({s.postgres.dsn, s.load_demo_catalog, std::chrono::milliseconds(1000),
                   [auth = s.auth](pqxx::connection& conn) {
                     if (auth.admin_email && auth.admin_password) {
                       ensure_admin(conn, *auth.admin_email, *auth.admin_password);
                     }
                   }}),
        pool({s.postgres.dsn, s.postgres.pool_size, s.postgres.queue_limit, s.postgres.statement_timeout,
              std::chrono::milliseconds(2000), std::chrono::milliseconds(10'000)},
             &metrics),
        runtime(std::make_unique<entity_runtime>(runtime_options(s, bootstrap, relay_targets), pool, &metrics)),
        redis(s.redis.url ? std::make_shared<persistence::redis_client>(*s.redis.url) : nullptr),
        workers("http-workers", s.http.worker_threads, s.postgres.queue_limit),
        jwt(jwt_settings(s)),
        limits(redis, rate_rules(s), {s.redis.key_prefix, 100'000}, workers, &metrics.registry(), admission(s)),
        cache(std::make_shared<http::catalog_cache>(redis, cache_options(s))),
        lines(std::make_shared<http::product_lines>(s.cart.product_info_ttl)),
        live(http::ws::hub_options{s.websocket.max_connections},
             http::ws::database_loader(pool, s.websocket.max_initial_orders), &metrics.registry()),
        idempotency(pool, s.node_id),
        edge(routes, &metrics, {&jwt, s.rate_limits.enabled ? &limits : nullptr, &idempotency}),
        server(s.http, edge, &metrics) {
    cache->also_invalidate(lines);  // before any event or request can invalidate
  }

  // Subscribers that also get the events other nodes relay (the live-updates hub, the catalog cache).
  struct relay_target {
    persistence::outbox_filter filter;
    persistence::outbox_dispatcher::handler handler;
  };

  static entity_runtime_options runtime_options(const config::settings& s, persistence::schema_bootstrap& bootstrap,
                                                const std::vector<relay_target>& relay_targets) {
    entity_runtime_options o;
    o.dsn = s.postgres.dsn;
    o.node_id = s.node_id;
    o.shards = s.cluster.shards;
    o.cluster.host = s.cluster.host;
    o.cluster.port = s.cluster.port;
    o.cluster.http_port = s.http.port;
    o.cluster.lease_ttl = s.cluster.lease_ttl;
    o.cluster.heartbeat = s.cluster.heartbeat;
    o.cluster.node_timeout = s.cluster.node_timeout;
    o.cluster.may_join = [&bootstrap] { return bootstrap.done(); };
    o.cluster.tls_certificate = s.cluster.tls_certificate;
    o.cluster.tls_key = s.cluster.tls_key;
    o.cluster.tls_ca = s.cluster.tls_ca;
    // Events relayed by the node that runs the outbox, for this node's own subscribers (the list is
    // complete before the gateway is published).
    o.on_relayed = [&relay_targets](const std::vector<persistence::outbox_event>& events) {
      for (const auto& t : relay_targets) {
        std::vector<persistence::outbox_event> mine;
        for (const auto& e : events) {
          if (t.filter.matches(e)) {
            mine.push_back(e);
          }
        }
        if (!mine.empty()) {
          t.handler(mine);
        }
      }
    };
    o.scheduler_threads = s.scheduler_threads > 0 ? static_cast<std::size_t>(s.scheduler_threads) : 0;
    o.scheduler_poll_sleep = s.scheduler_poll_sleep;
    o.writer.linger = s.postgres.writer_linger;
    o.limits.park_after = s.entities.park_after;
    o.limits.keep_parked = s.entities.keep_parked;
    o.limits.max_parked = s.entities.max_parked;
    o.limits.max_parked_bytes = s.entities.max_parked_mb << 20;
    o.outbox.poll_interval = s.outbox.poll_interval;
    o.outbox.min_round_interval = s.outbox.min_round_interval;
    o.outbox.batch_size = s.outbox.batch_size;
    o.outbox.retention = s.outbox.retention;
    o.outbox.retention_interval = s.outbox.retention_interval;
    o.outbox.max_attempts = s.outbox.max_attempts;
    return o;
  }

  static actors::pricing_rules pricing(const config::cart_settings& c) {
    actors::pricing_rules r;
    r.default_tax_bp = c.default_tax_bp;
    for (const auto& [country, bp] : c.tax_bp_by_country) {
      r.tax_bp_by_country.emplace(country, bp);
    }
    r.shipping_flat = c.shipping_flat;
    r.free_shipping_threshold = c.free_shipping_threshold;
    return r;
  }

  static http::catalog_cache_options cache_options(const config::settings& s) {
    http::catalog_cache_options o;
    o.key_prefix = s.redis.key_prefix;
    return o;
  }

  static security::jwt_settings jwt_settings(const config::settings& s) {
    security::jwt_settings j;
    j.issuer = s.auth.issuer;
    j.audience = s.auth.audience;
    j.kid = s.auth.jwt_kid;
    j.access_ttl = s.auth.access_token_ttl;
    if (s.auth.jwt_secret) {
      j.secret = *s.auth.jwt_secret;
    } else {
      j.secret = security::random_token(48);
      telemetry::log_warn("MERCATO_JWT_SECRET is not set: signing with a random key, so access tokens are valid "
                          "only on this node and only until it restarts");
    }
    if (auto why = security::jwt_settings_problem(j)) {
      throw std::runtime_error("auth.jwt_secret (MERCATO_JWT_SECRET): " + *why);
    }
    return j;
  }

  static http::rate_admission_options admission(const config::settings& s) {
    http::rate_admission_options o;
    o.max_credit = s.rate_limits.node_credit;
    return o;
  }

  static http::rate_limit_rules rate_rules(const config::settings& s) {
    auto r = http::default_rules();
    const auto& c = s.rate_limits;
    r.enabled = c.enabled;
    auto set = [](http::rate_limit_rule& rule, const config::rate_setting& v) {
      rule.limit = v.limit;
      rule.window = v.window;
    };
    set(r.global, c.global);
    set(r.login, c.login);
    set(r.register_account, c.register_account);
    set(r.orders, c.orders);
    set(r.search, c.search);
    set(r.authenticated, c.authenticated);
    set(r.anonymous, c.anonymous);
    return r;
  }

  // The initial admin from configuration: created, or given the admin role and this password.
  static void ensure_admin(pqxx::connection& conn, const std::string& email_text, const std::string& password) {
    auto email = security::normalize_email(email_text);
    if (!email) {
      telemetry::log_error("MERCATO_ADMIN_EMAIL is not a valid email address; no admin created");
      return;
    }
    if (auto why = security::password_problem(password, *email)) {
      telemetry::log_error("MERCATO_ADMIN_PASSWORD is not acceptable; no admin created", {{"reason", *why}});
      return;
    }
    auto existing = persistence::user_store::find_by_email(conn, *email);
    if (existing && existing->has_role("admin") && security::verify_password(password, existing->password_hash)) {
      return;
    }
    auto user = persistence::user_store::ensure_admin(conn, *email, "Administrator", security::hash_password(password));
    telemetry::log_info("admin account ready", {{"user_id", user.id}});
  }

  telemetry::metrics metrics;
  std::vector<relay_target> relay_targets;  // filled in node::start, before the cluster starts
  persistence::schema_bootstrap bootstrap;
  persistence::pg_pool pool;
  std::unique_ptr<entity_runtime> runtime;  // actor system, snapshot writer, a router per entity kind
  std::unique_ptr<http::entity_bridge> bridge;  // the edge's way to the entities (after the runtime)
  std::unique_ptr<housekeeping> chores;         // expired reservations and keys, cart gauges
  std::unique_ptr<business_analytics> analytics;  // the analytics actor, fed by the outbox (issue 11)
  std::shared_ptr<actors::payment_provider> payments;  // the sandbox provider (checkout sagas hold it too)
  std::shared_ptr<persistence::redis_client> redis;  // null without MERCATO_REDIS_URL
  http::worker_pool workers;                         // Redis round trips and password hashing
  security::jwt_settings jwt;
  http::rate_gate limits;
  std::shared_ptr<http::catalog_cache> cache;
  std::shared_ptr<http::product_lines> lines;  // add-to-cart's product lookups; dropped with the cache's entries
  http::router routes;
  http::ws::hub live;  // live updates: fed by the outbox, read by WebSocket sessions (before the server)
  http::idempotency_gate idempotency;  // Idempotency-Key on every POST, stored in PostgreSQL
  http::pipeline edge;
  http::server server;
};

namespace {

// The demo storefront (web/) at "/": from http.static_dir, or the repository's web/ compiled in. A configured
// directory that cannot be loaded stops start-up; a missing built-in one only means no page.
void add_storefront(http::router& routes, const config::http_settings& http) {
  const bool configured = !http.static_dir.empty();
  const std::string dir = configured ? http.static_dir : std::string{MERCATO_WEB_DIR};
  if (!configured) {
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) {
      telemetry::log_warn("no demo storefront: its directory is missing (set http.static_dir)", {{"dir", dir}});
      return;
    }
  }
  auto site = http::load_static_site(dir);
  http::add_static_routes(routes, site);
  telemetry::log_info("demo storefront", {{"dir", dir}, {"files", site->files.size()}, {"bytes", site->bytes}});
}

http::cluster_status cluster_status_of(entity_runtime& runtime) {
  http::cluster_status out;
  auto* members = runtime.coordinator();
  if (!members) {
    return out;
  }
  const auto view = members->view();
  out.self = view.self;
  out.ready = members->ready();
  out.shard_count = view.shards_total;
  for (const auto& n : view.nodes) {
    http::cluster_node_status s;
    s.id = n.id;
    s.address = n.host + ":" + std::to_string(n.port);
    s.http_port = n.http_port;
    s.state = n.state;
    s.live = n.live;
    s.heartbeat_age_ms = n.heartbeat_age_ms;
    s.active_entities = n.active_entities;
    if (auto it = view.shards_by_node.find(n.id); it != view.shards_by_node.end()) {
      s.shards = it->second;
    }
    s.started_at = n.started_at;
    out.nodes.push_back(std::move(s));
  }
  return out;
}

}  // namespace

node::node(config::settings s) : settings_(std::move(s)) {}

node::~node() { stop(); }

void node::start() {
  parts_ = std::make_unique<parts>(settings_);
  auto& p = *parts_;
  p.bootstrap.start();
  // Subscribers to the committed domain events register here, before the dispatcher starts (the
  // live-updates hub and the checkout's handlers will).
  p.runtime->subscribe("catalog-cache", http::catalog_invalidation_handler(p.workers, p.cache),
                       http::catalog_invalidation_filter());
  p.relay_targets.push_back({http::catalog_invalidation_filter(), http::catalog_invalidation_handler(p.workers, p.cache)});
  // Order confirmations, vendors' new orders, shipping and refund notices (notifications/), stored and logged.
  auto notifier = std::make_shared<notifications::pg_notifier>(settings_.postgres.dsn, std::chrono::milliseconds(2000),
                                                               settings_.postgres.statement_timeout);
  for (auto& sub : notifications::outbox_subscriptions(
           notifier, [notifier](const std::vector<std::string>& ids) { return notifier->vendor_users(ids); })) {
    p.runtime->subscribe(sub.name, std::move(sub.handler), std::move(sub.filter));
  }
  p.analytics = std::make_unique<business_analytics>(p.runtime->system(), p.metrics);
  p.runtime->subscribe("analytics", p.analytics->subscriber(), business_analytics::filter());
  // Live updates over WebSocket: committed stock, price and order changes fanned out to subscribers.
  p.runtime->subscribe("live-updates", p.live.subscriber(), http::ws::hub::filter());
  p.relay_targets.push_back({http::ws::hub::filter(), p.live.subscriber()});
  // The node that runs the outbox passes those events on to the other nodes' hubs and caches (best
  // effort: a hub drops versions older than what it has, a cache entry also expires by its TTL).
  p.runtime->subscribe(
      "cluster-relay",
      [&p](const std::vector<persistence::outbox_event>& events) {
        std::vector<persistence::outbox_event> wanted;
        for (const auto& e : events) {
          for (const auto& t : p.relay_targets) {
            if (t.filter.matches(e)) {
              wanted.push_back(e);
              break;
            }
          }
        }
        p.runtime->relay(wanted);
      });
  p.runtime->start_outbox();
  p.runtime->start_cluster();
  http::add_ops_routes(p.routes, {&p.pool, &p.metrics, [&p] { return p.bootstrap.done(); },
                                  [&p] { return p.runtime->leases_held(); }, settings_.node_id, p.redis, p.cache,
                                  settings_.metrics.token});
  http::add_catalog_routes(p.routes, p.pool, p.cache);
  http::add_catalog_admin_routes(p.routes, p.pool, p.workers, p.cache);
  http::add_product_routes(p.routes, p.pool, p.workers, p.cache);
  // Longer than the writer's commit deadline (5 s), so an answer that is coming is not cut short.
  p.bridge = std::make_unique<http::entity_bridge>(
      p.runtime->system(), [&p](std::string_view kind) { return p.runtime->router(kind); },
      std::chrono::milliseconds(8000));
  http::add_cart_routes(p.routes, p.pool, *p.bridge, parts::pricing(settings_.cart), *p.lines);
  http::add_inventory_routes(p.routes, p.pool, *p.bridge, *p.lines);
  // The sandbox provider answers tok_slow after the provider timeout (so the timeout path is real).
  p.payments = std::make_shared<persistence::sandbox_payments>(
      settings_.postgres.dsn, settings_.checkout.provider_timeout + std::chrono::milliseconds(1000));
  actors::checkout_settings checkout;
  checkout.reservation_ttl = settings_.checkout.reservation_ttl;
  checkout.provider_timeout = settings_.checkout.provider_timeout;
  checkout.crash_after = settings_.checkout.fault_crash_after;  // fault injection (tests only; off by default)
  if (!checkout.crash_after.empty()) {
    telemetry::log_warn("checkout fault injection is on", {{"crash_after", checkout.crash_after}});
  }
  const actors::checkout_context checkout_ctx{[&p](std::string_view kind) { return p.runtime->router(kind); },
                                              p.payments, checkout};
  http::add_order_routes(
      p.routes, std::make_shared<http::order_routes_context>(http::order_routes_context{
                    p.pool, *p.bridge, p.runtime->system(), checkout_ctx,
                    std::make_shared<const actors::pricing_rules>(parts::pricing(settings_.cart)),
                    std::make_shared<actors::sandbox_carrier>()}));
  housekeeping_options chores;
  chores.dsn = settings_.postgres.dsn;
  chores.statement_timeout = settings_.postgres.statement_timeout;
  chores.interval = settings_.housekeeping.interval;
  chores.batch_size = settings_.housekeeping.batch_size;
  chores.abandoned_after = settings_.cart.abandoned_after;
  // A checkout untouched for this long has no saga driving it any more.
  chores.stale_checkout = 3 * (settings_.checkout.provider_timeout + std::chrono::milliseconds(8000));
  chores.resume_checkout = [&p, checkout_ctx](const std::string& order_id) {
    protocol::order_create resume;
    resume.meta.request_id = "recovery-" + order_id;
    resume.meta.source = "saga";
    actors::run_checkout(p.runtime->system(), checkout_ctx, order_id, std::move(resume),
                         [order_id](caf::expected<protocol::order_view> r) {
                           if (r) {
                             telemetry::log_info("unfinished checkout ended",
                                                 {{"order_id", order_id}, {"status", r->status}});
                           } else {
                             telemetry::log_warn("unfinished checkout could not be ended; retried later",
                                                 {{"order_id", order_id}});
                           }
                         });
  };
  chores.resume_operation = [&p, checkout_ctx](const std::string& what, const std::string& id) {
    protocol::command_meta meta;
    meta.request_id = "recovery-" + what + "-" + id;
    auto& sys = p.runtime->system();
    auto log_order = [what, id](caf::expected<protocol::order_view> r) {
      if (r) {
        telemetry::log_info("operation left under way ended", {{"operation", what}, {"id", id}, {"status", r->status}});
      } else {
        telemetry::log_warn("operation left under way could not be ended; retried later",
                            {{"operation", what}, {"id", id}, {"error", caf::to_string(r.error())}});
      }
    };
    if (what == "cancel") {
      actors::run_cancel(sys, checkout_ctx, id, meta, log_order);
    } else if (what == "receive") {
      actors::run_receive_return(sys, checkout_ctx, id, {}, meta, log_order);
    } else {
      actors::run_refund(sys, checkout_ctx, id, {}, 0, {}, meta, [what, id](caf::expected<protocol::payment_view> r) {
        if (r) {
          telemetry::log_info("refunds left under way ended", {{"payment_id", id}, {"status", r->status}});
        } else {
          telemetry::log_warn("refunds left under way could not be ended; retried later",
                              {{"payment_id", id}, {"error", caf::to_string(r.error())}});
        }
      });
    }
  };
  chores.ready = [&p] { return p.bootstrap.done() && p.runtime->leases_held(); };
  chores.alone = [&p] {
    auto* members = p.runtime->coordinator();
    if (!members) {
      return true;
    }
    const auto view = members->view();
    for (const auto& n : view.nodes) {
      if (n.live && n.id != view.self) {
        return false;
      }
    }
    return true;
  };
  p.chores = std::make_unique<housekeeping>(std::move(chores), *p.runtime, &p.metrics);
  p.chores->start();
  auto auth = std::make_shared<http::auth_context>(http::auth_context{p.pool, p.workers, p.jwt, settings_.auth.refresh_token_ttl, nullptr, {}});
  auth->refresh_ttl = settings_.auth.refresh_token_ttl;
  auth->limits = settings_.rate_limits.enabled ? &p.limits : nullptr;
  http::add_auth_routes(p.routes, std::move(auth));
  http::add_notification_routes(p.routes, p.pool);
  http::add_analytics_routes(p.routes, p.runtime->system(), p.analytics->actor());
  http::add_cluster_routes(p.routes, [&p] { return cluster_status_of(*p.runtime); });
  add_storefront(p.routes, settings_.http);
  http::ws::add_live_updates_route(p.routes, p.live, &p.jwt);
  http::ws::session_options live_opts;
  live_opts.max_subscriptions = settings_.websocket.max_subscriptions;
  live_opts.max_message_bytes = settings_.websocket.max_message_bytes;
  live_opts.send_queue_items = settings_.websocket.send_queue_items;
  live_opts.write_timeout = settings_.websocket.write_timeout;
  live_opts.idle_timeout = settings_.websocket.idle_timeout;
  live_opts.handshake_timeout = settings_.websocket.handshake_timeout;
  live_opts.max_bad_messages = settings_.websocket.max_bad_messages;
  p.server.attach_live_updates(p.live, live_opts);
  // The route table, at debug (tests/e2e/openapi_routes_test.cpp checks it against openapi.yaml).
  for (const auto* r : p.routes.routes()) {
    telemetry::log_debug("route",
                         {{"method", std::string(boost::beast::http::to_string(r->method))}, {"pattern", r->pattern}});
  }
  p.server.start();
  const auto& address = settings_.http.bind_address;
  if (!settings_.metrics.token && address != "127.0.0.1" && address != "::1" && address != "localhost") {
    telemetry::log_warn("GET /metrics answers anyone who reaches this address; set metrics.token "
                        "(MERCATO_METRICS_TOKEN) or keep the port private",
                        {{"address", address}});
  }
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
  // Entities next (anything still pending is answered), then the writer drains, then the pool.
  if (p.chores) {
    p.chores->stop();
  }
  if (p.analytics) {
    p.analytics->stop();  // before the runtime waits for every actor
  }
  if (p.bridge) {
    p.bridge->stop();  // its actors too; the server took its last request above
  }
  p.runtime->stop();
  p.limits.stop();  // requests waiting for a rate-limit round trip go on to the workers
  p.workers.stop();
  p.pool.stop();
  p.bootstrap.stop();
  parts_.reset();
}

std::uint16_t node::http_port() const { return parts_ ? parts_->server.port() : 0; }

std::uint16_t node::cluster_port() const { return parts_ ? parts_->runtime->cluster_port() : 0; }

entity_runtime* node::runtime() { return parts_ ? parts_->runtime.get() : nullptr; }

}  // namespace mercato::app
