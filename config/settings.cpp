#include "settings.hpp"

#include "config/network_list.hpp"

#include <CLI/CLI.hpp>
#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>

#include <unistd.h>

extern char** environ;  // POSIX declares it but <unistd.h> only does so with _GNU_SOURCE

namespace mercato::config {

namespace {

// MERCATO_* names that are not settings but must not be reported as unknown.
// MERCATO_SOURCE_DIR is exported by ctest to the script tests, which start mercatod with it still set;
// the others are options of scripts/test and scripts/services that tests inherit.
constexpr std::array<std::string_view, 6> allowed_variables = {
    "MERCATO_CONFIG", "MERCATO_SOURCE_DIR", "MERCATO_SANITIZE", "MERCATO_CAF_PREFIX", "MERCATO_PG_PORT",
    "MERCATO_REDIS_PORT"};
// Prefixes owned by other modules (test harnesses).
constexpr std::array<std::string_view, 1> allowed_prefixes = {"MERCATO_TEST_"};

constexpr std::string_view variable_prefix = "MERCATO_";
constexpr std::array<std::string_view, 7> log_levels = {"trace", "debug", "info", "warn", "error", "critical", "off"};

// Caps durations well below the point where converting milliseconds to nanoseconds for a deadline overflows.
constexpr std::uint64_t max_timeout_ms = 86'400'000;
constexpr std::uint64_t max_threads = 256;
constexpr std::uint64_t max_size = std::numeric_limits<std::size_t>::max();

enum class value_kind {
  identifier,     // node id: shows up in logs, metrics labels and cluster messages
  text,           // non-empty free text
  optional_text,  // empty means "not configured"
  count,          // unsigned integer within [min, max]
  milliseconds,   // unsigned integer within [min, max]
  boolean,
  log_level,
  log_format,
  rate,           // "10/15m" or "off"
  seconds,        // unsigned integer within [min, max]
  tax_rates,      // "US=725,DE=1900"
  directory,      // empty (the default) or an existing directory
  secret,         // empty (not configured) or at least `min` bytes; never echoed in an error
  address_list,   // empty or comma-separated IP addresses and CIDR networks
};

// What survived checking; the field's apply function knows which alternative its kind produces.
using typed_value = std::variant<std::string, std::uint64_t, bool>;

struct field_spec {
  std::string_view key;    // dotted TOML path
  std::string_view env;    // environment variable
  std::string_view flag;   // command-line option, empty when there is none
  std::string_view help;
  value_kind kind;
  std::uint64_t min;
  std::uint64_t max;
  void (*apply)(settings&, const typed_value&);
};

std::uint64_t as_number(const typed_value& v) { return std::get<std::uint64_t>(v); }
const std::string& as_text(const typed_value& v) { return std::get<std::string>(v); }
std::chrono::milliseconds as_ms(const typed_value& v) {
  return std::chrono::milliseconds{static_cast<std::chrono::milliseconds::rep>(as_number(v))};
}

// One table drives the TOML walk, the environment, the command line and the --help text, so a setting
// cannot be reachable from one source and silently missing from another.
const std::array<field_spec, 82> fields = {{
    {"node_id", "MERCATO_NODE_ID", "--node-id", "Node name, unique in the cluster", value_kind::identifier, 0, 0,
     [](settings& s, const typed_value& v) { s.node_id = as_text(v); }},
    {"scheduler_threads", "MERCATO_SCHEDULER_THREADS", "--scheduler-threads", "CAF worker threads (0 = one per core, at least 4)",
     value_kind::count, 0, max_threads,
     [](settings& s, const typed_value& v) { s.scheduler_threads = static_cast<unsigned>(as_number(v)); }},
    {"scheduler_poll_sleep_us", "MERCATO_SCHEDULER_POLL_SLEEP_US", "",
     "Idle CAF worker's sleep between polls of its queue, in microseconds", value_kind::count, 0, 100'000,
     [](settings& s, const typed_value& v) {
       s.scheduler_poll_sleep = std::chrono::microseconds{static_cast<std::int64_t>(as_number(v))};
     }},
    {"rate_limits", "MERCATO_RATE_LIMITS", "--rate-limits", "Rate limiting on|off", value_kind::boolean, 0, 0,
     [](settings& s, const typed_value& v) { s.rate_limits.enabled = std::get<bool>(v); }},
    {"rate_limit.global", "MERCATO_RATE_LIMIT_GLOBAL", "", "", value_kind::rate, 0, 0,
     [](settings& s, const typed_value& v) { s.rate_limits.global = *parse_rate(as_text(v)); }},
    {"rate_limit.login", "MERCATO_RATE_LIMIT_LOGIN", "", "", value_kind::rate, 0, 0,
     [](settings& s, const typed_value& v) { s.rate_limits.login = *parse_rate(as_text(v)); }},
    {"rate_limit.register", "MERCATO_RATE_LIMIT_REGISTER", "", "", value_kind::rate, 0, 0,
     [](settings& s, const typed_value& v) { s.rate_limits.register_account = *parse_rate(as_text(v)); }},
    {"rate_limit.orders", "MERCATO_RATE_LIMIT_ORDERS", "", "", value_kind::rate, 0, 0,
     [](settings& s, const typed_value& v) { s.rate_limits.orders = *parse_rate(as_text(v)); }},
    {"rate_limit.search", "MERCATO_RATE_LIMIT_SEARCH", "", "", value_kind::rate, 0, 0,
     [](settings& s, const typed_value& v) { s.rate_limits.search = *parse_rate(as_text(v)); }},
    {"rate_limit.authenticated", "MERCATO_RATE_LIMIT_AUTHENTICATED", "", "", value_kind::rate, 0, 0,
     [](settings& s, const typed_value& v) { s.rate_limits.authenticated = *parse_rate(as_text(v)); }},
    {"rate_limit.anonymous", "MERCATO_RATE_LIMIT_ANONYMOUS", "", "", value_kind::rate, 0, 0,
     [](settings& s, const typed_value& v) { s.rate_limits.anonymous = *parse_rate(as_text(v)); }},
    {"rate_limit.node_credit", "MERCATO_RATE_LIMIT_NODE_CREDIT", "", "", value_kind::count, 0, 1'000'000,
     [](settings& s, const typed_value& v) { s.rate_limits.node_credit = static_cast<std::uint32_t>(as_number(v)); }},
    {"auth.jwt_secret", "MERCATO_JWT_SECRET", "", "", value_kind::optional_text, 0, 0,
     [](settings& s, const typed_value& v) {
       const auto& t = as_text(v);
       s.auth.jwt_secret = t.empty() ? std::nullopt : std::optional<std::string>{t};
     }},
    {"auth.jwt_kid", "MERCATO_JWT_KID", "", "", value_kind::identifier, 0, 0,
     [](settings& s, const typed_value& v) { s.auth.jwt_kid = as_text(v); }},
    {"auth.issuer", "MERCATO_JWT_ISSUER", "", "", value_kind::text, 0, 0,
     [](settings& s, const typed_value& v) { s.auth.issuer = as_text(v); }},
    {"auth.audience", "MERCATO_JWT_AUDIENCE", "", "", value_kind::text, 0, 0,
     [](settings& s, const typed_value& v) { s.auth.audience = as_text(v); }},
    {"auth.access_token_ttl_s", "MERCATO_ACCESS_TOKEN_TTL_S", "", "", value_kind::seconds, 10, 86'400,
     [](settings& s, const typed_value& v) { s.auth.access_token_ttl = std::chrono::seconds(as_number(v)); }},
    {"auth.refresh_token_ttl_s", "MERCATO_REFRESH_TOKEN_TTL_S", "", "", value_kind::seconds, 60, 400ull * 86'400,
     [](settings& s, const typed_value& v) { s.auth.refresh_token_ttl = std::chrono::seconds(as_number(v)); }},
    {"admin.email", "MERCATO_ADMIN_EMAIL", "", "", value_kind::optional_text, 0, 0,
     [](settings& s, const typed_value& v) {
       const auto& t = as_text(v);
       s.auth.admin_email = t.empty() ? std::nullopt : std::optional<std::string>{t};
     }},
    {"admin.password", "MERCATO_ADMIN_PASSWORD", "", "", value_kind::optional_text, 0, 0,
     [](settings& s, const typed_value& v) {
       const auto& t = as_text(v);
       s.auth.admin_password = t.empty() ? std::nullopt : std::optional<std::string>{t};
     }},
    {"demo", "MERCATO_DEMO", "--demo", "Load the demo catalog when the catalog is empty", value_kind::boolean, 0, 0,
     [](settings& s, const typed_value& v) { s.load_demo_catalog = std::get<bool>(v); }},
    {"http.bind_address", "MERCATO_HTTP_ADDRESS", "--http-address", "HTTP listen address", value_kind::text, 0, 0,
     [](settings& s, const typed_value& v) { s.http.bind_address = as_text(v); }},
    {"http.port", "MERCATO_HTTP_PORT", "--http-port", "HTTP listen port", value_kind::count, 1, 65535,
     [](settings& s, const typed_value& v) { s.http.port = static_cast<std::uint16_t>(as_number(v)); }},
    {"http.threads", "MERCATO_HTTP_THREADS", "--http-threads", "HTTP I/O threads", value_kind::count, 1,
     max_threads, [](settings& s, const typed_value& v) { s.http.threads = static_cast<unsigned>(as_number(v)); }},
    {"http.worker_threads", "MERCATO_HTTP_WORKER_THREADS", "", "", value_kind::count, 1, max_threads,
     [](settings& s, const typed_value& v) { s.http.worker_threads = static_cast<unsigned>(as_number(v)); }},
    {"http.max_body_bytes", "MERCATO_HTTP_MAX_BODY_BYTES", "", "", value_kind::count, 1, max_size,
     [](settings& s, const typed_value& v) { s.http.max_body_bytes = static_cast<std::size_t>(as_number(v)); }},
    {"http.max_header_bytes", "MERCATO_HTTP_MAX_HEADER_BYTES", "", "", value_kind::count, 1, max_size,
     [](settings& s, const typed_value& v) { s.http.max_header_bytes = static_cast<std::size_t>(as_number(v)); }},
    {"http.read_timeout_ms", "MERCATO_HTTP_READ_TIMEOUT_MS", "", "", value_kind::milliseconds, 1, max_timeout_ms,
     [](settings& s, const typed_value& v) { s.http.read_timeout = as_ms(v); }},
    {"http.idle_timeout_ms", "MERCATO_HTTP_IDLE_TIMEOUT_MS", "", "", value_kind::milliseconds, 1, max_timeout_ms,
     [](settings& s, const typed_value& v) { s.http.idle_timeout = as_ms(v); }},
    {"http.shutdown_grace_ms", "MERCATO_HTTP_SHUTDOWN_GRACE_MS", "", "", value_kind::milliseconds, 1,
     max_timeout_ms, [](settings& s, const typed_value& v) { s.http.shutdown_grace = as_ms(v); }},
    {"http.max_connections", "MERCATO_HTTP_MAX_CONNECTIONS", "", "", value_kind::count, 1, 1'000'000,
     [](settings& s, const typed_value& v) { s.http.max_connections = static_cast<std::size_t>(as_number(v)); }},
    {"http.static_dir", "MERCATO_HTTP_STATIC_DIR", "", "", value_kind::directory, 0, 0,
     [](settings& s, const typed_value& v) { s.http.static_dir = as_text(v); }},
    {"http.trusted_proxies", "MERCATO_HTTP_TRUSTED_PROXIES", "", "", value_kind::address_list, 0, 0,
     [](settings& s, const typed_value& v) { s.http.trusted_proxies = as_text(v); }},
    {"postgres.dsn", "MERCATO_PG_DSN", "--pg-dsn", "PostgreSQL connection string", value_kind::text, 0, 0,
     [](settings& s, const typed_value& v) { s.postgres.dsn = as_text(v); }},
    {"postgres.pool_size", "MERCATO_PG_POOL_SIZE", "--pg-pool-size", "PostgreSQL connections", value_kind::count, 1,
     max_threads, [](settings& s, const typed_value& v) { s.postgres.pool_size = static_cast<unsigned>(as_number(v)); }},
    {"postgres.statement_timeout_ms", "MERCATO_PG_STATEMENT_TIMEOUT_MS", "", "", value_kind::milliseconds, 1,
     max_timeout_ms, [](settings& s, const typed_value& v) { s.postgres.statement_timeout = as_ms(v); }},
    {"postgres.queue_limit", "MERCATO_PG_QUEUE_LIMIT", "", "", value_kind::count, 1, max_size,
     [](settings& s, const typed_value& v) { s.postgres.queue_limit = static_cast<std::size_t>(as_number(v)); }},
    {"postgres.writer_linger_us", "MERCATO_PG_WRITER_LINGER_US", "", "", value_kind::count, 0, 100'000,
     [](settings& s, const typed_value& v) {
       s.postgres.writer_linger = std::chrono::microseconds{static_cast<std::int64_t>(as_number(v))};
     }},
    {"outbox.poll_interval_ms", "MERCATO_OUTBOX_POLL_INTERVAL_MS", "", "", value_kind::milliseconds, 1, 60'000,
     [](settings& s, const typed_value& v) { s.outbox.poll_interval = as_ms(v); }},
    {"outbox.min_round_interval_ms", "MERCATO_OUTBOX_MIN_ROUND_INTERVAL_MS", "", "", value_kind::milliseconds, 0, 1000,
     [](settings& s, const typed_value& v) { s.outbox.min_round_interval = as_ms(v); }},
    {"outbox.batch_size", "MERCATO_OUTBOX_BATCH_SIZE", "", "", value_kind::count, 1, 100'000,
     [](settings& s, const typed_value& v) { s.outbox.batch_size = static_cast<std::size_t>(as_number(v)); }},
    {"outbox.retention_s", "MERCATO_OUTBOX_RETENTION_S", "", "", value_kind::seconds, 1, 3650ull * 86'400,
     [](settings& s, const typed_value& v) { s.outbox.retention = std::chrono::seconds(as_number(v)); }},
    {"outbox.retention_interval_s", "MERCATO_OUTBOX_RETENTION_INTERVAL_S", "", "", value_kind::seconds, 1, 86'400,
     [](settings& s, const typed_value& v) { s.outbox.retention_interval = std::chrono::seconds(as_number(v)); }},
    {"outbox.max_attempts", "MERCATO_OUTBOX_MAX_ATTEMPTS", "", "", value_kind::count, 0, 1000,
     [](settings& s, const typed_value& v) { s.outbox.max_attempts = static_cast<int>(as_number(v)); }},
    {"cart.default_tax_bp", "MERCATO_CART_DEFAULT_TAX_BP", "", "", value_kind::count, 0, 10'000,
     [](settings& s, const typed_value& v) { s.cart.default_tax_bp = static_cast<std::uint32_t>(as_number(v)); }},
    {"cart.tax_rates", "MERCATO_CART_TAX_RATES", "", "", value_kind::tax_rates, 0, 0,
     [](settings& s, const typed_value& v) { s.cart.tax_bp_by_country = *parse_tax_rates(as_text(v)); }},
    {"cart.shipping_flat", "MERCATO_CART_SHIPPING_FLAT", "", "", value_kind::count, 0, 100'000'000,
     [](settings& s, const typed_value& v) { s.cart.shipping_flat = static_cast<std::int64_t>(as_number(v)); }},
    {"cart.free_shipping_threshold", "MERCATO_CART_FREE_SHIPPING_THRESHOLD", "", "", value_kind::count, 0,
     1'000'000'000'000ull,
     [](settings& s, const typed_value& v) { s.cart.free_shipping_threshold = static_cast<std::int64_t>(as_number(v)); }},
    {"cart.product_info_ttl_ms", "MERCATO_CART_PRODUCT_INFO_TTL_MS", "", "", value_kind::milliseconds, 0, 60'000,
     [](settings& s, const typed_value& v) { s.cart.product_info_ttl = as_ms(v); }},
    {"cart.abandoned_after_s", "MERCATO_CART_ABANDONED_AFTER_S", "", "", value_kind::seconds, 1, 365ull * 86'400,
     [](settings& s, const typed_value& v) { s.cart.abandoned_after = std::chrono::seconds(as_number(v)); }},
    {"checkout.reservation_ttl_s", "MERCATO_CHECKOUT_RESERVATION_TTL_S", "", "", value_kind::seconds, 1, 86'400,
     [](settings& s, const typed_value& v) { s.checkout.reservation_ttl = std::chrono::seconds(as_number(v)); }},
    {"checkout.provider_timeout_ms", "MERCATO_CHECKOUT_PROVIDER_TIMEOUT_MS", "", "", value_kind::milliseconds, 1,
     300'000, [](settings& s, const typed_value& v) { s.checkout.provider_timeout = as_ms(v); }},
    {"checkout.fault_crash_after", "MERCATO_CHECKOUT_FAULT_CRASH_AFTER", "", "", value_kind::optional_text, 0, 0,
     [](settings& s, const typed_value& v) { s.checkout.fault_crash_after = as_text(v); }},
    {"entities.park_after_ms", "MERCATO_ENTITIES_PARK_AFTER_MS", "", "", value_kind::milliseconds, 0, 3'600'000,
     [](settings& s, const typed_value& v) { s.entities.park_after = as_ms(v); }},
    {"entities.keep_parked_ms", "MERCATO_ENTITIES_KEEP_PARKED_MS", "", "", value_kind::milliseconds, 1'000,
     7ull * 86'400'000, [](settings& s, const typed_value& v) { s.entities.keep_parked = as_ms(v); }},
    {"entities.max_parked", "MERCATO_ENTITIES_MAX_PARKED", "", "", value_kind::count, 1, 100'000'000,
     [](settings& s, const typed_value& v) { s.entities.max_parked = static_cast<std::size_t>(as_number(v)); }},
    {"entities.max_parked_mb", "MERCATO_ENTITIES_MAX_PARKED_MB", "", "", value_kind::count, 1, 1'048'576,
     [](settings& s, const typed_value& v) { s.entities.max_parked_mb = static_cast<std::size_t>(as_number(v)); }},
    {"housekeeping.interval_s", "MERCATO_HOUSEKEEPING_INTERVAL_S", "", "", value_kind::seconds, 1, 86'400,
     [](settings& s, const typed_value& v) { s.housekeeping.interval = std::chrono::seconds(as_number(v)); }},
    {"housekeeping.batch_size", "MERCATO_HOUSEKEEPING_BATCH_SIZE", "", "", value_kind::count, 1, 1'000'000,
     [](settings& s, const typed_value& v) { s.housekeeping.batch_size = static_cast<std::size_t>(as_number(v)); }},
    {"websocket.max_connections", "MERCATO_WS_MAX_CONNECTIONS", "", "", value_kind::count, 1, 1'000'000,
     [](settings& s, const typed_value& v) { s.websocket.max_connections = static_cast<std::size_t>(as_number(v)); }},
    {"websocket.max_subscriptions", "MERCATO_WS_MAX_SUBSCRIPTIONS", "", "", value_kind::count, 1, 100'000,
     [](settings& s, const typed_value& v) { s.websocket.max_subscriptions = static_cast<std::size_t>(as_number(v)); }},
    {"websocket.max_message_bytes", "MERCATO_WS_MAX_MESSAGE_BYTES", "", "", value_kind::count, 64, 16 * 1024 * 1024,
     [](settings& s, const typed_value& v) { s.websocket.max_message_bytes = static_cast<std::size_t>(as_number(v)); }},
    {"websocket.send_queue_items", "MERCATO_WS_SEND_QUEUE_ITEMS", "", "", value_kind::count, 1, 1'000'000,
     [](settings& s, const typed_value& v) { s.websocket.send_queue_items = static_cast<std::size_t>(as_number(v)); }},
    {"websocket.write_timeout_ms", "MERCATO_WS_WRITE_TIMEOUT_MS", "", "", value_kind::milliseconds, 1, max_timeout_ms,
     [](settings& s, const typed_value& v) { s.websocket.write_timeout = as_ms(v); }},
    {"websocket.idle_timeout_ms", "MERCATO_WS_IDLE_TIMEOUT_MS", "", "", value_kind::milliseconds, 2, max_timeout_ms,
     [](settings& s, const typed_value& v) { s.websocket.idle_timeout = as_ms(v); }},
    {"websocket.handshake_timeout_ms", "MERCATO_WS_HANDSHAKE_TIMEOUT_MS", "", "", value_kind::milliseconds, 1,
     max_timeout_ms, [](settings& s, const typed_value& v) { s.websocket.handshake_timeout = as_ms(v); }},
    {"websocket.max_bad_messages", "MERCATO_WS_MAX_BAD_MESSAGES", "", "", value_kind::count, 1, 1'000'000,
     [](settings& s, const typed_value& v) { s.websocket.max_bad_messages = static_cast<std::size_t>(as_number(v)); }},
    {"websocket.max_initial_orders", "MERCATO_WS_MAX_INITIAL_ORDERS", "", "", value_kind::count, 0, 10'000,
     [](settings& s, const typed_value& v) { s.websocket.max_initial_orders = static_cast<std::size_t>(as_number(v)); }},
    {"cluster.host", "MERCATO_CLUSTER_HOST", "--cluster-host", "Cluster gateway address (bound and advertised)",
     value_kind::text, 0, 0, [](settings& s, const typed_value& v) { s.cluster.host = as_text(v); }},
    {"cluster.port", "MERCATO_CLUSTER_PORT", "--cluster-port", "Cluster gateway port (0 = any free port)",
     value_kind::count, 0, 65535,
     [](settings& s, const typed_value& v) { s.cluster.port = static_cast<std::uint16_t>(as_number(v)); }},
    {"cluster.shards", "MERCATO_CLUSTER_SHARDS", "", "", value_kind::count, 1, 4096,
     [](settings& s, const typed_value& v) { s.cluster.shards = static_cast<int>(as_number(v)); }},
    {"cluster.lease_ttl_ms", "MERCATO_CLUSTER_LEASE_TTL_MS", "", "", value_kind::milliseconds, 300, max_timeout_ms,
     [](settings& s, const typed_value& v) { s.cluster.lease_ttl = as_ms(v); }},
    {"cluster.heartbeat_ms", "MERCATO_CLUSTER_HEARTBEAT_MS", "", "", value_kind::milliseconds, 50, max_timeout_ms,
     [](settings& s, const typed_value& v) { s.cluster.heartbeat = as_ms(v); }},
    {"cluster.node_timeout_ms", "MERCATO_CLUSTER_NODE_TIMEOUT_MS", "", "", value_kind::milliseconds, 100,
     max_timeout_ms, [](settings& s, const typed_value& v) { s.cluster.node_timeout = as_ms(v); }},
    {"cluster.tls_certificate", "MERCATO_CLUSTER_TLS_CERTIFICATE", "", "", value_kind::optional_text, 0, 0,
     [](settings& s, const typed_value& v) { s.cluster.tls_certificate = as_text(v); }},
    {"cluster.tls_key", "MERCATO_CLUSTER_TLS_KEY", "", "", value_kind::optional_text, 0, 0,
     [](settings& s, const typed_value& v) { s.cluster.tls_key = as_text(v); }},
    {"cluster.tls_ca", "MERCATO_CLUSTER_TLS_CA", "", "", value_kind::optional_text, 0, 0,
     [](settings& s, const typed_value& v) { s.cluster.tls_ca = as_text(v); }},
    {"redis.url", "MERCATO_REDIS_URL", "--redis-url", "Redis URL (empty = no Redis)", value_kind::optional_text, 0,
     0,
     [](settings& s, const typed_value& v) {
       const auto& url = as_text(v);
       s.redis.url = url.empty() ? std::nullopt : std::optional<std::string>{url};
     }},
    {"redis.key_prefix", "MERCATO_REDIS_KEY_PREFIX", "", "", value_kind::optional_text, 0, 0,
     [](settings& s, const typed_value& v) { s.redis.key_prefix = as_text(v); }},
    {"log.level", "MERCATO_LOG_LEVEL", "--log-level", "trace|debug|info|warn|error|critical|off",
     value_kind::log_level, 0, 0, [](settings& s, const typed_value& v) { s.log.level = as_text(v); }},
    {"log.format", "MERCATO_LOG_FORMAT", "--log-format", "text|json", value_kind::log_format, 0, 0,
     [](settings& s, const typed_value& v) {
       s.log.format = as_text(v) == "json" ? log_format::json : log_format::text;
     }},
    {"metrics.token", "MERCATO_METRICS_TOKEN", "", "", value_kind::secret, 16, 0,
     [](settings& s, const typed_value& v) {
       const auto& t = as_text(v);
       s.metrics.token = t.empty() ? std::nullopt : std::optional<std::string>{t};
     }},
}};

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

// Renders a user-supplied string so that control characters cannot break the one-line error message.
std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(static_cast<unsigned char>(c)));
      out += buf;
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

template <std::size_t N>
std::string join(const std::array<std::string_view, N>& items) {
  std::string out;
  for (auto item : items) {
    if (!out.empty()) out += ", ";
    out += item;
  }
  return out;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// "; did you mean X?" for near misses, because a typo otherwise looks like an unexplained rejection.
template <typename Names>
std::string suggestion(std::string_view wrong, const Names& candidates) {
  std::string_view best;
  std::size_t best_distance = 3;  // more than two edits away is a different word, not a typo
  for (std::string_view candidate : candidates) {
    if (candidate.empty()) continue;
    // The lengths alone bound the distance from below: a long unknown key costs nothing to turn down.
    const auto length_gap = wrong.size() > candidate.size() ? wrong.size() - candidate.size()
                                                            : candidate.size() - wrong.size();
    if (length_gap >= best_distance) continue;
    auto d = edit_distance(wrong, candidate);
    if (d < best_distance) {
      best = candidate;
      best_distance = d;
    }
  }
  return best.empty() ? std::string{} : "; did you mean " + std::string{best} + "?";
}

struct checked {
  std::optional<typed_value> value;
  std::string error;
};

checked fail(std::string message) { return {std::nullopt, std::move(message)}; }

checked check_range(const field_spec& f, std::uint64_t n, bool negative, const std::string& shown) {
  if (!negative && n >= f.min && n <= f.max) return {typed_value{n}, {}};
  if (f.max == max_size) {
    return fail("must be " + (f.min == 1 ? std::string{"greater than 0"} : "at least " + std::to_string(f.min)) +
                ", got " + shown);
  }
  return fail("must be between " + std::to_string(f.min) + " and " + std::to_string(f.max) + ", got " + shown);
}

checked check_text(const field_spec& f, const std::string& text) {
  switch (f.kind) {
    case value_kind::identifier: {
      bool ok = !text.empty() && text.size() <= 64 && std::all_of(text.begin(), text.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
               c == '_' || c == '.';
      });
      if (ok) return {typed_value{text}, {}};
      return fail("must be 1 to 64 letters, digits, '-', '_' or '.', got " + quote(text));
    }
    case value_kind::text:
      if (text.empty()) return fail("must not be empty");
      return {typed_value{text}, {}};
    case value_kind::optional_text:
      return {typed_value{text}, {}};
    case value_kind::secret:
      if (text.empty() || text.size() >= f.min) return {typed_value{text}, {}};
      return fail("must be at least " + std::to_string(f.min) + " bytes (or empty), got " +
                  std::to_string(text.size()));
    case value_kind::address_list: {
      std::string bad;
      if (network_list::parse(text, &bad)) return {typed_value{text}, {}};
      return fail("must be IP addresses or CIDR networks separated by commas, got " + quote(bad));
    }
    case value_kind::directory: {
      if (text.empty()) return {typed_value{text}, {}};
      std::error_code ec;
      if (std::filesystem::is_directory(text, ec)) return {typed_value{text}, {}};
      return fail("must be an existing directory (or empty for the built-in one), got " + quote(text));
    }
    case value_kind::rate:
      if (parse_rate(text)) return {typed_value{text}, {}};
      return fail("must be <limit>/<window> like 10/15m (units ms, s, m, h) or off, got " + quote(text));
    case value_kind::count:
    case value_kind::seconds:
    case value_kind::milliseconds: {
      std::string_view digits = text;
      bool negative = starts_with(digits, "-");
      if (negative) digits.remove_prefix(1);
      std::uint64_t n = 0;
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
      bool all_digits = !digits.empty() && std::all_of(digits.begin(), digits.end(),
                                                       [](char c) { return c >= '0' && c <= '9'; });
      if (!all_digits) return fail("must be an integer, got " + quote(text));
      if (ec == std::errc::result_out_of_range || end != digits.data() + digits.size()) {
        return check_range(f, std::numeric_limits<std::uint64_t>::max(), true, quote(text));
      }
      return check_range(f, n, negative && n != 0, quote(text));
    }
    case value_kind::boolean: {
      std::string lower = text;
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; });
      if (lower == "on" || lower == "true" || lower == "1") return {typed_value{true}, {}};
      if (lower == "off" || lower == "false" || lower == "0") return {typed_value{false}, {}};
      return fail("must be one of on, off, true, false, 1, 0, got " + quote(text));
    }
    case value_kind::log_level:
      if (std::find(log_levels.begin(), log_levels.end(), text) != log_levels.end()) return {typed_value{text}, {}};
      return fail("must be one of " + join(log_levels) + ", got " + quote(text));
    case value_kind::log_format:
      if (text == "text" || text == "json") return {typed_value{text}, {}};
      return fail("must be text or json, got " + quote(text));
    case value_kind::tax_rates:
      if (parse_tax_rates(text)) return {typed_value{text}, {}};
      return fail("must be COUNTRY=basis_points pairs like US=725,DE=1900 (upper-case ISO 3166-1 alpha-2 codes, "
                  "0 to 10000), got " + quote(text));
  }
  return fail("unsupported setting kind");
}

