// End-to-end: carts over HTTP against a running node (API.md "Carts"). Every cart is an entity of the
// runtime reached through the bridge; stock and prices come from the committed catalog and inventory.
#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>
#include <pqxx/pqxx>

#include "security/jwt.hpp"
#include "support/http_client.hpp"
#include "support/node_process.hpp"
#include "support/scratch_database.hpp"

namespace json = boost::json;
using mercato::test::http_client;
using mercato::test::http_reply;
using mercato::test::node_process;
using namespace std::chrono_literals;

namespace {

const std::string admin_email = "cadmin-" + std::to_string(std::random_device{}()) + "@example.com";
const std::string admin_password = "admin password for cart tests";

mercato::test::scratch_database& database() {
  static mercato::test::scratch_database db;
  return db;
}

node_process& node() {
  static node_process n{{"--demo"},
                        {{"MERCATO_PG_DSN", database().dsn()},
                         {"MERCATO_RATE_LIMITS", "off"},
                         {"MERCATO_ADMIN_EMAIL", admin_email},
                         {"MERCATO_ADMIN_PASSWORD", admin_password},
                         {"MERCATO_REDIS_KEY_PREFIX", "cart-e2e-" + std::to_string(std::random_device{}()) + ":"}}};
  static const bool ready = n.wait_ready(60s);
  REQUIRE_MESSAGE(ready, "mercatod did not become ready; its log:\n" << n.log());
  return n;
}

using headers = std::vector<std::pair<std::string, std::string>>;

headers with(headers h, bool json_body = false) {
  if (json_body) {
    h.emplace_back("Content-Type", "application/json");
  }
  return h;
}

std::string str(const json::value& v, const char* key) { return std::string(v.at(key).as_string()); }

std::string code_of(const http_reply& r) {
  try {
    return str(r.json(), "code");
  } catch (...) {
    return "<no problem body: " + r.body + ">";
  }
}

std::int64_t amount(const json::value& cart, const char* total) {
  return cart.at("totals").at(total).at("amount").to_number<std::int64_t>();
}

std::string register_user(http_client& c) {
  static std::mt19937_64 gen{std::random_device{}()};
  const auto email = "cart-" + std::to_string(gen()) + "@example.com";
  auto r = c.request("POST", "/api/v1/auth/register",
                     json::serialize(json::object{{"email", email}, {"password", "correct horse battery"}, {"name", "C"}}),
                     with({}, true));
  REQUIRE_MESSAGE(r.status == 201, r.body);
  return str(r.json(), "access_token");
}

std::string admin_token(http_client& c) {
  auto r = c.request("POST", "/api/v1/auth/login",
                     json::serialize(json::object{{"email", admin_email}, {"password", admin_password}}), with({}, true));
  REQUIRE_MESSAGE(r.status == 200, r.body);
  return str(r.json(), "access_token");
}

struct product {
  std::string id;
  std::int64_t price = 0;
  std::int64_t available = 0;
};

// An active demo product with at least `min_available` units and a price in [lo, hi] (minor units).
product demo_product(http_client& c, std::int64_t min_available, std::int64_t lo = 0, std::int64_t hi = 1'000'000'000) {
  std::string cursor;
  for (int page = 0; page < 10; ++page) {
    auto r = c.get("/api/v1/products?limit=100&in_stock=true" + (cursor.empty() ? "" : "&cursor=" + cursor));
    REQUIRE(r.status == 200);
    const auto j = r.json();
    for (const auto& p : j.at("data").as_array()) {
      const auto price = p.at("current_price").at("amount").to_number<std::int64_t>();
      const auto available = p.at("stock").at("available").to_number<std::int64_t>();
      if (available >= min_available && price >= lo && price <= hi) {
        return {str(p, "id"), price, available};
      }
    }
    if (j.at("meta").at("next_cursor").is_null()) {
      break;
    }
    cursor = str(j.at("meta"), "next_cursor");
  }
  FAIL("no demo product with " << min_available << " available and a price in [" << lo << ", " << hi << "]");
  return {};
}

json::object item(const std::string& product_id, int quantity) {
  return {{"product_id", product_id}, {"quantity", quantity}};
}

std::int64_t stored_version(const std::string& cart_id) {
  pqxx::connection conn{database().dsn()};
  pqxx::nontransaction tx{conn};
  auto r = tx.exec_params("SELECT version FROM entity_snapshots WHERE kind = 'cart' AND id = $1", cart_id);
  return r.empty() ? 0 : r[0][0].as<std::int64_t>();
}

}  // namespace

