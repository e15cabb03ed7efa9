#pragma once
// Node settings: defaults < TOML file (--config) < MERCATO_* environment < command-line flags.
// Every value is validated once at start-up; an invalid one is reported with its key and source.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mercato::config {

// How long an idle CAF worker sleeps between polls of its empty queue, in its second ("moderate") phase of
// polling (work-stealing.moderate-sleep-duration). CAF's default is 50 µs; 500 µs gave add-to-cart ~20 %
// more throughput on 2 cores with no worse latency (bench/results.md, 2026-12-01 14:27-14:53). One constant
// for the node's settings and for app::entity_runtime_options, so tests and benchmarks run what nodes run.
inline constexpr std::chrono::microseconds default_scheduler_poll_sleep{500};

// How long a snapshot writer lane waits, after its first queued write, for more writes to share the
// transaction (and its WAL flush). The writer starts at once when its last transaction had a single
// write, so a quiet node does not wait. Under load a lane's batch is mostly what queued during its
// previous commit. 500 µs against the former 2 ms (bench/results.md, 2026-12-02 15:46-16:40): durable
// add-to-cart's closed-loop maximum rose on tmpfs (12,500-13,700/s against 8,400-11,500) and held on the
// disk (10,200-11,400), and at 70 % of it on the disk p99 was 8-11 ms in 3 runs of 4 against 55-81 ms in
// 4 of 4. One constant for the node's settings and for persistence::snapshot_writer_options' users.
inline constexpr std::chrono::microseconds default_writer_linger{500};

enum class log_format { text, json };