std::string describe(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string: return "a string (" + quote(*node.value<std::string>()) + ")";
    case toml::node_type::integer: return "an integer (" + std::to_string(*node.value<std::int64_t>()) + ")";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return *node.value<bool>() ? "a boolean (true)" : "a boolean (false)";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    case toml::node_type::array: return "an array";
    case toml::node_type::table: return "a table";
    case toml::node_type::none: break;
  }
  return "nothing";
}

std::string at_line(const toml::node& node) {
  auto line = node.source().begin.line;
  return line > 0 ? " (line " + std::to_string(line) + ")" : std::string{};
}

checked check_node(const field_spec& f, const toml::node& node) {
  switch (f.kind) {
    case value_kind::count:
    case value_kind::seconds:
    case value_kind::milliseconds:
      if (auto n = node.value_exact<std::int64_t>()) {
        return check_range(f, static_cast<std::uint64_t>(std::max<std::int64_t>(*n, 0)), *n < 0,
                           std::to_string(*n));
      }
      return fail("expected an integer, got " + describe(node));
    case value_kind::boolean:
      if (auto b = node.value_exact<bool>()) return {typed_value{*b}, {}};
      return fail("expected a boolean (true or false), got " + describe(node));
    case value_kind::identifier:
    case value_kind::text:
    case value_kind::optional_text:
    case value_kind::secret:
    case value_kind::address_list:
    case value_kind::directory:
    case value_kind::log_level:
    case value_kind::log_format:
    case value_kind::rate:
    case value_kind::tax_rates:
      if (auto s = node.value_exact<std::string>()) return check_text(f, *s);
      return fail("expected a string, got " + describe(node));
  }
  return fail("unsupported setting kind");
}

