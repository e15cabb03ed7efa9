// End-to-end: what nodes share through Redis, with two mercatod processes on one database.
// Rate-limit budgets (per endpoint, per user) are shared; with Redis gone each node falls back to
// local counters; failed logins slow down per account; a catalog change on one node invalidates the
// cache of the other.

#include <doctest/doctest.h>

#include <chrono>
#include <random>
#include <string>
#include <thread>

#include <boost/json.hpp>

#include "support/http_client.hpp"
#include "support/node_process.hpp"
#include "support/redis_servers.hpp"
#include "support/scratch_database.hpp"

namespace json = boost::json;
using mercato::test::http_client;
using mercato::test::http_reply;
using mercato::test::metric;
using mercato::test::node_process;
using namespace std::chrono_literals;

namespace {

std::string random_suffix() {
  static std::mt19937_64 gen{std::random_device{}()};
  return std::to_string(gen() % 1'000'000'000'000ull);
}

using env_map = std::map<std::string, std::string>;

void require_ready(node_process& n) { REQUIRE_MESSAGE(n.wait_ready(60s), "mercatod did not become ready:\n" << n.log()); }

http_reply post_json(http_client& c, const std::string& path, const json::value& body, const std::string& token = {}) {
  std::vector<std::pair<std::string, std::string>> h{{"Content-Type", "application/json"}};
  if (!token.empty()) {
    h.emplace_back("Authorization", "Bearer " + token);
  }
  return c.request("POST", path, json::serialize(body), h);
}

std::string code_of(const http_reply& r) {
  try {
    return std::string(r.json().at("code").as_string());
  } catch (...) {
    return "<" + r.body + ">";
  }
}

std::string register_user(http_client& c, const std::string& who) {
  auto r = post_json(c, "/api/v1/auth/register",
                     {{"email", who + "-" + random_suffix() + "@example.com"}, {"password", "correct horse battery"},
                      {"name", who}});
  REQUIRE_MESSAGE(r.status == 201, r.body);
  return std::string(r.json().at("access_token").as_string());
}

}  // namespace

TEST_CASE("the login budget and a user's budget are shared by two nodes through Redis") {
  const env_map env{{"MERCATO_RATE_LIMITS", "on"},
                    {"MERCATO_REDIS_KEY_PREFIX", "shared-" + random_suffix() + ":"},
                    {"MERCATO_RATE_LIMIT_LOGIN", "4/15m"},
                    {"MERCATO_RATE_LIMIT_AUTHENTICATED", "6/15m"}};
  node_process a{{"--demo"}, env};
  node_process b{{"--demo"}, env};
  require_ready(a);
  require_ready(b);
  http_client ca{a.port()};
  http_client cb{b.port()};

  // Four logins in all, two per node (wrong passwords, different accounts: no per-account back-off).
  for (int i = 0; i < 4; ++i) {
    auto& c = i % 2 == 0 ? ca : cb;
    auto r = post_json(c, "/api/v1/auth/login",
                       {{"email", "nobody-" + std::to_string(i) + "@example.com"}, {"password", "wrong password"}});
    CHECK_MESSAGE(r.status == 401, r.body);
    CHECK(r.header("ratelimit-limit") == "4");
    CHECK(r.header("ratelimit-remaining") == std::to_string(3 - i));
  }
  for (auto* c : {&ca, &cb}) {
    auto r = post_json(*c, "/api/v1/auth/login", {{"email", "x@example.com"}, {"password", "whatever it is"}});
    CHECK(r.status == 429);
    CHECK(code_of(r) == "rate_limited");
    CHECK(std::stoi(r.header("retry-after")) >= 1);
    CHECK(r.header("ratelimit-remaining") == "0");
    CHECK(!r.header("ratelimit-reset").empty());
  }
  // Other endpoints are not charged to the login budget.
  CHECK(ca.get("/api/v1/categories").status == 200);

  // A signed-in caller: 6 requests per window, wherever they land.
  const auto token = register_user(ca, "budget");
  const std::vector<std::pair<std::string, std::string>> auth{{"Authorization", "Bearer " + token}};
  for (int i = 0; i < 6; ++i) {
    auto r = (i % 2 == 0 ? ca : cb).get("/api/v1/me", auth);
    CHECK_MESSAGE(r.status == 200, r.body);
  }
  auto over = cb.get("/api/v1/me", auth);
  CHECK(over.status == 429);
  CHECK(over.body.find("user budget") != std::string::npos);
  // Another user has a budget of their own.
  const auto other = register_user(cb, "other");
  CHECK(ca.get("/api/v1/me", {{"Authorization", "Bearer " + other}}).status == 200);
  // Probes and scrapes are never limited.
  for (int i = 0; i < 10; ++i) {
    CHECK(ca.get("/readyz").status == 200);
  }
  CHECK(metric(ca, "mercato_rate_limited_total{rule=\"auth_login\"}") >= 1);
}