struct http_settings {
  std::string bind_address = "127.0.0.1";
  std::uint16_t port = 8080;
  unsigned threads = 1;                        // Asio io_context threads
  unsigned worker_threads = 4;                 // blocking non-database work: Redis, password hashing
  std::size_t max_body_bytes = 1024 * 1024;    // larger bodies -> 413
  std::size_t max_header_bytes = 16 * 1024;
  std::chrono::milliseconds read_timeout{10'000};
  std::chrono::milliseconds idle_timeout{60'000};
  std::chrono::milliseconds shutdown_grace{10'000};  // in-flight requests get this long on SIGTERM
  std::size_t max_connections = 10'000;        // open HTTP connections per node; more are answered 503 and closed
  // The demo storefront's files (index.html, assets/...), read once at start-up and served at "/".
  // Empty: the repository's web/ directory, compiled in (no page when it is not there).
  std::string static_dir;
  // Reverse proxies whose X-Forwarded-For is believed (http/client_address.hpp): addresses and CIDR
  // networks, comma-separated. Empty: none; the client is the TCP peer.
  std::string trusted_proxies;
};

struct postgres_settings {
  std::string dsn = "postgresql://mercato@127.0.0.1:5432/mercato";
  unsigned pool_size = 4;                       // dedicated blocking-I/O threads, one connection each
  std::chrono::milliseconds statement_timeout{5'000};
  std::size_t queue_limit = 10'000;             // jobs waiting for a connection before 503
  std::chrono::microseconds writer_linger = default_writer_linger;  // snapshot writer: wait for a batch
};

struct redis_settings {
  std::optional<std::string> url;               // empty: no Redis, L1 cache and local counters only
  std::string key_prefix;                       // before every key (several deployments, one Redis)
};

// "limit per window"; limit 0 switches the rule off.
struct rate_setting {
  std::uint32_t limit = 0;
  std::chrono::milliseconds window{0};
  bool operator==(const rate_setting& o) const { return limit == o.limit && window == o.window; }
};

// Seed "rateLimitConfig": global 1000/15m, login 10/15m, register 5/h, orders 100/15m, search 500/15m,
// per caller: authenticated 2000/15m, anonymous 500/15m. Keyed by client IP, or by user when signed in.
struct rate_limit_settings {
  bool enabled = true;                          // MERCATO_RATE_LIMITS=off for load tests and benchmarks
  rate_setting global{1000, std::chrono::minutes(15)};
  rate_setting login{10, std::chrono::minutes(15)};
  rate_setting register_account{5, std::chrono::hours(1)};
  rate_setting orders{100, std::chrono::minutes(15)};
  rate_setting search{500, std::chrono::minutes(15)};
  rate_setting authenticated{2000, std::chrono::minutes(15)};
  rate_setting anonymous{500, std::chrono::minutes(15)};
  // The most tokens of one budget and key a node takes from Redis ahead of use (the overshoot bound is
  // nodes x min(node_credit, limit / 64), docs/architecture.md); 0: every request is one Redis round trip.
  std::uint32_t node_credit = 1000;
};

struct auth_settings {
  std::optional<std::string> jwt_secret;        // HS256 key, >= 32 bytes; unset: random per process (one node only)
  std::string jwt_kid = "mercato-1";
  std::string issuer = "mercato";
  std::string audience = "mercato-api";
  std::chrono::seconds access_token_ttl{15 * 60};
  std::chrono::seconds refresh_token_ttl{30 * 24 * 3600};
  std::optional<std::string> admin_email;       // initial admin, created at start when missing
  std::optional<std::string> admin_password;
};

// The outbox dispatcher (persistence/outbox_dispatcher): delivery of committed domain events.
struct outbox_settings {
  std::chrono::milliseconds poll_interval{100};  // look for new events this often (commits also wake it)
  std::chrono::milliseconds min_round_interval{20};  // a drained round is followed no sooner than this
  std::size_t batch_size = 500;                  // events delivered and marked per round
  std::chrono::seconds retention{7 * 24 * 3600}; // dispatched events are deleted after this long
  std::chrono::seconds retention_interval{60};   // how often the retention sweep runs
  int max_attempts = 5;                          // a subscriber's tries before its events are parked; 0: never
};

// Cart totals (actors/cart/cart_pricing): all money in integer minor units, tax in basis points.
struct cart_settings {
  std::uint32_t default_tax_bp = 0;                        // until the cart's country is known
  std::map<std::string, std::uint32_t> tax_bp_by_country;  // ISO 3166-1 alpha-2 -> basis points
  std::int64_t shipping_flat = 499;                        // per cart with items ...
  std::int64_t free_shipping_threshold = 5000;             // ... unless the subtotal reaches this
  std::chrono::seconds abandoned_after{3600};              // items, no change and no order this long: abandoned
  // How long add-to-cart may use a product's price, status and available stock read earlier (each
  // node's own changes and the committed events drop it sooner); 0: read PostgreSQL for every add.
  std::chrono::milliseconds product_info_ttl{1000};
};

// Checkout and payments (actors/order/checkout_saga, the sandbox provider).
struct checkout_settings {
  std::chrono::seconds reservation_ttl{15 * 60};       // stock held for a checkout at most this long
  std::chrono::milliseconds provider_timeout{5000};    // per payment provider call
  // Fault injection for the crash tests, empty (off) by default: the node kills itself (SIGKILL) right
  // after this checkout step is committed: create, reserve, authorize, capture, commit, paid.
  std::string fault_crash_after;
};

// Entities in memory (supervisors/entity_host). An entity quiet for park_after stops its actor and
// keeps only its committed state (a few hundred bytes, no database read to come back); a parked state
// is dropped after keep_parked, or earlier, least recently used first, while the node holds more than
// max_parked of one kind or more than max_parked_mb of their memory. 0 for park_after: no parking (an
// actor per entity until it passivates).
struct entity_settings {
  std::chrono::milliseconds park_after{5'000};
  std::chrono::milliseconds keep_parked{30 * 60'000};
  std::size_t max_parked = 1'000'000;  // per kind and node; max_parked_mb is usually reached first
  std::size_t max_parked_mb = 64;      // per kind and node: the memory parked states may take (MiB)
};

// Periodic housekeeping (app/housekeeping): expired reservations, idempotency keys, business gauges.
struct housekeeping_settings {
  std::chrono::seconds interval{30};
  std::size_t batch_size = 1000;                            // rows deleted / entities nudged per round
};

// The scrape endpoint. With a token, GET /metrics answers only "Authorization: Bearer <token>" (Prometheus:
// `authorization: { credentials_file: ... }`), so a node whose HTTP port is reachable from outside does not
// publish its business figures and latencies to anyone; without one it is open, as for a loopback-only node.
struct metrics_settings {
  std::optional<std::string> token;             // >= 16 bytes when set
};

struct log_settings {
  std::string level = "info";                   // trace, debug, info, warn, error, critical, off
  log_format format = log_format::text;
};

// Live updates over WebSocket (GET /api/v1/ws).
struct websocket_settings {
  std::size_t max_connections = 10'000;           // per node; more upgrades get 503
  std::size_t max_subscriptions = 100;            // stock and price items per connection
  std::size_t max_message_bytes = 16 * 1024;      // a larger client message closes the connection (1009)
  std::size_t send_queue_items = 256;             // messages waiting for a slow client before it is closed (1008)
  std::chrono::milliseconds write_timeout{10'000};   // a write stuck this long: the client stopped reading (1008)
  std::chrono::milliseconds idle_timeout{60'000};    // nothing from the client this long (pinged at half): closed
  std::chrono::milliseconds handshake_timeout{10'000};  // opening and closing handshakes
  std::size_t max_bad_messages = 20;              // error answers per 10 s before the connection is closed (1008)
  std::size_t max_initial_orders = 50;            // current orders sent on subscribe (newest first)
};

// Cluster membership (cluster/): every node, even alone, registers in PostgreSQL and holds leases.
struct cluster_settings {
  std::string host = "127.0.0.1";                  // the gateway's address (bound and advertised)
  std::uint16_t port = 0;                          // its port; 0 = any free port
  int shards = 64;                                 // per entity kind; the same on every node
  std::chrono::milliseconds lease_ttl{10'000};     // a dead node's shards move after this
  std::chrono::milliseconds heartbeat{1'000};      // membership heartbeat and lease renewal
  std::chrono::milliseconds node_timeout{5'000};   // a node without a heartbeat this long is down
  // TLS between nodes: all three PEM files, or none (plain TCP: keep the cluster port private).
  std::string tls_certificate;
  std::string tls_key;
  std::string tls_ca;
};

struct settings {
  std::string node_id = "node-1";
  unsigned scheduler_threads = 0;               // CAF workers; 0 = one per core, at least 4 (CAF's default)
  std::chrono::microseconds scheduler_poll_sleep = default_scheduler_poll_sleep;
  http_settings http;
  postgres_settings postgres;
  redis_settings redis;
  log_settings log;
  metrics_settings metrics;
  rate_limit_settings rate_limits;
  auth_settings auth;
  outbox_settings outbox;
  cart_settings cart;
  checkout_settings checkout;
  entity_settings entities;
  housekeeping_settings housekeeping;
  websocket_settings websocket;
  cluster_settings cluster;
  bool load_demo_catalog = false;               // --demo: load the demo catalog when the catalog is empty
};

// Where a value came from, for error messages: "file mercato.toml", "environment", "command line", "default".
struct config_error {
  std::string key;      // e.g. "http.port"
  std::string source;   // e.g. "environment (MERCATO_HTTP_PORT)"
  std::string message;  // e.g. "must be between 1 and 65535, got 70000"
  std::string to_string() const;
};

struct load_result {
  std::optional<settings> value;
  std::vector<config_error> errors;
  bool help_requested = false;   // --help printed; caller exits 0
  std::string help_text;
};

// Loads settings from argv and an environment map (tests pass their own environment).
load_result load(int argc, const char* const* argv, const std::map<std::string, std::string>& env);

// The settings a TOML file's text gives on top of the defaults, with the same checks as `load` (no command
// line, no environment, no file access): what the loader makes of a file, for tests and the fuzz target.
load_result load_toml_text(std::string_view text, const std::string& name);

// The process environment as a map (only MERCATO_* variables).
std::map<std::string, std::string> process_environment();

const char* to_string(log_format f);

// "10/15m", "5/1h", "500/900s", "0" or "off" (rule off). Units: ms, s, m, h.
std::optional<rate_setting> parse_rate(std::string_view text);
std::string to_string(const rate_setting& r);

// "US=725,DE=1900": ISO 3166-1 alpha-2 country codes (upper case) to basis points (0..10000); "" is none.
std::optional<std::map<std::string, std::uint32_t>> parse_tax_rates(std::string_view text);

}  // namespace mercato::config