const field_spec* field_by_key(std::string_view key) {
  for (const auto& f : fields)
    if (f.key == key) return &f;
  return nullptr;
}

bool is_section(std::string_view name) {
  return std::any_of(fields.begin(), fields.end(), [&](const field_spec& f) {
    return f.key.size() > name.size() && starts_with(f.key, name) && f.key[name.size()] == '.';
  });
}

std::vector<std::string_view> toml_names() {
  std::vector<std::string_view> names;
  for (const auto& f : fields) {
    names.push_back(f.key);
    if (auto dot = f.key.find('.'); dot != std::string_view::npos) names.push_back(f.key.substr(0, dot));
  }
  return names;
}

class toml_reader {
 public:
  toml_reader(settings& target, std::string source) : target_(target), source_(std::move(source)) {}

  // Tables iterate in key order; errors are handed out in file order, which is how the user reads them.
  std::vector<config_error> errors() const {
    auto sorted = found_;
    std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<config_error> out;
    for (auto& [line, error] : sorted) out.push_back(std::move(error));
    return out;
  }

  // Sections nest one level deep; anything deeper or unlisted is a typo or a setting this build lacks.
  void read(const toml::table& table, std::string_view section = {}) {
    for (const auto& [raw_key, node] : table) {
      std::string_view name = raw_key.str();
      std::string key = section.empty() ? std::string{name} : std::string{section} + "." + std::string{name};
      // A quoted key may contain dots; it must not alias a nested setting.
      bool plain = name.find('.') == std::string_view::npos;
      if (plain && section.empty() && is_section(name)) {
        if (const auto* sub = node.as_table()) {
          read(*sub, name);
        } else {
          report(node, key, "expected a table ([" + key + "]), got " + describe(node));
        }
        continue;
      }
      const field_spec* f = plain ? field_by_key(key) : nullptr;
      if (f == nullptr) {
        const char* what = node.is_table() ? "unknown section" : "unknown key";
        report(node, key, what + suggestion(key, toml_names()));
        continue;
      }
      auto result = check_node(*f, node);
      if (result.value) {
        f->apply(target_, *result.value);
      } else {
        report(node, key, result.error);
      }
    }
  }

