// Fault drills: a node under a storefront's mixed load (adds to carts, checkouts of a scarce product,
// browsing and search; support/mixed_load) while its Redis is killed, its PostgreSQL restarted, slowed
// or stalled, or the node itself killed with SIGKILL and started again. After each, every request of
// unknown outcome is retried with its own Idempotency-Key until it has an answer, and then:
// nothing acknowledged is lost, nothing is applied twice, nothing is oversold, nothing stays reserved,
// and the node serves again without a restart (except after its own SIGKILL).
// Runs alone (*_serial_test): it stops the test PostgreSQL that every other test program uses.
#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <functional>
#include <sstream>
#include <string>
#include <thread>

#include "support/http_client.hpp"
#include "support/mixed_load.hpp"
#include "support/node_process.hpp"
#include "support/redis_servers.hpp"
#include "support/scratch_database.hpp"
#include "support/shop.hpp"
#include "support/tcp_proxy.hpp"

using namespace mercato::test;
using namespace mercato::test::shop;
using namespace std::chrono_literals;

namespace {

using env_map = std::map<std::string, std::string>;

int services(const std::string& verb) {
  const char* profile = std::getenv("MERCATO_TEST_PROFILE");
  return run_command(services_script() + " " + verb + " --profile " + (profile ? profile : "test") + " >&2");
}

// Default settings, rate limits on (budgets raised so the load itself is not refused).
env_map drill_env(const std::string& dsn, const std::string& redis_url) {
  return {{"MERCATO_PG_DSN", dsn},
          {"MERCATO_REDIS_URL", redis_url},
          {"MERCATO_REDIS_KEY_PREFIX", "drill-" + random_uuid() + ":"},
          {"MERCATO_RATE_LIMITS", "on"},
          {"MERCATO_RATE_LIMIT_GLOBAL", "100000000/15m"},
          {"MERCATO_RATE_LIMIT_ORDERS", "100000000/15m"},
          {"MERCATO_RATE_LIMIT_SEARCH", "100000000/15m"},
          {"MERCATO_RATE_LIMIT_AUTHENTICATED", "100000000/15m"},
          {"MERCATO_RATE_LIMIT_ANONYMOUS", "100000000/15m"},
          // Restarted on the same data, a node takes its own leases back at once.
          {"MERCATO_NODE_ID", "drill-node"}};
}

// Waits (bounded) for `done`; the load is what makes it true.
bool within(std::chrono::seconds limit, const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

std::string dsn_with_port(const std::string& dsn, std::uint16_t port) {
  // postgresql://user@host:port/db
  const auto slash = dsn.find('/', dsn.find("://") + 3);
  const auto colon = dsn.rfind(':', slash);
  return dsn.substr(0, colon + 1) + std::to_string(port) + dsn.substr(slash);
}

std::uint16_t port_of(const std::string& dsn) {
  const auto slash = dsn.find('/', dsn.find("://") + 3);
  const auto colon = dsn.rfind(':', slash);
  return static_cast<std::uint16_t>(std::stoi(dsn.substr(colon + 1, slash - colon - 1)));
}

std::string report(const mixed_load& load) {
  std::ostringstream s;
  for (const auto& [what, n] : load.tally()) {
    s << "  " << what << ": " << n << "\n";
  }
  for (const auto& u : load.unexpected()) {
    s << "  unexpected: " << u << "\n";
  }
  for (const auto& f : load.failures()) {
    s << "  unsettled: " << f << "\n";
  }
  return s.str();
}

// The checks every drill ends with, once the load has stopped.
void settle_and_check(mixed_load& load, node_process& node) {
  REQUIRE_MESSAGE(load.settle(90s), report(load) << node.log().substr(0, 4000));
  const auto broken = load.violations();
  for (const auto& v : broken) {
    FAIL_CHECK(v);
  }
  CHECK_MESSAGE(load.unexpected().empty(), report(load));
  CHECK(load.acknowledged_adds() > 0);
  CHECK(load.paid() > 0);
  CHECK(load.browsed() > 0);
  MESSAGE(report(load));
}

struct shop_setup {
  std::string plenty;
  std::string scarce;
};

shop_setup stock_up(node_process& node, const std::string& dsn) {
  http_client c{node.port()};
  // Few units of the scarce one: most checkouts of a drill find it sold out (409), and none may oversell.
  return {product_with_stock(c, dsn, 0, 1'000'000), product_with_stock(c, dsn, 1, 4)};
}

}  // namespace

TEST_CASE("Redis killed and restarted under load: no request fails, nothing lost or doubled, limits back on Redis") {
  REQUIRE_MESSAGE(private_redis::installed(), "redis-server is not installed; scripts/setup --tests installs it");
  scratch_database db;
  private_redis redis;
  REQUIRE(redis.start());
  node_process node{{"--demo"}, drill_env(db.dsn(), redis.url())};
  REQUIRE_MESSAGE(node.wait_ready(60s), node.log());
  const auto stock = stock_up(node, db.dsn());
  mixed_load load{{node.port(), db.dsn(), stock.plenty, stock.scarce}};
  http_client c{node.port()};
  load.start();
  REQUIRE(within(30s, [&] { return load.acknowledged_adds() >= 50; }));

  redis.stop(SIGKILL);
  // Served on while Redis is gone: rate limits on local counters, the cache from its first level and
  // PostgreSQL.
  const int at_kill = load.acknowledged_adds();
  CHECK(within(30s, [&] { return metric(c, "mercato_rate_limit_local_fallback") == 1; }));
  CHECK(within(30s, [&] { return load.acknowledged_adds() >= at_kill + 100; }));

  REQUIRE(redis.start());
  // Back on Redis by itself (no restart of the node).
  CHECK(within(30s, [&] { return metric(c, "mercato_rate_limit_local_fallback") == 0; }));
  const int at_restart = load.acknowledged_adds();
  CHECK(within(30s, [&] { return load.acknowledged_adds() >= at_restart + 50; }));
  load.stop();

  // Redis is a cache and a counter store: losing it costs no request at all.
  CHECK_MESSAGE(load.disturbed() == 0, report(load));
  settle_and_check(load, node);
  CHECK(node.running());
}

TEST_CASE("PostgreSQL restarted under load: only 503s while it is down; served again without a restart; nothing lost or doubled") {
  scratch_database db;
  node_process node{{"--demo"}, drill_env(db.dsn(), test_redis_url())};
  REQUIRE_MESSAGE(node.wait_ready(60s), node.log());
  const auto stock = stock_up(node, db.dsn());
  mixed_load load{{node.port(), db.dsn(), stock.plenty, stock.scarce}};
  load.start();
  REQUIRE(within(30s, [&] { return load.acknowledged_adds() >= 50; }));

  REQUIRE(services("pg-stop") == 0);
  // The outage is answered, not hung: 503s arrive (the load's clients would see "no answer" otherwise).
  CHECK(within(30s, [&] { return load.disturbed() > 0; }));
  REQUIRE(services("pg-start") == 0);
  const auto back = std::chrono::steady_clock::now();
  CHECK(wait_for_status(node.port(), "/readyz", 200, 60s));
  const int at_restart = load.acknowledged_adds();
  CHECK(within(60s, [&] { return load.acknowledged_adds() >= at_restart + 100; }));
  MESSAGE("serving again " << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - back).count()
                           << " ms after PostgreSQL was back");
  // A buyer's round (a new account, a cart, a line, a checkout) is much slower than an add: with the
  // first checkout caught by the outage, 100 adds can pass before any checkout is paid.
  CHECK(within(60s, [&] { return load.paid() > 0; }));
  load.stop();