// The anonymous budget is large enough to be shared out: each node admits against at most b = 640 / 64 =
// 10 tokens it took from Redis ahead of use (docs/architecture.md, "Rate limits"). Two nodes together
// admit no more than the budget (no time passes for it to refill: one token per 135 s) and at most 2 x b
// fewer; every refusal is the API's 429 problem+json and is counted by the node that sent it.
TEST_CASE("a batched budget held by two nodes: within N x b, and every refusal is a counted 429 problem+json") {
  const env_map env{{"MERCATO_RATE_LIMITS", "on"},
                    {"MERCATO_REDIS_KEY_PREFIX", "batched-" + random_suffix() + ":"},
                    {"MERCATO_RATE_LIMIT_ANONYMOUS", "640/24h"}};
  node_process a{{"--demo"}, env};
  node_process b{{"--demo"}, env};
  require_ready(a);
  require_ready(b);
  http_client ca{a.port()};
  http_client cb{b.port()};
  int ok = 0;
  int limited = 0;
  int refused_in_a_row[2] = {0, 0};
  for (int i = 0; i < 2000 && (refused_in_a_row[0] < 3 || refused_in_a_row[1] < 3); ++i) {
    auto r = (i % 2 == 0 ? ca : cb).get("/api/v1/categories");
    if (r.status == 200) {
      ++ok;
      refused_in_a_row[i % 2] = 0;
      CHECK(r.header("ratelimit-limit") == "640");
      continue;
    }
    REQUIRE_MESSAGE(r.status == 429, r.body);
    ++limited;
    ++refused_in_a_row[i % 2];
    CHECK(r.header("content-type").rfind("application/problem+json", 0) == 0);
    CHECK(code_of(r) == "rate_limited");
    CHECK(r.json().at("status").as_int64() == 429);
    CHECK(r.body.find("anon budget") != std::string::npos);
    CHECK(std::stoi(r.header("retry-after")) >= 1);
    CHECK(r.header("ratelimit-limit") == "640");
    CHECK(r.header("ratelimit-remaining") == "0");
    CHECK(!r.header("ratelimit-reset").empty());
  }
  MESSAGE(ok << " admitted of 640 by two nodes, " << limited << " refused");
  CHECK(ok <= 640);
  CHECK(ok >= 640 - 2 * 10);
  CHECK(limited >= 6);
  // Each node counts the refusals it sent, as before.
  const auto counted = metric(ca, "mercato_rate_limited_total{rule=\"anon\"}") +
                       metric(cb, "mercato_rate_limited_total{rule=\"anon\"}");
  CHECK(counted == limited);
}