 private:
  void report(const toml::node& node, std::string key, std::string message) {
    found_.push_back({node.source().begin.line, {std::move(key), source_, std::move(message) + at_line(node)}});
  }

  settings& target_;
  std::string source_;
  std::vector<std::pair<toml::source_index, config_error>> found_;
};

// Parses TOML text into `target` key by key; every problem is added to `errors` (named by `source`).
void read_toml(std::string_view text, const std::string& source, const std::string& path, settings& target,
               std::vector<config_error>& errors) {
#if TOML_EXCEPTIONS
  toml::table table;
  try {
    table = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    errors.push_back({"", source,
                      "invalid TOML at line " + std::to_string(where.line) + ", column " +
                          std::to_string(where.column) + ": " + std::string{e.description()}});
    return;
  }
#else
  auto parsed = toml::parse(text, path);
  if (!parsed) {
    const auto& where = parsed.error().source().begin;
    errors.push_back({"", source,
                      "invalid TOML at line " + std::to_string(where.line) + ", column " +
                          std::to_string(where.column) + ": " + std::string{parsed.error().description()}});
    return;
  }
  toml::table table = std::move(parsed).table();
#endif
  toml_reader reader{target, source};
  reader.read(table);
  auto found = reader.errors();
  errors.insert(errors.end(), found.begin(), found.end());
}