  CHECK_MESSAGE(load.tally().count("add no answer") == 0, report(load));
  settle_and_check(load, node);
  CHECK(node.running());
}

TEST_CASE("PostgreSQL slowed, then stalled, under load: slower, then 503s, then served again; nothing lost or doubled") {
  scratch_database db;
  // Every connection of the node to PostgreSQL goes through the proxy.
  tcp_proxy proxy{port_of(db.dsn())};
  node_process node{{"--demo"}, drill_env(dsn_with_port(db.dsn(), proxy.port()), test_redis_url())};
  REQUIRE_MESSAGE(node.wait_ready(60s), node.log());
  const auto stock = stock_up(node, db.dsn());
  mixed_load load{{node.port(), db.dsn(), stock.plenty, stock.scarce}};
  load.start();
  REQUIRE(within(30s, [&] { return load.acknowledged_adds() >= 50; }));

  // Slow: 20 ms before every chunk each way. Still served.
  proxy.set_delay(20ms);
  const int at_slow = load.acknowledged_adds();
  CHECK(within(60s, [&] { return load.acknowledged_adds() >= at_slow + 50; }));

  // Stalled: nothing passes, connections stay open. The node answers (503) instead of hanging.
  const int disturbed = load.disturbed();
  proxy.stall(true);
  CHECK(within(60s, [&] { return load.disturbed() > disturbed; }));
  CHECK(wait_for_status(node.port(), "/readyz", 503, 30s));
  proxy.stall(false);
  proxy.set_delay(0ms);

  CHECK(wait_for_status(node.port(), "/readyz", 200, 60s));
  const int at_release = load.acknowledged_adds();
  CHECK(within(60s, [&] { return load.acknowledged_adds() >= at_release + 100; }));
  CHECK(within(60s, [&] { return load.paid() > 0; }));  // as in the restart drill
  load.stop();

  CHECK(proxy.connections() > 0);
  CHECK(proxy.chunks() > 0);
  CHECK_MESSAGE(load.tally().count("add no answer") == 0, report(load));
  settle_and_check(load, node);
  CHECK(node.running());
}

TEST_CASE("the node killed with SIGKILL under load and started again: every acknowledged change kept, every checkout once") {
  scratch_database db;
  auto env = drill_env(db.dsn(), test_redis_url());
  auto node = std::make_unique<node_process>(std::vector<std::string>{"--demo"}, env);
  REQUIRE_MESSAGE(node->wait_ready(60s), node->log());
  const auto stock = stock_up(*node, db.dsn());
  mixed_load load{{node->port(), db.dsn(), stock.plenty, stock.scarce}};
  load.start();
  REQUIRE(within(30s, [&] { return load.acknowledged_adds() >= 100 && load.paid() >= 2; }));

  CHECK(node->stop(SIGKILL) == 128 + SIGKILL);
  const int at_kill = load.acknowledged_adds();
  auto again = std::make_unique<node_process>(std::vector<std::string>{"--demo"}, env);
  REQUIRE_MESSAGE(again->wait_ready(60s), again->log());
  load.retarget(again->port());
  CHECK(within(60s, [&] { return load.acknowledged_adds() >= at_kill + 100; }));
  load.stop();

  CHECK_MESSAGE(load.tally().count("add no answer") > 0, "the kill cut no request off:\n" << report(load));
  settle_and_check(load, *again);
}