TEST_CASE("a guest cart: token once, lines, stock and version checks, totals") {
  http_client c{node().port()};
  auto created = c.request("POST", "/api/v1/carts");
  REQUIRE_MESSAGE(created.status == 201, created.body);
  const auto cart = created.json();
  const auto id = str(cart, "id");
  const auto token = str(cart, "cart_token");
  CHECK(token.size() >= 32);
  CHECK(cart.at("customer_id").is_null());
  CHECK(cart.at("items").as_array().empty());
  CHECK(created.header("etag") == "\"1\"");
  CHECK(created.header("location") == "/api/v1/carts/" + id);
  CHECK(stored_version(id) == 1);  // acknowledged = committed

  // Without its token (or with another) the cart does not exist for the caller.
  CHECK(c.get("/api/v1/carts/" + id).status == 404);
  CHECK(c.get("/api/v1/carts/" + id, {{"X-Cart-Token", "not-the-token"}}).status == 404);
  auto read = c.get("/api/v1/carts/" + id, {{"X-Cart-Token", token}});
  REQUIRE(read.status == 200);
  CHECK_FALSE(read.json().as_object().contains("cart_token"));  // returned once only
  CHECK(c.get("/api/v1/carts/" + id, {{"X-Cart-Token", token}, {"If-None-Match", "\"1\""}}).status == 304);

  const auto cheap = demo_product(c, 3);
  const headers guest{{"X-Cart-Token", token}};
  auto added = c.request("POST", "/api/v1/carts/" + id + "/items", json::serialize(item(cheap.id, 2)), with(guest, true));
  REQUIRE_MESSAGE(added.status == 200, added.body);
  auto a = added.json();
  CHECK(a.at("version").to_number<std::int64_t>() == 2);
  CHECK(added.header("etag") == "\"2\"");
  REQUIRE(a.at("items").as_array().size() == 1);
  CHECK(a.at("items").at(0).at("quantity").to_number<int>() == 2);
  CHECK(a.at("items").at(0).at("unit_price").at("amount").to_number<std::int64_t>() == cheap.price);
  CHECK(a.at("items").at(0).at("line_total").at("amount").to_number<std::int64_t>() == 2 * cheap.price);
  CHECK(amount(a, "subtotal") == 2 * cheap.price);
  // Flat shipping below the free-shipping threshold (50.00), none from it on.
  CHECK(amount(a, "shipping") == (2 * cheap.price < 5000 ? 499 : 0));
  CHECK(amount(a, "total") == amount(a, "subtotal") + amount(a, "tax") + amount(a, "shipping"));
  CHECK(stored_version(id) == 2);

  // More than is available: 409 insufficient_stock, nothing changes.
  auto greedy = c.request("POST", "/api/v1/carts/" + id + "/items",
                          json::serialize(item(cheap.id, static_cast<int>(std::min<std::int64_t>(cheap.available, 998)))),
                          with(guest, true));
  CHECK(greedy.status == 409);
  CHECK(code_of(greedy) == "insufficient_stock");
  CHECK(stored_version(id) == 2);

  // Unknown product → 404; bad input → 400 listing each field; a foreign field is refused.
  auto unknown = c.request("POST", "/api/v1/carts/" + id + "/items",
                           json::serialize(item("00000000-0000-4000-8000-00000000dead", 1)), with(guest, true));
  CHECK(unknown.status == 404);
  auto bad = c.request("POST", "/api/v1/carts/" + id + "/items",
                       R"({"product_id": "nope", "quantity": 0, "price": 1})", with(guest, true));
  CHECK(bad.status == 400);
  CHECK(code_of(bad) == "invalid_request");
  CHECK(bad.body.find("/product_id") != std::string::npos);
  CHECK(bad.body.find("/quantity") != std::string::npos);
  CHECK(bad.body.find("/price") != std::string::npos);
  CHECK(stored_version(id) == 2);

  // If-Match: a stale version is 412 and changes nothing; the current one goes through.
  auto stale = c.request("PATCH", "/api/v1/carts/" + id + "/items/" + cheap.id, R"({"quantity": 1})",
                         with({{"X-Cart-Token", token}, {"If-Match", "\"1\""}}, true));
  CHECK(stale.status == 412);
  CHECK(code_of(stale) == "precondition_failed");
  auto set = c.request("PATCH", "/api/v1/carts/" + id + "/items/" + cheap.id, R"({"quantity": 1})",
                       with({{"X-Cart-Token", token}, {"If-Match", "\"2\""}}, true));
  REQUIRE_MESSAGE(set.status == 200, set.body);
  CHECK(set.json().at("items").at(0).at("quantity").to_number<int>() == 1);
  CHECK(set.json().at("version").to_number<std::int64_t>() == 3);

  // Remove the line; removing it again is 404; the cart is empty again.
  auto removed = c.request("DELETE", "/api/v1/carts/" + id + "/items/" + cheap.id, {}, guest);
  REQUIRE(removed.status == 200);
  CHECK(removed.json().at("items").as_array().empty());
  CHECK(amount(removed.json(), "shipping") == 0);
  CHECK(c.request("DELETE", "/api/v1/carts/" + id + "/items/" + cheap.id, {}, guest).status == 404);
  CHECK(stored_version(id) == 4);
}