// Reads the file ourselves rather than with toml::parse_file so that "cannot open" carries the OS reason.
void read_file(const std::string& path, const std::string& named_by, settings& target,
               std::vector<config_error>& errors) {
  auto cannot_read = [&](const std::string& reason) {
    errors.push_back({"config", named_by, "cannot read " + quote(path) + ": " + reason});
  };
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return cannot_read("is a directory");
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int err = errno;
    return cannot_read(err != 0 ? std::generic_category().message(err) : "cannot open file");
  }
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) return cannot_read("read error");

  read_toml(content.str(), "file " + path, path, target, errors);
}

bool allowed_variable(std::string_view name) {
  return std::find(allowed_variables.begin(), allowed_variables.end(), name) != allowed_variables.end() ||
         std::any_of(allowed_prefixes.begin(), allowed_prefixes.end(),
                     [&](std::string_view prefix) { return starts_with(name, prefix); });
}

struct command_line {
  std::vector<std::string> values = std::vector<std::string>(fields.size());
  std::vector<bool> given = std::vector<bool>(fields.size(), false);
  std::string config_path;
  bool config_given = false;
  bool parsed = false;
};

void parse_command_line(int argc, const char* const* argv, command_line& cli, load_result& result,
                        std::vector<config_error>& errors) {
  CLI::App app{"mercato e-commerce node. Settings: defaults < TOML file < MERCATO_* environment < flags.",
               "mercatod"};
  // Unknown arguments are collected and reported one by one instead of CLI11 stopping at the first.
  app.allow_extras(true);
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);

  auto* config_option =
      app.add_option("--config", cli.config_path, "TOML settings file [env MERCATO_CONFIG]")->type_name("PATH");
  std::vector<CLI::Option*> options(fields.size(), nullptr);
  bool demo = false;
  for (std::size_t i = 0; i < fields.size(); ++i) {
    const auto& f = fields[i];
    if (f.flag.empty()) continue;
    std::string help = std::string{f.help} + " [env " + std::string{f.env} + ", file " + std::string{f.key} + "]";
    if (f.key == "demo") {
      options[i] = app.add_flag(std::string{f.flag}, demo, help);
    } else {
      options[i] = app.add_option(std::string{f.flag}, cli.values[i], help);
      options[i]->type_name(f.kind == value_kind::boolean ? "on|off" : "VALUE");
      // CLI11 reads "--redis-url=" as a missing value; for an optional setting it means "switch it off".
      if (f.kind == value_kind::optional_text) options[i]->expected(0, 1);
    }
  }

  // CLI11 wants the arguments reversed and without the program name.
  std::vector<std::string> args;
  for (int i = argc - 1; i >= 1; --i) args.emplace_back(argv[i] != nullptr ? argv[i] : "");
  try {
    app.parse(std::move(args));
  } catch (const CLI::CallForHelp&) {
    result.help_requested = true;
    result.help_text = app.help();
    return;
  } catch (const CLI::CallForAllHelp&) {
    result.help_requested = true;
    result.help_text = app.help("", CLI::AppFormatMode::All);
    return;
  } catch (const CLI::ParseError& e) {
    errors.push_back({"", "command line", e.what()});
    return;
  }

  bool after_unknown_option = false;
  for (const auto& extra : app.remaining()) {
    if (starts_with(extra, "-") && extra != "-") {
      std::string name = extra.substr(0, extra.find('='));
      std::vector<std::string_view> flags{"--config", "--help"};
      for (const auto& f : fields) flags.push_back(f.flag);
      errors.push_back({"", "command line (" + name + ")", "unknown option" + suggestion(name, flags)});
      after_unknown_option = extra.find('=') == std::string::npos;
    } else if (after_unknown_option) {
      after_unknown_option = false;  // most likely the unknown option's value; one error is enough
    } else {
      errors.push_back({"", "command line (" + extra + ")", "unexpected argument"});
    }
  }

  cli.config_given = config_option->count() > 0;
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (options[i] == nullptr || options[i]->count() == 0) continue;
    cli.given[i] = true;
    if (fields[i].key == "demo") cli.values[i] = demo ? "true" : "false";
  }
  cli.parsed = true;
}

