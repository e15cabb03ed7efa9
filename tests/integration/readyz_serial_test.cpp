// /readyz follows PostgreSQL: 503 while it is down, 200 again once it is back, with no restart.
// Stops the shared test PostgreSQL, hence *_serial_test (runs alone).
#include <doctest/doctest.h>

#include <csignal>

#include "support/http_client.hpp"
#include "support/node_process.hpp"

using namespace mercato::test;
using namespace std::chrono_literals;

namespace {

int services(const std::string& verb) {
  const char* profile = std::getenv("MERCATO_TEST_PROFILE");
  return run_command(services_script() + " " + verb + " --profile " + (profile ? profile : "test") + " >&2");
}

// Restarts PostgreSQL even when a check fails, so later tests find it running.
struct pg_restorer {
  ~pg_restorer() { services("pg-start"); }
};

}  // namespace

TEST_CASE("readyz turns 503 while PostgreSQL is down and 200 when it returns") {
  node_process node{{"--demo"}};
  REQUIRE_MESSAGE(node.wait_ready(), node.log());
  http_client client{node.port()};
  CHECK(client.get("/api/v1/products?limit=1").status == 200);

  pg_restorer restore;
  REQUIRE(services("pg-stop") == 0);
  CHECK_MESSAGE(wait_for_status(node.port(), "/readyz", 503, 20s), "readyz never reported the outage");
  auto ready = client.get("/readyz");
  CHECK(ready.status == 503);
  CHECK(ready.json().at("checks").at("postgres").as_string() == "unavailable");
  // A read the cache already holds is still served; any other fails cleanly with a retryable problem,
  // not a hang or a 500.
  CHECK(client.get("/api/v1/products?limit=1").status == 200);
  auto products = client.get("/api/v1/products?limit=2");
  CHECK(products.status == 503);
  CHECK(products.header("content-type") == "application/problem+json");
  CHECK(products.json().at("code").as_string() == "database_unavailable");
  CHECK(client.get("/healthz").status == 200);

  REQUIRE(services("pg-start") == 0);
  CHECK_MESSAGE(wait_for_status(node.port(), "/readyz", 200, 30s), "readyz did not recover");
  CHECK(client.get("/api/v1/products?limit=1").status == 200);
  CHECK(node.running());
  CHECK(node.stop(SIGTERM) == 0);
}

TEST_CASE("a node started while PostgreSQL is down becomes ready once it appears") {
  pg_restorer restore;
  REQUIRE(services("pg-stop") == 0);
  node_process node{{"--demo"}};
  CHECK_MESSAGE(wait_for_status(node.port(), "/healthz", 200, 30s), node.log());
  CHECK(wait_for_status(node.port(), "/readyz", 503, 5s));
  REQUIRE(services("pg-start") == 0);
  CHECK_MESSAGE(node.wait_ready(30s), node.log());
  http_client client{node.port()};
  auto ready = client.get("/readyz");
  CHECK(ready.json().at("checks").at("migrations").as_string() == "applied");
  CHECK(node.stop(SIGTERM) == 0);
}