TEST_CASE("a customer's cart is the customer's: others get 404, an admin may read it") {
  http_client c{node().port()};
  const auto alice = register_user(c);
  const auto bob = register_user(c);
  auto created = c.request("POST", "/api/v1/carts", R"({"currency": "USD"})",
                           with({{"Authorization", "Bearer " + alice}}, true));
  REQUIRE_MESSAGE(created.status == 201, created.body);
  const auto cart = created.json();
  const auto id = str(cart, "id");
  CHECK_FALSE(cart.as_object().contains("cart_token"));
  CHECK_FALSE(cart.at("customer_id").is_null());

  const auto p = demo_product(c, 1);
  auto mine = c.request("POST", "/api/v1/carts/" + id + "/items", json::serialize(item(p.id, 1)),
                        with({{"Authorization", "Bearer " + alice}}, true));
  CHECK_MESSAGE(mine.status == 200, mine.body);
  // Bob can neither read nor change it, nor can an anonymous caller.
  CHECK(c.get("/api/v1/carts/" + id, {{"Authorization", "Bearer " + bob}}).status == 404);
  CHECK(c.request("POST", "/api/v1/carts/" + id + "/items", json::serialize(item(p.id, 1)),
                  with({{"Authorization", "Bearer " + bob}}, true))
            .status == 404);
  CHECK(c.get("/api/v1/carts/" + id).status == 404);
  CHECK(stored_version(id) == 2);
  auto admin_read = c.get("/api/v1/carts/" + id, {{"Authorization", "Bearer " + admin_token(c)}});
  CHECK(admin_read.status == 200);
  // Unknown and malformed ids are simply not found.
  CHECK(c.get("/api/v1/carts/00000000-0000-4000-8000-000000000000", {{"Authorization", "Bearer " + alice}}).status ==
        404);
  CHECK(c.get("/api/v1/carts/not-a-uuid", {{"Authorization", "Bearer " + alice}}).status == 404);
  // A bad body for a new cart is 400.
  auto bad = c.request("POST", "/api/v1/carts", R"({"currency": "dollars", "owner": "x"})", with({}, true));
  CHECK(bad.status == 400);
  CHECK(bad.body.find("/currency") != std::string::npos);
  CHECK(bad.body.find("/owner") != std::string::npos);
}