// Settings that only make sense together, checked once every source has been applied.
void check_together(const settings& s, std::vector<config_error>& errors) {
  const auto& c = s.cluster;
  // TLS between nodes: all three files or none (caf_openssl would otherwise fall back to an anonymous
  // cipher, or refuse every peer), and each one readable now rather than at the first connection.
  const std::pair<const char*, const std::string*> tls_files[] = {
      {"cluster.tls_certificate", &c.tls_certificate}, {"cluster.tls_key", &c.tls_key}, {"cluster.tls_ca", &c.tls_ca}};
  const bool tls_some = !c.tls_certificate.empty() || !c.tls_key.empty() || !c.tls_ca.empty();
  for (const auto& [key, file] : tls_files) {
    if (file->empty()) {
      if (tls_some) {
        errors.push_back({key, "configuration",
                          "TLS between nodes needs all of cluster.tls_certificate, cluster.tls_key and "
                          "cluster.tls_ca (or none)"});
      }
    } else if (!std::ifstream(*file).good()) {
      errors.push_back({key, "configuration", "cannot read " + quote(*file)});
    }
  }
  if (c.lease_ttl < 3 * c.heartbeat) {
    errors.push_back({"cluster.lease_ttl_ms", "configuration",
                      "must be at least 3 heartbeats (cluster.heartbeat_ms), got " +
                          std::to_string(c.lease_ttl.count()) + " with heartbeats of " +
                          std::to_string(c.heartbeat.count())});
  }
}

