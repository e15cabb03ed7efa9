#include "config/settings.hpp"

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

#include <unistd.h>

namespace cfg = mercato::config;
namespace fs = std::filesystem;

namespace {

using env_map = std::map<std::string, std::string>;

cfg::load_result run(std::vector<std::string> args, const env_map& env = {}) {
  args.insert(args.begin(), "mercatod");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return cfg::load(static_cast<int>(argv.size()), argv.data(), env);
}

// Each test case gets its own directory so cases never see each other's files.
class temp_dir {
 public:
  temp_dir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            ("mercato_config_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path_);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  std::string write(const std::string& name, const std::string& content) const {
    auto file = path_ / name;
    std::ofstream{file} << content;
    return file.string();
  }
  std::string path(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

bool same(const cfg::settings& a, const cfg::settings& b) {
  return a.node_id == b.node_id && a.scheduler_threads == b.scheduler_threads &&
         a.scheduler_poll_sleep == b.scheduler_poll_sleep &&
         a.http.bind_address == b.http.bind_address && a.http.port == b.http.port &&
         a.http.threads == b.http.threads && a.http.max_body_bytes == b.http.max_body_bytes &&
         a.http.max_header_bytes == b.http.max_header_bytes && a.http.read_timeout == b.http.read_timeout &&
         a.http.idle_timeout == b.http.idle_timeout && a.http.shutdown_grace == b.http.shutdown_grace &&
         a.http.static_dir == b.http.static_dir && a.http.trusted_proxies == b.http.trusted_proxies &&
         a.postgres.dsn == b.postgres.dsn && a.postgres.pool_size == b.postgres.pool_size &&
         a.postgres.statement_timeout == b.postgres.statement_timeout &&
         a.postgres.queue_limit == b.postgres.queue_limit && a.postgres.writer_linger == b.postgres.writer_linger &&
         a.redis.url == b.redis.url &&
         a.log.level == b.log.level && a.log.format == b.log.format && a.metrics.token == b.metrics.token &&
         a.rate_limits.enabled == b.rate_limits.enabled && a.rate_limits.login == b.rate_limits.login &&
         a.rate_limits.node_credit == b.rate_limits.node_credit &&
         a.load_demo_catalog == b.load_demo_catalog && a.outbox.poll_interval == b.outbox.poll_interval &&
         a.outbox.min_round_interval == b.outbox.min_round_interval &&
         a.outbox.batch_size == b.outbox.batch_size && a.outbox.retention == b.outbox.retention &&
         a.outbox.retention_interval == b.outbox.retention_interval && a.outbox.max_attempts == b.outbox.max_attempts &&
         a.cart.default_tax_bp == b.cart.default_tax_bp && a.cart.tax_bp_by_country == b.cart.tax_bp_by_country &&
         a.cart.shipping_flat == b.cart.shipping_flat &&
         a.cart.free_shipping_threshold == b.cart.free_shipping_threshold &&
         a.cart.abandoned_after == b.cart.abandoned_after && a.housekeeping.interval == b.housekeeping.interval &&
         a.housekeeping.batch_size == b.housekeeping.batch_size &&
         a.entities.park_after == b.entities.park_after && a.entities.keep_parked == b.entities.keep_parked &&
         a.entities.max_parked == b.entities.max_parked && a.entities.max_parked_mb == b.entities.max_parked_mb &&
         a.checkout.reservation_ttl == b.checkout.reservation_ttl &&
         a.checkout.provider_timeout == b.checkout.provider_timeout &&
         a.checkout.fault_crash_after == b.checkout.fault_crash_after &&
         a.websocket.max_connections == b.websocket.max_connections &&
         a.websocket.max_subscriptions == b.websocket.max_subscriptions &&
         a.websocket.max_message_bytes == b.websocket.max_message_bytes &&
         a.websocket.send_queue_items == b.websocket.send_queue_items &&
         a.websocket.write_timeout == b.websocket.write_timeout && a.websocket.idle_timeout == b.websocket.idle_timeout &&
         a.websocket.handshake_timeout == b.websocket.handshake_timeout &&
         a.websocket.max_bad_messages == b.websocket.max_bad_messages &&
         a.websocket.max_initial_orders == b.websocket.max_initial_orders;
}

std::string all_errors(const cfg::load_result& r) {
  std::string out;
  for (const auto& e : r.errors) out += e.to_string() + "\n";
  return out;
}

// The one error of a result that failed for a single reason.
cfg::config_error only_error(const cfg::load_result& r) {
  INFO(all_errors(r));
  REQUIRE(r.errors.size() == 1);
  CHECK_FALSE(r.value.has_value());
  return r.errors.front();
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

cfg::settings loaded(const cfg::load_result& r) {
  INFO(all_errors(r));
  REQUIRE(r.errors.empty());
  REQUIRE(r.value.has_value());
  return *r.value;
}

}  // namespace

TEST_CASE("no file, environment or flags gives the documented defaults") {
  const auto s = loaded(run({}));
  CHECK(same(s, cfg::settings{}));
  CHECK(s.node_id == "node-1");
  CHECK(s.scheduler_threads == 0);
  CHECK(s.scheduler_poll_sleep == std::chrono::microseconds{500});
  CHECK(s.http.bind_address == "127.0.0.1");
  CHECK(s.http.port == 8080);
  CHECK(s.http.threads == 1);
  CHECK(s.http.max_body_bytes == 1024 * 1024);
  CHECK(s.http.static_dir.empty());
  CHECK(s.postgres.pool_size == 4);
  CHECK(s.postgres.writer_linger == std::chrono::microseconds{500});
  CHECK_FALSE(s.redis.url.has_value());
  CHECK(s.log.level == "info");
  CHECK(s.log.format == cfg::log_format::text);
  CHECK(s.rate_limits.enabled);
  CHECK_FALSE(s.load_demo_catalog);
}

TEST_CASE("mercato.example.toml is valid and spells out exactly the defaults") {
  const std::string example = std::string{MERCATO_SOURCE_DIR} + "/mercato.example.toml";
  const auto s = loaded(run({"--config", example}));
  CHECK(same(s, cfg::settings{}));
}

TEST_CASE("every key is read from the file") {
  temp_dir dir;
  const auto web = dir.path("web");
  fs::create_directories(web);
  auto file = dir.write("all.toml", R"(
node_id = "eu-2"
scheduler_threads = 3
scheduler_poll_sleep_us = 300
rate_limits = false
demo = true
[http]
bind_address = "0.0.0.0"
port = 9090
threads = 4
max_body_bytes = 2048
max_header_bytes = 512
read_timeout_ms = 11
idle_timeout_ms = 12
shutdown_grace_ms = 13
static_dir = ")" + web + R"("
[postgres]
dsn = "postgresql://x@db/y"
pool_size = 8
statement_timeout_ms = 14
queue_limit = 15
writer_linger_us = 16
[redis]
url = "redis://cache:6379"
[log]
level = "debug"
format = "json"
[cart]
default_tax_bp = 800
tax_rates = "US=725, DE=1900"
shipping_flat = 0
free_shipping_threshold = 10000
abandoned_after_s = 120
[housekeeping]
interval_s = 5
batch_size = 50
[entities]
park_after_ms = 0
keep_parked_ms = 60000
max_parked = 77
max_parked_mb = 78
[websocket]
max_connections = 31
max_subscriptions = 32
max_message_bytes = 333
send_queue_items = 34
write_timeout_ms = 35
idle_timeout_ms = 36
handshake_timeout_ms = 37
max_bad_messages = 38
max_initial_orders = 39
)");
  const auto s = loaded(run({"--config", file}));
  CHECK(s.node_id == "eu-2");
  CHECK(s.scheduler_threads == 3);
  CHECK(s.scheduler_poll_sleep == std::chrono::microseconds{300});
  CHECK_FALSE(s.rate_limits.enabled);
  CHECK(s.load_demo_catalog);
  CHECK(s.http.bind_address == "0.0.0.0");
  CHECK(s.http.port == 9090);
  CHECK(s.http.threads == 4);
  CHECK(s.http.max_body_bytes == 2048);
  CHECK(s.http.max_header_bytes == 512);
  CHECK(s.http.read_timeout == std::chrono::milliseconds{11});
  CHECK(s.http.idle_timeout == std::chrono::milliseconds{12});
  CHECK(s.http.shutdown_grace == std::chrono::milliseconds{13});
  CHECK(s.http.static_dir == web);
  CHECK(s.postgres.dsn == "postgresql://x@db/y");
  CHECK(s.postgres.pool_size == 8);
  CHECK(s.postgres.statement_timeout == std::chrono::milliseconds{14});
  CHECK(s.postgres.queue_limit == 15);
  CHECK(s.postgres.writer_linger == std::chrono::microseconds{16});
  CHECK(s.redis.url == std::optional<std::string>{"redis://cache:6379"});
  CHECK(s.log.level == "debug");
  CHECK(s.log.format == cfg::log_format::json);
  CHECK(s.cart.default_tax_bp == 800);
  CHECK(s.cart.tax_bp_by_country == std::map<std::string, std::uint32_t>{{"DE", 1900}, {"US", 725}});
  CHECK(s.cart.shipping_flat == 0);
  CHECK(s.cart.free_shipping_threshold == 10000);
  CHECK(s.cart.abandoned_after == std::chrono::seconds{120});
  CHECK(s.housekeeping.interval == std::chrono::seconds{5});
  CHECK(s.housekeeping.batch_size == 50);
  CHECK(s.entities.park_after == std::chrono::milliseconds{0});
  CHECK(s.entities.keep_parked == std::chrono::milliseconds{60000});
  CHECK(s.entities.max_parked == 77);
  CHECK(s.entities.max_parked_mb == 78);
  CHECK(s.websocket.max_connections == 31);
  CHECK(s.websocket.max_subscriptions == 32);
  CHECK(s.websocket.max_message_bytes == 333);
  CHECK(s.websocket.send_queue_items == 34);
  CHECK(s.websocket.write_timeout == std::chrono::milliseconds{35});
  CHECK(s.websocket.idle_timeout == std::chrono::milliseconds{36});
  CHECK(s.websocket.handshake_timeout == std::chrono::milliseconds{37});
  CHECK(s.websocket.max_bad_messages == 38);
  CHECK(s.websocket.max_initial_orders == 39);
}

TEST_CASE("tax rates: COUNTRY=basis points pairs; anything else is refused with the key") {
  CHECK(cfg::parse_tax_rates("") == std::map<std::string, std::uint32_t>{});
  CHECK(cfg::parse_tax_rates("FR=2000") == std::map<std::string, std::uint32_t>{{"FR", 2000}});
  CHECK_FALSE(cfg::parse_tax_rates("fr=2000"));      // lower case
  CHECK_FALSE(cfg::parse_tax_rates("FRA=2000"));     // alpha-3
  CHECK_FALSE(cfg::parse_tax_rates("FR=10001"));     // above 100 %
  CHECK_FALSE(cfg::parse_tax_rates("FR=-1"));
  CHECK_FALSE(cfg::parse_tax_rates("FR=20%"));
  CHECK_FALSE(cfg::parse_tax_rates("FR=1,FR=2"));    // twice
  CHECK_FALSE(cfg::parse_tax_rates("FR=1,"));        // trailing comma
  const auto e = only_error(run({}, {{"MERCATO_CART_TAX_RATES", "US:725"}}));
  CHECK(e.key == "cart.tax_rates");
  CHECK(contains(e.message, "US=725,DE=1900"));
}

TEST_CASE("every MERCATO_* variable is read from the environment") {
  const auto s = loaded(run({}, {{"MERCATO_NODE_ID", "n7"},
                                  {"MERCATO_SCHEDULER_THREADS", "2"},
                                  {"MERCATO_SCHEDULER_POLL_SLEEP_US", "0"},
                                  {"MERCATO_RATE_LIMITS", "off"},
                                  {"MERCATO_DEMO", "1"},
                                  {"MERCATO_HTTP_ADDRESS", "::1"},
                                  {"MERCATO_HTTP_PORT", "8081"},
                                  {"MERCATO_HTTP_THREADS", "2"},
                                  {"MERCATO_HTTP_MAX_BODY_BYTES", "100"},
                                  {"MERCATO_HTTP_MAX_HEADER_BYTES", "200"},
                                  {"MERCATO_HTTP_READ_TIMEOUT_MS", "21"},
                                  {"MERCATO_HTTP_IDLE_TIMEOUT_MS", "22"},
                                  {"MERCATO_HTTP_SHUTDOWN_GRACE_MS", "23"},
                                  {"MERCATO_PG_DSN", "postgresql://env/db"},
                                  {"MERCATO_PG_POOL_SIZE", "3"},
                                  {"MERCATO_PG_STATEMENT_TIMEOUT_MS", "24"},
                                  {"MERCATO_PG_QUEUE_LIMIT", "25"},
                                  {"MERCATO_PG_WRITER_LINGER_US", "0"},
                                  {"MERCATO_REDIS_URL", "redis://r"},
                                  {"MERCATO_LOG_LEVEL", "warn"},
                                  {"MERCATO_LOG_FORMAT", "json"},
                                  {"MERCATO_CART_DEFAULT_TAX_BP", "1"},
                                  {"MERCATO_CART_TAX_RATES", "GB=2000"},
                                  {"MERCATO_CART_SHIPPING_FLAT", "2"},
                                  {"MERCATO_CART_FREE_SHIPPING_THRESHOLD", "3"},
                                  {"MERCATO_CART_ABANDONED_AFTER_S", "4"},
                                  {"MERCATO_HOUSEKEEPING_INTERVAL_S", "5"},
                                  {"MERCATO_HOUSEKEEPING_BATCH_SIZE", "6"},
                                  {"MERCATO_ENTITIES_PARK_AFTER_MS", "7"},
                                  {"MERCATO_ENTITIES_KEEP_PARKED_MS", "8000"},
                                  {"MERCATO_ENTITIES_MAX_PARKED", "9"},
                                  {"MERCATO_ENTITIES_MAX_PARKED_MB", "10"},
                                  {"MERCATO_WS_MAX_CONNECTIONS", "41"},
                                  {"MERCATO_WS_MAX_SUBSCRIPTIONS", "42"},
                                  {"MERCATO_WS_MAX_MESSAGE_BYTES", "430"},
                                  {"MERCATO_WS_SEND_QUEUE_ITEMS", "44"},
                                  {"MERCATO_WS_WRITE_TIMEOUT_MS", "45"},
                                  {"MERCATO_WS_IDLE_TIMEOUT_MS", "46"},
                                  {"MERCATO_WS_HANDSHAKE_TIMEOUT_MS", "47"},
                                  {"MERCATO_WS_MAX_BAD_MESSAGES", "48"},
                                  {"MERCATO_WS_MAX_INITIAL_ORDERS", "49"}}));
  CHECK(s.node_id == "n7");
  CHECK(s.scheduler_threads == 2);
  CHECK(s.scheduler_poll_sleep == std::chrono::microseconds{0});
  CHECK_FALSE(s.rate_limits.enabled);
  CHECK(s.load_demo_catalog);
  CHECK(s.http.bind_address == "::1");
  CHECK(s.http.port == 8081);
  CHECK(s.http.threads == 2);
  CHECK(s.http.max_body_bytes == 100);
  CHECK(s.http.max_header_bytes == 200);
  CHECK(s.http.read_timeout == std::chrono::milliseconds{21});
  CHECK(s.http.idle_timeout == std::chrono::milliseconds{22});
  CHECK(s.http.shutdown_grace == std::chrono::milliseconds{23});
  CHECK(s.postgres.dsn == "postgresql://env/db");
  CHECK(s.postgres.pool_size == 3);
  CHECK(s.postgres.statement_timeout == std::chrono::milliseconds{24});
  CHECK(s.postgres.queue_limit == 25);
  CHECK(s.postgres.writer_linger == std::chrono::microseconds{0});
  CHECK(s.redis.url == std::optional<std::string>{"redis://r"});
  CHECK(s.log.level == "warn");
  CHECK(s.log.format == cfg::log_format::json);
  CHECK(s.cart.default_tax_bp == 1);
  CHECK(s.cart.tax_bp_by_country == std::map<std::string, std::uint32_t>{{"GB", 2000}});
  CHECK(s.cart.shipping_flat == 2);
  CHECK(s.cart.free_shipping_threshold == 3);
  CHECK(s.cart.abandoned_after == std::chrono::seconds{4});
  CHECK(s.housekeeping.interval == std::chrono::seconds{5});
  CHECK(s.housekeeping.batch_size == 6);
  CHECK(s.entities.park_after == std::chrono::milliseconds{7});
  CHECK(s.entities.keep_parked == std::chrono::milliseconds{8000});
  CHECK(s.entities.max_parked == 9);
  CHECK(s.entities.max_parked_mb == 10);
  CHECK(s.websocket.max_connections == 41);
  CHECK(s.websocket.max_subscriptions == 42);
  CHECK(s.websocket.max_message_bytes == 430);
  CHECK(s.websocket.send_queue_items == 44);
  CHECK(s.websocket.write_timeout == std::chrono::milliseconds{45});
  CHECK(s.websocket.idle_timeout == std::chrono::milliseconds{46});
  CHECK(s.websocket.handshake_timeout == std::chrono::milliseconds{47});
  CHECK(s.websocket.max_bad_messages == 48);
  CHECK(s.websocket.max_initial_orders == 49);
}

TEST_CASE("every flag is read from the command line") {
  const auto s = loaded(run({"--node-id", "cli", "--scheduler-threads", "5", "--http-address", "10.0.0.1",
                              "--http-port=8082", "--http-threads", "3", "--pg-dsn", "postgresql://cli/db",
                              "--pg-pool-size", "6", "--redis-url", "redis://cli", "--log-level", "error",
                              "--log-format", "json", "--demo", "--rate-limits", "off"}));
  CHECK(s.node_id == "cli");
  CHECK(s.scheduler_threads == 5);
  CHECK(s.http.bind_address == "10.0.0.1");
  CHECK(s.http.port == 8082);
  CHECK(s.http.threads == 3);
  CHECK(s.postgres.dsn == "postgresql://cli/db");
  CHECK(s.postgres.pool_size == 6);
  CHECK(s.redis.url == std::optional<std::string>{"redis://cli"});
  CHECK(s.log.level == "error");
  CHECK(s.log.format == cfg::log_format::json);
  CHECK(s.load_demo_catalog);
  CHECK_FALSE(s.rate_limits.enabled);
}

TEST_CASE("file < environment < command line for the same key") {
  temp_dir dir;
  auto file = dir.write("p.toml", "[http]\nport = 1001\n[log]\nlevel = \"debug\"\n");
  env_map env{{"MERCATO_HTTP_PORT", "1002"}, {"MERCATO_LOG_LEVEL", "warn"}};

  CHECK(loaded(run({"--config", file})).http.port == 1001);
  CHECK(loaded(run({"--config", file}, env)).http.port == 1002);
  CHECK(loaded(run({"--config", file, "--http-port", "1003"}, env)).http.port == 1003);

  CHECK(loaded(run({"--config", file})).log.level == "debug");
  CHECK(loaded(run({"--config", file}, env)).log.level == "warn");
  CHECK(loaded(run({"--config", file, "--log-level", "trace"}, env)).log.level == "trace");

  SUBCASE("the last of a repeated flag wins") {
    CHECK(loaded(run({"--http-port", "1", "--http-port", "2"})).http.port == 2);
  }
}

TEST_CASE("MERCATO_CONFIG names the file unless --config does") {
  temp_dir dir;
  auto from_env = dir.write("env.toml", "node_id = \"from-env-file\"\n");
  auto from_flag = dir.write("flag.toml", "node_id = \"from-flag-file\"\n");
  CHECK(loaded(run({}, {{"MERCATO_CONFIG", from_env}})).node_id == "from-env-file");
  CHECK(loaded(run({"--config", from_flag}, {{"MERCATO_CONFIG", from_env}})).node_id == "from-flag-file");
  CHECK(loaded(run({}, {{"MERCATO_CONFIG", ""}})).node_id == "node-1");
}

TEST_CASE("an empty Redis URL means no Redis, whichever source sets it") {
  temp_dir dir;
  auto file = dir.write("r.toml", "[redis]\nurl = \"redis://file\"\n");
  CHECK(loaded(run({"--config", file})).redis.url.has_value());
  CHECK_FALSE(loaded(run({"--config", file}, {{"MERCATO_REDIS_URL", ""}})).redis.url.has_value());
  CHECK_FALSE(loaded(run({"--config", file, "--redis-url="})).redis.url.has_value());
}

TEST_CASE("booleans accept on/off/true/false/1/0") {
  for (const char* yes : {"on", "true", "1", "ON"}) {
    CHECK(loaded(run({}, {{"MERCATO_RATE_LIMITS", "off"}, {"MERCATO_DEMO", yes}})).load_demo_catalog);
    CHECK(loaded(run({"--rate-limits", yes}, {{"MERCATO_RATE_LIMITS", "off"}})).rate_limits.enabled);
  }
  for (const char* no : {"off", "false", "0"}) {
    CHECK_FALSE(loaded(run({}, {{"MERCATO_RATE_LIMITS", no}})).rate_limits.enabled);
    CHECK_FALSE(loaded(run({"--rate-limits", no})).rate_limits.enabled);
  }
  const auto e = only_error(run({"--rate-limits", "maybe"}));
  CHECK(e.key == "rate_limits");
  CHECK(e.source == "command line (--rate-limits)");
  CHECK(contains(e.message, "got \"maybe\""));
}

TEST_CASE("rate_limit.node_credit: default 1000, from the file or the environment, 0 allowed, bounded") {
  CHECK(loaded(run({})).rate_limits.node_credit == 1000);
  CHECK(loaded(run({}, {{"MERCATO_RATE_LIMIT_NODE_CREDIT", "0"}})).rate_limits.node_credit == 0);
  temp_dir dir;
  auto file = dir.write("c.toml", "[rate_limit]\nnode_credit = 250\n");
  CHECK(loaded(run({"--config", file})).rate_limits.node_credit == 250);
  const auto e = only_error(run({}, {{"MERCATO_RATE_LIMIT_NODE_CREDIT", "2000000"}}));
  CHECK(e.key == "rate_limit.node_credit");
}

TEST_CASE("an unknown key in the file is rejected with its line and a suggestion") {
  temp_dir dir;
  auto file = dir.write("k.toml", "[http]\nport = 8080\nprot = 8081\n");
  const auto e = only_error(run({"--config", file}));
  CHECK(e.key == "http.prot");
  CHECK(e.source == "file " + file);
  CHECK(contains(e.message, "unknown key"));
  CHECK(contains(e.message, "line 3"));
  CHECK(contains(e.message, "did you mean http.port?"));
  CHECK(contains(e.to_string(), "http.prot from file " + file));
}

TEST_CASE("an unknown top-level key is rejected") {
  temp_dir dir;
  auto file = dir.write("t.toml", "node = \"x\"\n");
  const auto e = only_error(run({"--config", file}));
  CHECK(e.key == "node");
  CHECK(contains(e.message, "unknown key"));
}

TEST_CASE("an unknown section is rejected") {
  temp_dir dir;
  auto file = dir.write("s.toml", "[database]\ndsn = \"x\"\n");
  const auto e = only_error(run({"--config", file}));
  CHECK(e.key == "database");
  CHECK(contains(e.message, "unknown section"));
}

TEST_CASE("a nested table inside a known section is rejected") {
  temp_dir dir;
  auto file = dir.write("n.toml", "[http.tls]\ncert = \"x\"\n");
  const auto e = only_error(run({"--config", file}));
  CHECK(e.key == "http.tls");
  CHECK(contains(e.message, "unknown section"));
}

TEST_CASE("a quoted key with a dot does not alias a nested setting") {
  temp_dir dir;
  auto file = dir.write("q.toml", "\"http.port\" = 9999\n");
  const auto e = only_error(run({"--config", file}));
  CHECK(e.key == "http.port");
  CHECK(contains(e.message, "unknown key"));
}

TEST_CASE("a value of the wrong type is rejected") {
  temp_dir dir;
  SUBCASE("string where an integer belongs") {
    auto file = dir.write("w.toml", "[http]\nport = \"8080\"\n");
    const auto e = only_error(run({"--config", file}));
    CHECK(e.key == "http.port");
    CHECK(contains(e.message, "expected an integer, got a string (\"8080\")"));
  }
  SUBCASE("string where a boolean belongs") {
    auto file = dir.write("w.toml", "rate_limits = \"off\"\n");
    const auto e = only_error(run({"--config", file}));
    CHECK(e.key == "rate_limits");
    CHECK(contains(e.message, "expected a boolean"));
  }
  SUBCASE("integer where a string belongs") {
    auto file = dir.write("w.toml", "[log]\nlevel = 3\n");
    const auto e = only_error(run({"--config", file}));
    CHECK(e.key == "log.level");
    CHECK(contains(e.message, "expected a string, got an integer (3)"));
  }
  SUBCASE("float where an integer belongs") {
    auto file = dir.write("w.toml", "scheduler_threads = 1.5\n");
    const auto e = only_error(run({"--config", file}));
    CHECK(contains(e.message, "expected an integer, got a float"));
  }
  SUBCASE("a value where a section belongs") {
    auto file = dir.write("w.toml", "http = 5\n");
    const auto e = only_error(run({"--config", file}));
    CHECK(e.key == "http");
    CHECK(contains(e.message, "expected a table"));
  }
}

TEST_CASE("a port out of range is rejected from every source") {
  temp_dir dir;
  SUBCASE("file") {
    auto file = dir.write("port.toml", "[http]\nport = 70000\n");
    const auto e = only_error(run({"--config", file}));
    CHECK(e.to_string() == "invalid configuration: http.port from file " + file +
                               ": must be between 1 and 65535, got 70000 (line 2)");
  }
  SUBCASE("environment") {
    const auto e = only_error(run({}, {{"MERCATO_HTTP_PORT", "70000"}}));
    CHECK(e.key == "http.port");
    CHECK(e.source == "environment (MERCATO_HTTP_PORT)");
    CHECK(e.to_string() ==
          "invalid configuration: http.port from environment (MERCATO_HTTP_PORT): must be between 1 and 65535, "
          "got \"70000\"");
  }
  SUBCASE("command line") {
    const auto e = only_error(run({"--http-port", "0"}));
    CHECK(e.to_string() ==
          "invalid configuration: http.port from command line (--http-port): must be between 1 and 65535, got \"0\"");
  }
  SUBCASE("negative, huge and non-numeric text") {
    CHECK(contains(only_error(run({"--http-port=-1"})).message, "must be between 1 and 65535, got \"-1\""));
    CHECK(contains(only_error(run({}, {{"MERCATO_HTTP_PORT", "99999999999999999999999"}})).message,
                   "must be between 1 and 65535"));
    CHECK(contains(only_error(run({}, {{"MERCATO_HTTP_PORT", "80a"}})).message, "must be an integer, got \"80a\""));
    CHECK(contains(only_error(run({}, {{"MERCATO_HTTP_PORT", ""}})).message, "must be an integer, got \"\""));
    CHECK(contains(only_error(run({}, {{"MERCATO_HTTP_PORT", " 80"}})).message, "must be an integer"));
  }
  SUBCASE("negative in the file") {
    auto file = dir.write("neg.toml", "[http]\nport = -5\n");
    CHECK(contains(only_error(run({"--config", file})).message, "got -5"));
  }
}

TEST_CASE("thread counts, pool size, sizes and timeouts are range-checked") {
  CHECK(loaded(run({"--scheduler-threads", "0"})).scheduler_threads == 0);
  CHECK(loaded(run({"--scheduler-threads", "256"})).scheduler_threads == 256);
  CHECK(contains(only_error(run({"--scheduler-threads", "257"})).message, "between 0 and 256"));
  CHECK(contains(only_error(run({"--http-threads", "0"})).message, "between 1 and 256"));
  CHECK(contains(only_error(run({"--http-threads", "257"})).message, "between 1 and 256"));
  CHECK(contains(only_error(run({"--pg-pool-size", "0"})).message, "between 1 and 256"));
  CHECK(contains(only_error(run({}, {{"MERCATO_HTTP_MAX_BODY_BYTES", "0"}})).message, "greater than 0"));
  CHECK(contains(only_error(run({}, {{"MERCATO_HTTP_MAX_HEADER_BYTES", "0"}})).message, "greater than 0"));
  CHECK(contains(only_error(run({}, {{"MERCATO_PG_QUEUE_LIMIT", "0"}})).message, "greater than 0"));
  for (const char* timeout : {"MERCATO_HTTP_READ_TIMEOUT_MS", "MERCATO_HTTP_IDLE_TIMEOUT_MS",
                              "MERCATO_HTTP_SHUTDOWN_GRACE_MS", "MERCATO_PG_STATEMENT_TIMEOUT_MS"}) {
    CAPTURE(timeout);
    CHECK(contains(only_error(run({}, {{timeout, "0"}})).message, "must be between 1 and"));
  }
  // A parked state kept less than a second would be dropped by the next scan anyway; no cap of 0.
  const auto keep = only_error(run({}, {{"MERCATO_ENTITIES_KEEP_PARKED_MS", "999"}}));
  CHECK(keep.key == "entities.keep_parked_ms");
  CHECK(contains(keep.message, "between 1000 and"));
  CHECK(only_error(run({}, {{"MERCATO_ENTITIES_MAX_PARKED", "0"}})).key == "entities.max_parked");
  CHECK(only_error(run({}, {{"MERCATO_ENTITIES_MAX_PARKED_MB", "0"}})).key == "entities.max_parked_mb");
  const auto sleep = only_error(run({}, {{"MERCATO_SCHEDULER_POLL_SLEEP_US", "100001"}}));
  CHECK(sleep.key == "scheduler_poll_sleep_us");
  CHECK(contains(sleep.message, "between 0 and 100000"));
  const auto linger = only_error(run({}, {{"MERCATO_PG_WRITER_LINGER_US", "100001"}}));
  CHECK(linger.key == "postgres.writer_linger_us");
  CHECK(contains(linger.message, "between 0 and 100000"));
}

TEST_CASE("text settings must not be empty and the node id must be a plain name") {
  CHECK(only_error(run({"--pg-dsn", ""})).message == "must not be empty");
  CHECK(only_error(run({}, {{"MERCATO_HTTP_ADDRESS", ""}})).key == "http.bind_address");
  const auto e = only_error(run({"--node-id", "node 1"}));
  CHECK(e.key == "node_id");
  CHECK(contains(e.message, "got \"node 1\""));
}

TEST_CASE("a bad log level or format is rejected from every source") {
  temp_dir dir;
  auto file = dir.write("l.toml", "[log]\nlevel = \"verbose\"\n");
  const auto from_file = only_error(run({"--config", file}));
  CHECK(from_file.key == "log.level");
  CHECK(contains(from_file.message, "must be one of trace, debug, info, warn, error, critical, off, got \"verbose\""));

  const auto from_env = only_error(run({}, {{"MERCATO_LOG_LEVEL", "INFO"}}));
  CHECK(from_env.source == "environment (MERCATO_LOG_LEVEL)");

  const auto format = only_error(run({"--log-format", "xml"}));
  CHECK(format.key == "log.format");
  CHECK(format.source == "command line (--log-format)");
  CHECK(contains(format.message, "must be text or json, got \"xml\""));
}

TEST_CASE("an unknown MERCATO_* variable is rejected, other modules' variables are not") {
  const auto e = only_error(run({}, {{"MERCATO_HTTP_PROT", "80"}}));
  CHECK(e.source == "environment (MERCATO_HTTP_PROT)");
  CHECK(contains(e.message, "unknown variable"));
  CHECK(contains(e.message, "did you mean MERCATO_HTTP_PORT?"));
  CHECK(contains(e.to_string(), "MERCATO_HTTP_PROT"));

  loaded(run({}, {{"MERCATO_TEST_PG_DSN", "x"},
                  {"MERCATO_SANITIZE", "thread"},
                  {"MERCATO_ADMIN_EMAIL", "a@b.c"},
                  {"MERCATO_ADMIN_PASSWORD", "secret"},
                  {"MERCATOD_PATH", "/bin/true"},
                  {"HOME", "/root"}}));
}

TEST_CASE("an unknown flag or stray argument is rejected") {
  const auto e = only_error(run({"--http-prot", "80"}));
  CHECK(e.source == "command line (--http-prot)");
  CHECK(contains(e.message, "unknown option"));
  CHECK(contains(e.message, "did you mean --http-port?"));

  CHECK(only_error(run({"--verbose=3"})).source == "command line (--verbose)");
  CHECK(only_error(run({"stray"})).message == "unexpected argument");
  CHECK(run({"--bogus", "--also-bogus"}).errors.size() == 2);
}

TEST_CASE("a flag without its value is rejected") {
  const auto e = only_error(run({"--http-port"}));
  CHECK(e.source == "command line");
  CHECK(contains(e.message, "--http-port"));
}

TEST_CASE("a config file that cannot be read is rejected, naming who named it") {
  temp_dir dir;
  SUBCASE("missing, from --config") {
    auto missing = dir.path("missing.toml");
    const auto e = only_error(run({"--config", missing}));
    CHECK(e.key == "config");
    CHECK(e.source == "command line (--config)");
    CHECK(contains(e.message, "cannot read \"" + missing + "\""));
    CHECK(contains(e.message, "No such file or directory"));
  }
  SUBCASE("missing, from MERCATO_CONFIG") {
    const auto e = only_error(run({}, {{"MERCATO_CONFIG", dir.path("nope.toml")}}));
    CHECK(e.source == "environment (MERCATO_CONFIG)");
  }
  SUBCASE("a directory") {
    const auto e = only_error(run({"--config", dir.path("")}));
    CHECK(contains(e.message, "is a directory"));
  }
  SUBCASE("an empty --config") {
    CHECK(only_error(run({"--config", ""})).message == "must not be empty");
  }
}

TEST_CASE("malformed TOML is rejected with line and column") {
  temp_dir dir;
  auto file = dir.write("bad.toml", "node_id = \"a\"\n[http\nport = 1\n");
  const auto e = only_error(run({"--config", file}));
  CHECK(e.source == "file " + file);
  CHECK(contains(e.message, "invalid TOML at line 2, column"));
  CHECK(contains(e.to_string(), "invalid configuration: file " + file + ": invalid TOML at line 2"));

  SUBCASE("a duplicate key is a parse error too") {
    auto dup = dir.write("dup.toml", "[http]\nport = 1\nport = 2\n");
    CHECK(contains(only_error(run({"--config", dup})).message, "line 3"));
  }
}

TEST_CASE("load_toml_text reads text as the loader reads the same file") {
  temp_dir dir;
  const std::string good = "node_id = \"n7\"\n[http]\nport = 8123\n[cluster]\nheartbeat_ms = 500\n";
  const auto from_text = cfg::load_toml_text(good, "inline.toml");
  const auto from_file = run({"--config", dir.write("good.toml", good)});
  CHECK(same(loaded(from_text), loaded(from_file)));
  CHECK(loaded(from_text).http.port == 8123);

  SUBCASE("the same errors, named by the given name") {
    const std::string bad = "[http]\nport = 70000\n[cluster]\nlease_ttl_ms = 1000\nheartbeat_ms = 500\n";
    const auto r = cfg::load_toml_text(bad, "inline.toml");
    CHECK_FALSE(r.value.has_value());
    REQUIRE(r.errors.size() == 2);
    CHECK(r.errors[0].key == "http.port");
    CHECK(r.errors[0].source == "file inline.toml");
    CHECK(r.errors[1].key == "cluster.lease_ttl_ms");
    CHECK(contains(all_errors(r), "at least 3 heartbeats"));
  }
}

TEST_CASE("errors from all sources are collected, in precedence order") {
  temp_dir dir;
  auto file = dir.write("many.toml", "typo = 1\n[http]\nport = 0\n[log]\nformat = \"xml\"\n");
  auto r = run({"--config", file, "--pg-pool-size", "0", "--unknown"},
               {{"MERCATO_LOG_LEVEL", "loud"}, {"MERCATO_NOPE", "1"}});
  INFO(all_errors(r));
  CHECK_FALSE(r.value.has_value());
  REQUIRE(r.errors.size() == 7);
  // File errors come in line order, not in the order toml++ iterates its tables.
  CHECK(r.errors[0].key == "typo");
  CHECK(r.errors[1].key == "http.port");
  CHECK(r.errors[2].key == "log.format");
  CHECK(r.errors[2].source == "file " + file);
  CHECK(contains(r.errors[3].source, "environment"));
  CHECK(contains(r.errors[4].source, "environment"));
  CHECK(contains(r.errors[5].source, "command line"));
  CHECK(contains(r.errors[6].source, "command line"));
}

TEST_CASE("--help returns the usage text and no settings") {
  auto r = run({"--help"}, {{"MERCATO_NOPE", "1"}});
  CHECK(r.help_requested);
  CHECK(r.errors.empty());
  CHECK_FALSE(r.value.has_value());
  CHECK(contains(r.help_text, "--http-port"));
  CHECK(contains(r.help_text, "MERCATO_HTTP_PORT"));
  CHECK(contains(r.help_text, "--config"));
  CHECK(run({"-h"}).help_requested);
}

TEST_CASE("an argv with only the program name, or none, loads defaults") {
  const char* const argv[] = {"mercatod"};
  CHECK(cfg::load(1, argv, {}).value.has_value());
  CHECK(cfg::load(0, nullptr, {}).value.has_value());
}

TEST_CASE("process_environment returns only MERCATO_* variables") {
  REQUIRE(::setenv("MERCATO_TEST_CONFIG_PROBE", "a=b", 1) == 0);
  auto env = cfg::process_environment();
  ::unsetenv("MERCATO_TEST_CONFIG_PROBE");
  CHECK(env.at("MERCATO_TEST_CONFIG_PROBE") == "a=b");
  for (const auto& [name, value] : env) CHECK(name.rfind("MERCATO_", 0) == 0);
}

TEST_CASE("log_format has a name") {
  CHECK(std::string{cfg::to_string(cfg::log_format::text)} == "text");
  CHECK(std::string{cfg::to_string(cfg::log_format::json)} == "json");
}

TEST_CASE("rate limits: seed defaults, overrides as limit/window, and off") {
  const auto d = loaded(run({}));
  CHECK(d.rate_limits.enabled);
  CHECK(d.rate_limits.login.limit == 10);
  CHECK(d.rate_limits.login.window == std::chrono::minutes(15));
  CHECK(d.rate_limits.register_account.limit == 5);
  CHECK(d.rate_limits.register_account.window == std::chrono::hours(1));
  CHECK(d.rate_limits.anonymous.limit == 500);
  CHECK(d.rate_limits.authenticated.limit == 2000);

  const auto s = loaded(run({}, {{"MERCATO_RATE_LIMIT_LOGIN", "3/90s"}, {"MERCATO_RATE_LIMIT_SEARCH", "off"}}));
  CHECK(s.rate_limits.login.limit == 3);
  CHECK(s.rate_limits.login.window == std::chrono::seconds(90));
  CHECK(s.rate_limits.search.limit == 0);
  CHECK(cfg::to_string(s.rate_limits.login) == "3/90s");
  CHECK(cfg::to_string(s.rate_limits.search) == "off");
  CHECK(cfg::to_string(d.rate_limits.register_account) == "5/1h");

  for (const char* bad : {"10", "10/", "/15m", "x/15m", "10/15y", "10/0m", "-1/15m", "10/15m "}) {
    CAPTURE(bad);
    const auto e = only_error(run({}, {{"MERCATO_RATE_LIMIT_LOGIN", bad}}));
    CHECK(e.key == "rate_limit.login");
    CHECK(contains(e.message, "<limit>/<window>"));
  }
}

TEST_CASE("auth settings: token lifetimes are bounded, the admin comes from MERCATO_ADMIN_*") {
  const auto s = loaded(run({}, {{"MERCATO_ADMIN_EMAIL", "root@example.com"},
                                 {"MERCATO_ADMIN_PASSWORD", "correct horse"},
                                 {"MERCATO_ACCESS_TOKEN_TTL_S", "60"}}));
  CHECK(s.auth.admin_email.value_or("") == "root@example.com");
  CHECK(s.auth.admin_password.value_or("") == "correct horse");
  CHECK(s.auth.access_token_ttl == std::chrono::seconds(60));
  CHECK(loaded(run({})).auth.refresh_token_ttl == std::chrono::hours(24 * 30));
  CHECK(only_error(run({}, {{"MERCATO_ACCESS_TOKEN_TTL_S", "5"}})).key == "auth.access_token_ttl_s");
  CHECK(only_error(run({}, {{"MERCATO_ADMIN_EMIAL", "x"}})).source == "environment (MERCATO_ADMIN_EMIAL)");
}

TEST_CASE("outbox settings: defaults, file, environment, ranges") {
  const auto d = loaded(run({}));
  CHECK(d.outbox.poll_interval == std::chrono::milliseconds(100));
  CHECK(d.outbox.min_round_interval == std::chrono::milliseconds(20));
  CHECK(d.outbox.batch_size == 500);
  CHECK(d.outbox.retention == std::chrono::hours(24 * 7));
  CHECK(d.outbox.retention_interval == std::chrono::seconds(60));
  CHECK(d.outbox.max_attempts == 5);

  temp_dir dir;
  auto file = dir.write("outbox.toml",
                        "[outbox]\npoll_interval_ms = 250\nmin_round_interval_ms = 0\nbatch_size = 64\nretention_s = 5\nretention_interval_s = 2\n"
                        "max_attempts = 0\n");
  const auto f = loaded(run({"--config", file}));
  CHECK(f.outbox.poll_interval == std::chrono::milliseconds(250));
  CHECK(f.outbox.min_round_interval == std::chrono::milliseconds(0));
  CHECK(f.outbox.batch_size == 64);
  CHECK(f.outbox.retention == std::chrono::seconds(5));
  CHECK(f.outbox.retention_interval == std::chrono::seconds(2));
  CHECK(f.outbox.max_attempts == 0);

  const auto e = loaded(run({"--config", file}, {{"MERCATO_OUTBOX_POLL_INTERVAL_MS", "7"},
                                                 {"MERCATO_OUTBOX_MIN_ROUND_INTERVAL_MS", "12"},
                                                 {"MERCATO_OUTBOX_BATCH_SIZE", "8"},
                                                 {"MERCATO_OUTBOX_RETENTION_S", "9"},
                                                 {"MERCATO_OUTBOX_RETENTION_INTERVAL_S", "10"},
                                                 {"MERCATO_OUTBOX_MAX_ATTEMPTS", "11"}}));
  CHECK(e.outbox.poll_interval == std::chrono::milliseconds(7));
  CHECK(e.outbox.min_round_interval == std::chrono::milliseconds(12));
  CHECK(e.outbox.batch_size == 8);
  CHECK(e.outbox.retention == std::chrono::seconds(9));
  CHECK(e.outbox.retention_interval == std::chrono::seconds(10));
  CHECK(e.outbox.max_attempts == 11);

  for (const auto& [variable, value] : std::vector<std::pair<std::string, std::string>>{
           {"MERCATO_OUTBOX_POLL_INTERVAL_MS", "0"},
           {"MERCATO_OUTBOX_POLL_INTERVAL_MS", "60001"},
           {"MERCATO_OUTBOX_MIN_ROUND_INTERVAL_MS", "-1"},
           {"MERCATO_OUTBOX_MIN_ROUND_INTERVAL_MS", "1001"},
           {"MERCATO_OUTBOX_BATCH_SIZE", "0"},
           {"MERCATO_OUTBOX_BATCH_SIZE", "100001"},
           {"MERCATO_OUTBOX_RETENTION_S", "0"},
           {"MERCATO_OUTBOX_RETENTION_INTERVAL_S", "0"},
           {"MERCATO_OUTBOX_RETENTION_INTERVAL_S", "86401"},
           {"MERCATO_OUTBOX_MAX_ATTEMPTS", "-1"},
           {"MERCATO_OUTBOX_MAX_ATTEMPTS", "1001"}}) {
    CAPTURE(variable);
    CAPTURE(value);
    const auto err = only_error(run({}, {{variable, value}}));
    CHECK(contains(err.key, "outbox."));
    CHECK(contains(err.message, "between"));
  }
  CHECK(only_error(run({}, {{"MERCATO_OUTBOX_BATCH_SIZE", "many"}})).key == "outbox.batch_size");
  CHECK(contains(only_error(run({"--config", dir.write("bad.toml", "[outbox]\nbatch = 5\n")})).message,
                 "unknown key"));
}

TEST_CASE("http.static_dir: empty means the built-in web/ directory; anything else must be a directory") {
  temp_dir dir;
  const auto web = dir.path("site");
  fs::create_directories(web);
  CHECK(loaded(run({})).http.static_dir.empty());
  CHECK(loaded(run({}, {{"MERCATO_HTTP_STATIC_DIR", web}})).http.static_dir == web);
  CHECK(loaded(run({}, {{"MERCATO_HTTP_STATIC_DIR", ""}})).http.static_dir.empty());

  const auto missing = only_error(run({}, {{"MERCATO_HTTP_STATIC_DIR", dir.path("nowhere")}}));
  CHECK(missing.key == "http.static_dir");
  CHECK(contains(missing.source, "MERCATO_HTTP_STATIC_DIR"));
  CHECK(contains(missing.message, "existing directory"));

  const auto file = dir.write("index.html", "<!doctype html>");
  const auto not_dir = only_error(run({"--config", dir.write("s.toml", "[http]\nstatic_dir = \"" + file + "\"\n")}));
  CHECK(not_dir.key == "http.static_dir");
  CHECK(contains(not_dir.message, "existing directory"));
  CHECK(contains(not_dir.message, "line 2"));
}

TEST_CASE("metrics.token: unset by default; from the file or the environment; under 16 bytes refused, not echoed") {
  temp_dir dir;
  CHECK_FALSE(loaded(run({})).metrics.token.has_value());
  const std::string token = "scrape-token-0123456789";
  CHECK(loaded(run({}, {{"MERCATO_METRICS_TOKEN", token}})).metrics.token == token);
  CHECK(loaded(run({"--config", dir.write("m.toml", "[metrics]\ntoken = \"" + token + "\"\n")})).metrics.token ==
        token);
  CHECK_FALSE(loaded(run({}, {{"MERCATO_METRICS_TOKEN", ""}})).metrics.token.has_value());

  const auto short_env = only_error(run({}, {{"MERCATO_METRICS_TOKEN", "short-secret"}}));
  CHECK(short_env.key == "metrics.token");
  CHECK(contains(short_env.source, "MERCATO_METRICS_TOKEN"));
  CHECK(contains(short_env.message, "at least 16 bytes"));
  CHECK_FALSE(contains(short_env.message, "short-secret"));
  const auto short_file = only_error(run({"--config", dir.write("s.toml", "[metrics]\ntoken = \"short-secret\"\n")}));
  CHECK(short_file.key == "metrics.token");
  CHECK(contains(short_file.message, "line 2"));
  CHECK_FALSE(contains(short_file.message, "short-secret"));
}

TEST_CASE("http.trusted_proxies: empty by default; addresses and networks from any source; a bad entry is named") {
  temp_dir dir;
  CHECK(loaded(run({})).http.trusted_proxies.empty());
  CHECK(loaded(run({}, {{"MERCATO_HTTP_TRUSTED_PROXIES", "10.0.0.0/8, ::1"}})).http.trusted_proxies ==
        "10.0.0.0/8, ::1");
  CHECK(loaded(run({"--config", dir.write("p.toml", "[http]\ntrusted_proxies = \"192.0.2.7\"\n")}))
            .http.trusted_proxies == "192.0.2.7");
  const auto bad = only_error(run({}, {{"MERCATO_HTTP_TRUSTED_PROXIES", "10.0.0.0/8, lb.internal"}}));
  CHECK(bad.key == "http.trusted_proxies");
  CHECK(contains(bad.message, "\"lb.internal\""));
}

TEST_CASE("cluster settings: read from every source; a lease must outlast three heartbeats") {
  const auto s = loaded(run({"--cluster-host", "10.0.0.7", "--cluster-port", "7101"},
                            {{"MERCATO_CLUSTER_SHARDS", "32"},
                             {"MERCATO_CLUSTER_LEASE_TTL_MS", "6000"},
                             {"MERCATO_CLUSTER_HEARTBEAT_MS", "500"},
                             {"MERCATO_CLUSTER_NODE_TIMEOUT_MS", "2500"}}));
  CHECK(s.cluster.host == "10.0.0.7");
  CHECK(s.cluster.port == 7101);
  CHECK(s.cluster.shards == 32);
  CHECK(s.cluster.lease_ttl == std::chrono::milliseconds{6000});
  CHECK(s.cluster.heartbeat == std::chrono::milliseconds{500});
  CHECK(s.cluster.node_timeout == std::chrono::milliseconds{2500});
  const auto e = only_error(run({}, {{"MERCATO_CLUSTER_LEASE_TTL_MS", "1000"}, {"MERCATO_CLUSTER_HEARTBEAT_MS", "400"}}));
  CHECK(e.key == "cluster.lease_ttl_ms");
  CHECK(contains(e.message, "at least 3 heartbeats"));
  CHECK(contains(only_error(run({}, {{"MERCATO_CLUSTER_SHARDS", "0"}})).message, "between 1 and 4096"));
  CHECK(contains(only_error(run({"--cluster-port", "70000"})).message, "between 0 and 65535"));
}

TEST_CASE("cluster TLS settings: all three readable files or none") {
  temp_dir dir;
  const auto cert = dir.write("node.pem", "certificate");
  const auto key = dir.write("node.key", "key");
  const auto ca = dir.write("ca.pem", "ca");
  // None: plain TCP.
  const auto plain = loaded(run({}));
  CHECK(plain.cluster.tls_certificate.empty());
  CHECK(plain.cluster.tls_key.empty());
  CHECK(plain.cluster.tls_ca.empty());
  // All three, from the environment ...
  const auto env = loaded(run({}, {{"MERCATO_CLUSTER_TLS_CERTIFICATE", cert},
                                   {"MERCATO_CLUSTER_TLS_KEY", key},
                                   {"MERCATO_CLUSTER_TLS_CA", ca}}));
  CHECK(env.cluster.tls_certificate == cert);
  CHECK(env.cluster.tls_key == key);
  CHECK(env.cluster.tls_ca == ca);
  // ... and from the file.
  const auto toml = dir.write("mercato.toml", "[cluster]\ntls_certificate = \"" + cert + "\"\ntls_key = \"" + key +
                                                  "\"\ntls_ca = \"" + ca + "\"\n");
  const auto file = loaded(run({"--config", toml}));
  CHECK(file.cluster.tls_certificate == cert);
  CHECK(file.cluster.tls_key == key);
  CHECK(file.cluster.tls_ca == ca);
  // Only some of them: each missing one is named.
  const auto partial = run({}, {{"MERCATO_CLUSTER_TLS_CERTIFICATE", cert}, {"MERCATO_CLUSTER_TLS_KEY", key}});
  const auto e = only_error(partial);
  CHECK(e.key == "cluster.tls_ca");
  CHECK(contains(e.message, "needs all of"));
  const auto two_missing = run({}, {{"MERCATO_CLUSTER_TLS_CA", ca}});
  CHECK_FALSE(two_missing.value.has_value());
  REQUIRE(two_missing.errors.size() == 2);
  CHECK(two_missing.errors[0].key == "cluster.tls_certificate");
  CHECK(two_missing.errors[1].key == "cluster.tls_key");
  // A file that cannot be read.
  const auto missing = dir.path("nowhere.pem");
  const auto unreadable = only_error(run({}, {{"MERCATO_CLUSTER_TLS_CERTIFICATE", cert},
                                              {"MERCATO_CLUSTER_TLS_KEY", missing},
                                              {"MERCATO_CLUSTER_TLS_CA", ca}}));
  CHECK(unreadable.key == "cluster.tls_key");
  CHECK(contains(unreadable.message, "cannot read"));
  CHECK(contains(unreadable.message, missing));
}