TEST_CASE("an add repeated with its Idempotency-Key is applied once") {
  http_client c{node().port()};
  auto created = c.request("POST", "/api/v1/carts");
  REQUIRE(created.status == 201);
  const auto id = str(created.json(), "id");
  const headers guest{{"X-Cart-Token", str(created.json(), "cart_token")}, {"Idempotency-Key", "add-once-1"}};
  const auto p = demo_product(c, 2);
  auto first = c.request("POST", "/api/v1/carts/" + id + "/items", json::serialize(item(p.id, 1)), with(guest, true));
  REQUIRE_MESSAGE(first.status == 200, first.body);
  auto again = c.request("POST", "/api/v1/carts/" + id + "/items", json::serialize(item(p.id, 1)), with(guest, true));
  REQUIRE_MESSAGE(again.status == 200, again.body);
  CHECK(again.json().at("version") == first.json().at("version"));
  CHECK(again.json().at("items").at(0).at("quantity").to_number<int>() == 1);
  CHECK(stored_version(id) == 2);
}

TEST_CASE("an archived product cannot be added") {
  http_client c{node().port()};
  const auto admin = admin_token(c);
  const auto p = demo_product(c, 1);
  auto archived = c.request("DELETE", "/api/v1/products/" + p.id, {}, {{"Authorization", "Bearer " + admin}});
  REQUIRE_MESSAGE(archived.status == 200, archived.body);
  auto created = c.request("POST", "/api/v1/carts");
  REQUIRE(created.status == 201);
  const auto id = str(created.json(), "id");
  auto add = c.request("POST", "/api/v1/carts/" + id + "/items", json::serialize(item(p.id, 1)),
                       with({{"X-Cart-Token", str(created.json(), "cart_token")}}, true));
  CHECK(add.status == 404);
  CHECK(code_of(add) == "not_found");
}

TEST_CASE("inventory: read by anyone, adjusted by an admin (not a customer), never below what is reserved") {
  http_client c{node().port()};
  const auto admin = admin_token(c);
  const auto customer = register_user(c);
  const auto p = demo_product(c, 1);
  auto before = c.get("/api/v1/inventory/" + p.id);
  REQUIRE_MESSAGE(before.status == 200, before.body);
  const auto inv = before.json();
  const auto on_hand = inv.at("on_hand").to_number<std::int64_t>();
  const auto version = inv.at("version").to_number<std::int64_t>();
  CHECK(inv.at("available").to_number<std::int64_t>() == on_hand - inv.at("reserved").to_number<std::int64_t>());
  CHECK(before.header("etag") == "\"" + std::to_string(version) + "\"");
  CHECK(c.get("/api/v1/inventory/00000000-0000-4000-8000-00000000dead").status == 404);

  const auto adjust = [&](const std::string& token, const std::string& body, headers extra = {}) {
    extra.emplace_back("Authorization", "Bearer " + token);
    return c.request("POST", "/api/v1/inventory/" + p.id + "/adjustments", body, with(extra, true));
  };
  auto refused = adjust(customer, R"({"delta": 5, "reason": "restock"})");
  CHECK(refused.status == 403);
  auto zero = adjust(admin, R"({"delta": 0, "reason": ""})");
  CHECK(zero.status == 400);
  CHECK(zero.body.find("/delta") != std::string::npos);
  CHECK(zero.body.find("/reason") != std::string::npos);
  auto stale = adjust(admin, R"({"delta": 5, "reason": "restock"})", {{"If-Match", "\"999999\""}});
  CHECK(stale.status == 412);
  auto restock = adjust(admin, R"({"delta": 5, "reason": "restock"})", {{"If-Match", "\"" + std::to_string(version) + "\""}});
  REQUIRE_MESSAGE(restock.status == 200, restock.body);
  CHECK(restock.json().at("on_hand").to_number<std::int64_t>() == on_hand + 5);
  CHECK(restock.json().at("version").to_number<std::int64_t>() == version + 1);
  auto too_much = adjust(admin, "{\"delta\": " + std::to_string(-(on_hand + 6)) + ", \"reason\": \"stocktake\"}");
  CHECK(too_much.status == 409);
  CHECK(code_of(too_much) == "insufficient_stock");
  CHECK(c.get("/api/v1/inventory/" + p.id).json().at("on_hand").to_number<std::int64_t>() == on_hand + 5);

  // The product page follows the committed inventory (its cache is invalidated by the StockChanged event).
  bool seen = false;
  for (int i = 0; i < 200 && !seen; ++i) {
    auto page = c.get("/api/v1/products/" + p.id);
    seen = page.status == 200 && page.json().at("stock").at("available").to_number<std::int64_t>() ==
                                     restock.json().at("available").to_number<std::int64_t>();
    if (!seen) {
      std::this_thread::sleep_for(25ms);
    }
  }
  CHECK(seen);
}