void load_into(load_result& result, int argc, const char* const* argv,
               const std::map<std::string, std::string>& env) {
  std::vector<config_error> cli_errors;
  command_line cli;
  parse_command_line(argc, argv, cli, result, cli_errors);
  if (result.help_requested) return;

  settings s;
  std::vector<config_error> file_errors;
  std::vector<config_error> env_errors;

  // Without a parsed command line we cannot know whether --config named another file, so skip the file.
  if (cli.parsed) {
    if (cli.config_given) {
      if (cli.config_path.empty()) {
        file_errors.push_back({"config", "command line (--config)", "must not be empty"});
      } else {
        read_file(cli.config_path, "command line (--config)", s, file_errors);
      }
    } else if (auto it = env.find("MERCATO_CONFIG"); it != env.end() && !it->second.empty()) {
      read_file(it->second, "environment (MERCATO_CONFIG)", s, file_errors);
    }
  }

  std::vector<std::string_view> env_names;
  for (const auto& f : fields) env_names.push_back(f.env);
  for (const auto& [name, text] : env) {
    if (!starts_with(name, variable_prefix) || allowed_variable(name)) continue;
    std::string source = "environment (" + name + ")";
    // By name: C++17 lambdas cannot capture a structured binding (clang refuses, GCC allows it).
    auto f = std::find_if(fields.begin(), fields.end(),
                          [&name = name](const field_spec& spec) { return spec.env == name; });
    if (f == fields.end()) {
      env_errors.push_back({"", source, "unknown variable" + suggestion(name, env_names)});
      continue;
    }
    auto checked_value = check_text(*f, text);
    if (checked_value.value) {
      f->apply(s, *checked_value.value);
    } else {
      env_errors.push_back({std::string{f->key}, source, checked_value.error});
    }
  }

  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (!cli.given[i]) continue;
    const auto& f = fields[i];
    auto checked_value = check_text(f, cli.values[i]);
    if (checked_value.value) {
      f.apply(s, *checked_value.value);
    } else {
      cli_errors.push_back({std::string{f.key}, "command line (" + std::string{f.flag} + ")", checked_value.error});
    }
  }

  // Reported in precedence order so the list reads like the loading did.
  for (auto* part : {&file_errors, &env_errors, &cli_errors})
    result.errors.insert(result.errors.end(), part->begin(), part->end());
  check_together(s, result.errors);
  if (result.errors.empty()) result.value = std::move(s);
}

}  // namespace

