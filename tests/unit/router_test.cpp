#include <doctest/doctest.h>

#include "http/router.hpp"

using namespace mercato::http;

namespace {
handler noop() {
  return [](std::shared_ptr<request_context>, responder) {};
}
}  // namespace

TEST_CASE("router matches literal paths and methods") {
  router r;
  r.add(bhttp::verb::get, "/api/v1/products", noop());
  r.add(bhttp::verb::post, "/api/v1/products", noop(), json_route());
  auto m = r.match(bhttp::verb::get, "/api/v1/products");
  REQUIRE(m.outcome == route_match::kind::found);
  CHECK(m.matched->pattern == "/api/v1/products");
  CHECK_FALSE(m.matched->options.json_body);
  auto p = r.match(bhttp::verb::post, "/api/v1/products/");
  REQUIRE(p.outcome == route_match::kind::found);
  CHECK(p.matched->options.json_body);
}

TEST_CASE("router extracts path parameters") {
  router r;
  r.add(bhttp::verb::get, "/api/v1/carts/{id}/items/{product_id}", noop());
  auto m = r.match(bhttp::verb::get, "/api/v1/carts/c1/items/p9");
  REQUIRE(m.outcome == route_match::kind::found);
  REQUIRE(m.params.size() == 2);
  CHECK(m.params[0] == std::make_pair(std::string("id"), std::string("c1")));
  CHECK(m.params[1] == std::make_pair(std::string("product_id"), std::string("p9")));
}

TEST_CASE("literal segments win over parameters") {
  router r;
  r.add(bhttp::verb::get, "/api/v1/orders/{id}", noop());
  r.add(bhttp::verb::get, "/api/v1/orders/export", noop());
  auto lit = r.match(bhttp::verb::get, "/api/v1/orders/export");
  REQUIRE(lit.outcome == route_match::kind::found);
  CHECK(lit.matched->pattern == "/api/v1/orders/export");
  CHECK(lit.params.empty());
  auto par = r.match(bhttp::verb::get, "/api/v1/orders/42");
  REQUIRE(par.outcome == route_match::kind::found);
  CHECK(par.matched->pattern == "/api/v1/orders/{id}");
}

TEST_CASE("unknown paths are not found, known paths with other methods are 405 with the allowed list") {
  router r;
  r.add(bhttp::verb::get, "/api/v1/products/{id}", noop());
  r.add(bhttp::verb::patch, "/api/v1/products/{id}", noop());
  CHECK(r.match(bhttp::verb::get, "/api/v1/nothing").outcome == route_match::kind::not_found);
  CHECK(r.match(bhttp::verb::get, "/api/v1/products/1/extra").outcome == route_match::kind::not_found);
  CHECK(r.match(bhttp::verb::get, "/api/v1").outcome == route_match::kind::not_found);
  auto m = r.match(bhttp::verb::delete_, "/api/v1/products/1");
  REQUIRE(m.outcome == route_match::kind::method_not_allowed);
  REQUIRE(m.allowed.size() == 2);
  CHECK(m.params.empty());
}

TEST_CASE("HEAD is served by the GET route") {
  router r;
  r.add(bhttp::verb::get, "/healthz", noop());
  auto m = r.match(bhttp::verb::head, "/healthz");
  REQUIRE(m.outcome == route_match::kind::found);
  CHECK(m.matched->method == bhttp::verb::get);
}

TEST_CASE("malformed and duplicate patterns are rejected") {
  router r;
  r.add(bhttp::verb::get, "/a/{id}", noop());
  CHECK_THROWS_AS(r.add(bhttp::verb::get, "/a/{id}", noop()), std::invalid_argument);
  CHECK_THROWS_AS(r.add(bhttp::verb::get, "/a/{other}/b", noop()), std::invalid_argument);
  CHECK_THROWS_AS(r.add(bhttp::verb::get, "no-slash", noop()), std::invalid_argument);
  CHECK_THROWS_AS(r.add(bhttp::verb::get, "/a/x{y", noop()), std::invalid_argument);
}

TEST_CASE("split_path drops empty segments") {
  auto s = split_path("//a///b/");
  REQUIRE(s.size() == 2);
  CHECK(s[0] == "a");
  CHECK(s[1] == "b");
  CHECK(split_path("/").empty());
}