TEST_CASE("Idempotency-Key: a repeat replays the first answer, another body is 422, a running one 409, across a restart") {
  http_client c{node().port()};
  const std::string key = "new-cart-" + std::to_string(std::random_device{}());
  auto first = c.request("POST", "/api/v1/carts", R"({"currency": "USD"})", with({{"Idempotency-Key", key}}, true));
  REQUIRE_MESSAGE(first.status == 201, first.body);
  CHECK(first.header("idempotent-replayed").empty());
  auto again = c.request("POST", "/api/v1/carts", R"({"currency": "USD"})", with({{"Idempotency-Key", key}}, true));
  CHECK(again.status == 201);
  CHECK(again.header("idempotent-replayed") == "true");
  CHECK(again.body == first.body);  // the same cart, not a second one
  CHECK(again.header("etag") == first.header("etag"));
  CHECK(again.header("location") == first.header("location"));
  {
    pqxx::connection conn{database().dsn()};
    pqxx::nontransaction tx{conn};
    CHECK(tx.exec_params1("SELECT COUNT(*) FROM entity_snapshots WHERE kind = 'cart' AND id = $1",
                          str(first.json(), "id"))[0]
              .as<int>() == 1);
  }
  auto other = c.request("POST", "/api/v1/carts", R"({"currency": "EUR"})", with({{"Idempotency-Key", key}}, true));
  CHECK(other.status == 422);
  CHECK(code_of(other) == "idempotency_key_reused");
  auto bad_key = c.request("POST", "/api/v1/carts", {}, {{"Idempotency-Key", std::string(300, 'k')}});
  CHECK(bad_key.status == 400);

  // A request with this key is still running (its claim is in the store, unanswered): 409.
  const std::string running = "running-" + std::to_string(std::random_device{}());
  {
    pqxx::connection conn{database().dsn()};
    pqxx::work tx{conn};
    tx.exec_params("INSERT INTO idempotency_keys (scope, key, request_hash, state) VALUES ('ip:127.0.0.1', $1, "
                   "decode($2, 'hex'), 'running')",
                   running, mercato::security::sha256_hex("POST /api/v1/carts\n"));
    tx.commit();
  }
  auto busy = c.request("POST", "/api/v1/carts", {}, {{"Idempotency-Key", running}});
  CHECK(busy.status == 409);
  CHECK(code_of(busy) == "idempotency_key_in_use");

  // Kept in PostgreSQL: a node started afterwards (the first one stopped) replays it too.
  std::string replayed_body;
  {
    node_process n{{"--demo"}, {{"MERCATO_PG_DSN", database().dsn()}, {"MERCATO_RATE_LIMITS", "off"}}};
    REQUIRE_MESSAGE(n.wait_ready(60s), n.log());
    http_client c2{n.port()};
    auto created = c2.request("POST", "/api/v1/carts", {}, {{"Idempotency-Key", key + "-restart"}});
    REQUIRE(created.status == 201);
    replayed_body = created.body;
    CHECK(n.stop(SIGTERM, 20s) == 0);
  }
  node_process n2{{"--demo"}, {{"MERCATO_PG_DSN", database().dsn()}, {"MERCATO_RATE_LIMITS", "off"}}};
  REQUIRE_MESSAGE(n2.wait_ready(60s), n2.log());
  http_client c3{n2.port()};
  auto after = c3.request("POST", "/api/v1/carts", {}, {{"Idempotency-Key", key + "-restart"}});
  CHECK(after.status == 201);
  CHECK(after.header("idempotent-replayed") == "true");
  CHECK(after.body == replayed_body);
}