TEST_CASE("with Redis stopped, limits fall back to local counters and reads still work") {
  if (!mercato::test::private_redis::installed()) {
    FAIL("redis-server is not installed; scripts/setup --tests installs it");
  }
  mercato::test::private_redis redis;
  REQUIRE(redis.start());
  node_process n{{"--demo"},
                 {{"MERCATO_RATE_LIMITS", "on"},
                  {"MERCATO_REDIS_URL", redis.url()},
                  {"MERCATO_RATE_LIMIT_ANONYMOUS", "5/15m"}}};
  require_ready(n);
  http_client c{n.port()};
  for (int i = 0; i < 5; ++i) {
    CHECK(c.get("/api/v1/categories").status == 200);
  }
  CHECK(c.get("/api/v1/categories").status == 429);

  redis.stop();
  // Local counters start with a full budget: five more, then refused again — by this node alone.
  int ok = 0;
  int limited = 0;
  for (int i = 0; i < 8; ++i) {
    auto r = c.get("/api/v1/categories");
    ok += r.status == 200 ? 1 : 0;
    limited += r.status == 429 ? 1 : 0;
  }
  CHECK(ok == 5);
  CHECK(limited == 3);
  auto ready = c.get("/readyz");
  CHECK(ready.status == 200);  // Redis is a cache and a counter store, not the system of record
  CHECK(ready.body.find("down") != std::string::npos);
  CHECK(metric(c, "mercato_rate_limit_local_fallback") == 1);
  CHECK(n.log().find("falling back to local counters") != std::string::npos);
}

TEST_CASE("failed logins slow down per account") {
  node_process n{{"--demo"}, {{"MERCATO_RATE_LIMITS", "on"}, {"MERCATO_REDIS_KEY_PREFIX", "acct-" + random_suffix() + ":"}}};
  require_ready(n);
  http_client c{n.port()};
  const auto email = "victim-" + random_suffix() + "@example.com";
  REQUIRE(post_json(c, "/api/v1/auth/register", {{"email", email}, {"password", "correct horse battery"}, {"name", "V"}})
              .status == 201);
  for (int i = 0; i < 5; ++i) {
    CHECK(post_json(c, "/api/v1/auth/login", {{"email", email}, {"password", "guess number " + std::to_string(i)}})
              .status == 401);
  }
  // Blocked now, even with the right password; other accounts are not.
  auto blocked = post_json(c, "/api/v1/auth/login", {{"email", email}, {"password", "correct horse battery"}});
  CHECK(blocked.status == 429);
  CHECK(code_of(blocked) == "login_throttled");
  CHECK(std::stoi(blocked.header("retry-after")) >= 1);
  CHECK(post_json(c, "/api/v1/auth/login", {{"email", "someone-else@example.com"}, {"password", "whatever it is"}})
            .status == 401);
}

TEST_CASE("a category created on one node is visible through the other node's cache") {
  const auto admin_email = "cache-admin-" + random_suffix() + "@example.com";
  // Its own database: a new category must not show up in other tests' category trees.
  mercato::test::scratch_database db;
  const env_map env{{"MERCATO_PG_DSN", db.dsn()},
                    {"MERCATO_REDIS_KEY_PREFIX", "cache-" + random_suffix() + ":"},
                    {"MERCATO_ADMIN_EMAIL", admin_email},
                    {"MERCATO_ADMIN_PASSWORD", "admin password for tests"}};
  node_process a{{"--demo"}, env};
  node_process b{{"--demo"}, env};
  require_ready(a);
  require_ready(b);
  http_client ca{a.port()};
  http_client cb{b.port()};

  // Warm B's cache and see it serve from there.
  REQUIRE(cb.get("/api/v1/categories").status == 200);
  REQUIRE(cb.get("/api/v1/categories").status == 200);
  CHECK(metric(cb, "mercato_cache_hit_ratio") > 0);

  auto login = post_json(ca, "/api/v1/auth/login", {{"email", admin_email}, {"password", "admin password for tests"}});
  REQUIRE_MESSAGE(login.status == 200, login.body);
  const auto token = std::string(login.json().at("access_token").as_string());
  const auto name = "Cache probe " + random_suffix();
  auto created = post_json(ca, "/api/v1/categories", {{"name", name}}, token);
  REQUIRE_MESSAGE(created.status == 201, created.body);
  // The writer's own node sees it at once.
  CHECK(ca.get("/api/v1/categories").body.find(name) != std::string::npos);

  // The other node within a few generation checks (1 s each).
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  bool seen = false;
  while (!seen && std::chrono::steady_clock::now() < deadline) {
    seen = cb.get("/api/v1/categories").body.find(name) != std::string::npos;
    if (!seen) {
      std::this_thread::sleep_for(100ms);
    }
  }
  CHECK_MESSAGE(seen, "node B still serves the old category tree after 5 s");
}