std::string config_error::to_string() const {
  std::string out = "invalid configuration: ";
  if (!key.empty()) out += key + " from ";
  out += source + ": " + message;
  return out;
}

load_result load(int argc, const char* const* argv, const std::map<std::string, std::string>& env) {
  load_result result;
  // The contract is "never throws": start-up code reports errors and exits 2, it has no handler to unwind to.
  try {
    load_into(result, argc, argv, env);
  } catch (const std::exception& e) {
    result.value.reset();
    result.errors.push_back({"", "configuration loader", e.what()});
  } catch (...) {
    result.value.reset();
    result.errors.push_back({"", "configuration loader", "unexpected failure"});
  }
  return result;
}

load_result load_toml_text(std::string_view text, const std::string& name) {
  load_result result;
  try {
    settings s;
    read_toml(text, "file " + name, name, s, result.errors);
    check_together(s, result.errors);
    if (result.errors.empty()) result.value = std::move(s);
  } catch (const std::exception& e) {
    result.value.reset();
    result.errors.push_back({"", "configuration loader", e.what()});
  }
  return result;
}

std::map<std::string, std::string> process_environment() {
  std::map<std::string, std::string> env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view line = *entry;
    if (!starts_with(line, variable_prefix)) continue;
    auto eq = line.find('=');
    if (eq == std::string_view::npos) continue;
    env.emplace(std::string{line.substr(0, eq)}, std::string{line.substr(eq + 1)});
  }
  return env;
}

const char* to_string(log_format f) {
  switch (f) {
    case log_format::text: return "text";
    case log_format::json: return "json";
  }
  return "text";
}

std::optional<rate_setting> parse_rate(std::string_view text) {
  if (text == "off" || text == "0") return rate_setting{};
  auto slash = text.find('/');
  if (slash == std::string_view::npos || slash == 0) return std::nullopt;
  std::uint64_t limit = 0;
  auto lim = text.substr(0, slash);
  auto [lend, lec] = std::from_chars(lim.data(), lim.data() + lim.size(), limit);
  if (lec != std::errc{} || lend != lim.data() + lim.size() || limit > 1'000'000'000) return std::nullopt;
  auto win = text.substr(slash + 1);
  std::size_t digits = 0;
  while (digits < win.size() && win[digits] >= '0' && win[digits] <= '9') ++digits;
  std::uint64_t amount = 1;  // "10/m" reads as 10 per minute
  if (digits > 0) {
    auto [wend, wec] = std::from_chars(win.data(), win.data() + digits, amount);
    if (wec != std::errc{} || wend != win.data() + digits || amount == 0 || amount > 366ull * 86'400) {
      return std::nullopt;
    }
  }
  auto unit = win.substr(digits);
  std::uint64_t ms = 0;
  if (unit == "ms") ms = amount;
  else if (unit == "s") ms = amount * 1000;
  else if (unit == "m") ms = amount * 60'000;
  else if (unit == "h") ms = amount * 3'600'000;
  else return std::nullopt;
  if (ms > 366ull * 86'400'000) return std::nullopt;
  if (limit == 0) return rate_setting{};
  return rate_setting{static_cast<std::uint32_t>(limit), std::chrono::milliseconds(static_cast<std::int64_t>(ms))};
}

std::optional<std::map<std::string, std::uint32_t>> parse_tax_rates(std::string_view text) {
  std::map<std::string, std::uint32_t> rates;
  while (!text.empty()) {
    const auto comma = text.find(',');
    auto pair = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
    while (!pair.empty() && pair.back() == ' ') pair.remove_suffix(1);
    const auto eq = pair.find('=');
    if (eq != 2 || !std::all_of(pair.begin(), pair.begin() + 2, [](char c) { return c >= 'A' && c <= 'Z'; })) {
      return std::nullopt;
    }
    const auto value = pair.substr(3);
    std::uint32_t bp = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), bp);
    if (value.empty() || ec != std::errc{} || end != value.data() + value.size() || bp > 10'000) {
      return std::nullopt;
    }
    if (!rates.emplace(std::string(pair.substr(0, 2)), bp).second) {
      return std::nullopt;  // a country named twice is a mistake, not an override
    }
    if (comma != std::string_view::npos && text.empty()) {
      return std::nullopt;  // trailing comma
    }
  }
  return rates;
}

std::string to_string(const rate_setting& r) {
  if (r.limit == 0 || r.window.count() <= 0) return "off";
  auto ms = r.window.count();
  if (ms % 3'600'000 == 0) return std::to_string(r.limit) + "/" + std::to_string(ms / 3'600'000) + "h";
  if (ms % 60'000 == 0) return std::to_string(r.limit) + "/" + std::to_string(ms / 60'000) + "m";
  if (ms % 1000 == 0) return std::to_string(r.limit) + "/" + std::to_string(ms / 1000) + "s";
  return std::to_string(r.limit) + "/" + std::to_string(ms) + "ms";
}

}  // namespace mercato::config
