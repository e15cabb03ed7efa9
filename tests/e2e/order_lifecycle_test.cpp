// End-to-end: what happens to an order after checkout (API.md "Checkout, orders, payments"): cancel
// (refund in full, stock back), ship (a sandbox shipment with its label), deliver, a return received
// (stock back, the returned lines refunded), refunds of a payment (never more than captured minus
// refunded), and who may do each; every refused request changes nothing.
#include <doctest/doctest.h>

#include <chrono>
#include <random>
#include <string>

#include <boost/json.hpp>

#include "support/http_client.hpp"
#include "support/node_process.hpp"
#include "support/scratch_database.hpp"
#include "support/shop.hpp"

namespace json = boost::json;
using mercato::test::http_client;
using mercato::test::http_reply;
using mercato::test::node_process;
using namespace mercato::test::shop;
using namespace std::chrono_literals;

namespace {

mercato::test::scratch_database& database() {
  static mercato::test::scratch_database db;
  return db;
}

node_process& node() {
  static node_process n{{"--demo"},
                        {{"MERCATO_PG_DSN", database().dsn()},
                         {"MERCATO_RATE_LIMITS", "off"},
                         {"MERCATO_REDIS_KEY_PREFIX", "lifecycle-e2e-" + std::to_string(std::random_device{}()) + ":"}}};
  static const bool ready = n.wait_ready(60s);
  REQUIRE_MESSAGE(ready, "mercatod did not become ready; its log:\n" << n.log());
  return n;
}

std::string admin(http_client& c) {
  static const std::string token = admin_token(c, database().dsn());
  return token;
}

long db_count(const std::string& sql, const std::string& param = {}) { return scalar(database().dsn(), sql, param); }

// A paid order of `qty` units of a fresh product with 10 in stock.
struct paid_order {
  customer who;
  std::string product;
  json::value order;
  std::string id() const { return str(order, "id"); }
  std::string payment() const { return str(order.at("payment"), "id"); }
};

paid_order buy(http_client& c, int qty) {
  static int next = 0;
  paid_order p;
  p.product = product_with_stock(c, database().dsn(), next++, 10);
  const auto cart = new_cart(c, p.who);
  add(c, p.who, cart, p.product, qty);
  auto r = checkout(c, p.who, cart, "tok_ok", "buy-" + random_uuid());
  REQUIRE_MESSAGE(r.status == 201, r.body);
  p.order = r.json();
  return p;
}


}  // namespace

TEST_CASE("cancel a paid order: refunded in full, stock back, once; only its customer, support or admin") {
  http_client c{node().port()};
  auto p = buy(c, 3);
  CHECK(available_of(c, p.product) == 7);
  customer stranger;
  CHECK(post(c, "/api/v1/orders/" + p.id() + "/cancel", stranger.token).status == 404);

  auto canceled = post(c, "/api/v1/orders/" + p.id() + "/cancel", p.who.token);
  REQUIRE_MESSAGE(canceled.status == 200, canceled.body);
  CHECK(str(canceled.json(), "status") == "canceled");
  CHECK(available_of(c, p.product) == 10);
  auto pay = c.get("/api/v1/payments/" + p.payment(), bearer(p.who.token));
  REQUIRE(pay.status == 200);
  CHECK(str(pay.json(), "status") == "refunded");
  CHECK(pay.json().at("refunded_amount") == p.order.at("total_amount"));
  // Again: the same answer, nothing refunded or restocked twice.
  auto again = post(c, "/api/v1/orders/" + p.id() + "/cancel", p.who.token);
  CHECK(again.status == 200);
  CHECK(available_of(c, p.product) == 10);
  CHECK(db_count("SELECT COUNT(*) FROM outbox WHERE event_type = 'RefundIssued' AND data->>'order_id' = $1", p.id()) == 1);
  CHECK(db_count("SELECT COUNT(*) FROM sandbox_payment_operations WHERE operation = 'refund' AND key LIKE '%' || $1 || '%'",
                 p.payment()) == 1);
}

TEST_CASE("ship, label, deliver, return, receive: stock back and the returned line refunded") {
  http_client c{node().port()};
  auto p = buy(c, 2);
  const auto unit = p.order.at("items").at(0).at("unit_price").at("amount").to_number<std::int64_t>();
  // A customer cannot ship; an admin can, with a sandbox shipment.
  const auto real = registered_customer(c);
  auto refused = post(c, "/api/v1/orders/" + p.id() + "/ship", real.token, R"({"carrier": "x"})");
  CHECK(refused.status == 403);
  CHECK(code_of(refused) == "forbidden");
  auto shipped = post(c, "/api/v1/orders/" + p.id() + "/ship", admin(c), "{}");
  // Shipping again: the same shipment (the carrier is asked once).
  REQUIRE_MESSAGE(shipped.status == 200, shipped.body);
  CHECK(str(shipped.json(), "status") == "shipped");
  const auto shipment = shipped.json().at("shipments").at(0);
  CHECK(str(shipment, "carrier") == "sandbox");
  CHECK(str(shipment, "tracking_number").rfind("SBX", 0) == 0);
  auto reship = post(c, "/api/v1/orders/" + p.id() + "/ship", admin(c), "{}");
  REQUIRE(reship.status == 200);
  CHECK(reship.json().at("shipments").as_array().size() == 1);
  CHECK(db_count("SELECT COUNT(*) FROM outbox WHERE event_type = 'OrderShipped' AND aggregate_id = $1", p.id()) == 1);
  auto label = c.get(str(shipment, "label_url"), bearer(p.who.token));
  REQUIRE(label.status == 200);
  CHECK(label.header("content-type") == "image/svg+xml");
  CHECK(label.body.find(str(shipment, "tracking_number")) != std::string::npos);
  // Shipped: no longer cancelable by anyone.
  auto late = post(c, "/api/v1/orders/" + p.id() + "/cancel", admin(c));
  CHECK(late.status == 409);
  CHECK(code_of(late) == "invalid_transition");
  // No return before delivery.
  const auto one_back = json::serialize(json::object{
      {"items", json::array{json::object{{"product_id", p.product}, {"quantity", 1}}}}, {"reason", "too big"}});
  CHECK(post(c, "/api/v1/orders/" + p.id() + "/returns", p.who.token, one_back).status == 409);
  auto delivered = post(c, "/api/v1/orders/" + p.id() + "/deliver", admin(c));
  REQUIRE_MESSAGE(delivered.status == 200, delivered.body);
  CHECK(str(delivered.json(), "status") == "delivered");

  // Returns: bad lines are 400 and change nothing; the customer's return is 201.
  const auto too_many = json::serialize(json::object{
      {"items", json::array{json::object{{"product_id", p.product}, {"quantity", 3}}}}, {"reason", "x"}});
  auto bad = post(c, "/api/v1/orders/" + p.id() + "/returns", p.who.token, too_many);
  CHECK(bad.status == 400);
  CHECK(bad.body.find("/items/0/quantity") != std::string::npos);
  customer stranger;
  CHECK(post(c, "/api/v1/orders/" + p.id() + "/returns", stranger.token, one_back).status == 404);
  auto requested = post(c, "/api/v1/orders/" + p.id() + "/returns", p.who.token, one_back);
  REQUIRE_MESSAGE(requested.status == 201, requested.body);
  CHECK(str(requested.json(), "status") == "return_requested");
  const auto return_id = str(requested.json().at("returns").at(0), "id");

  // Received by an admin: one unit back in stock, that line's value refunded.
  CHECK(post(c, "/api/v1/orders/" + p.id() + "/returns/" + return_id + "/receive", real.token).status == 403);
  const auto before = available_of(c, p.product);
  auto received = post(c, "/api/v1/orders/" + p.id() + "/returns/" + return_id + "/receive", admin(c));
  REQUIRE_MESSAGE(received.status == 200, received.body);
  CHECK(str(received.json(), "status") == "partially_refunded");
  CHECK(received.json().at("returns").at(0).at("refund_amount").at("amount").to_number<std::int64_t>() == unit);
  CHECK(available_of(c, p.product) == before + 1);
  auto pay = c.get("/api/v1/payments/" + p.payment(), bearer(p.who.token));
  CHECK(str(pay.json(), "status") == "partially_refunded");
  CHECK(pay.json().at("refunded_amount").at("amount").to_number<std::int64_t>() == unit);
  // Received again: nothing more.
  auto again = post(c, "/api/v1/orders/" + p.id() + "/returns/" + return_id + "/receive", admin(c));
  CHECK(again.status == 200);
  CHECK(available_of(c, p.product) == before + 1);
  CHECK(c.get("/api/v1/payments/" + p.payment(), bearer(p.who.token)).json().at("refunded_amount").at("amount") ==
        pay.json().at("refunded_amount").at("amount"));
}

TEST_CASE("refunds: support/admin with an Idempotency-Key, never more than captured minus refunded") {
  http_client c{node().port()};
  auto p = buy(c, 1);
  const auto total = p.order.at("total_amount").at("amount").to_number<std::int64_t>();
  const auto path = "/api/v1/payments/" + p.payment() + "/refunds";
  auto body = [](std::int64_t amount) {
    return json::serialize(
        json::object{{"amount", {{"amount", amount}, {"currency", "USD"}}}, {"reason", "goodwill"}});
  };
  CHECK(post(c, path, registered_customer(c).token, body(1), {{"Idempotency-Key", "r-cust"}}).status == 403);
  CHECK(post(c, path, admin(c), body(1)).status == 400);  // no key
  auto bad = post(c, path, admin(c), R"({"amount": {"amount": -5, "currency": "USD"}})", {{"Idempotency-Key", "r-bad"}});
  CHECK(bad.status == 400);
  CHECK(bad.body.find("/reason") != std::string::npos);
  auto too_much = post(c, path, admin(c), body(total + 1), {{"Idempotency-Key", "r-big"}});
  CHECK(too_much.status == 409);
  auto part = post(c, path, admin(c), body(100), {{"Idempotency-Key", "r-1"}});
  REQUIRE_MESSAGE(part.status == 201, part.body);
  CHECK(str(part.json().at("payment"), "status") == "partially_refunded");
  auto replay = post(c, path, admin(c), body(100), {{"Idempotency-Key", "r-1"}});
  CHECK(replay.status == 201);
  CHECK(str(replay.json(), "id") == str(part.json(), "id"));
  auto rest = post(c, path, admin(c), body(total - 100), {{"Idempotency-Key", "r-2"}});
  REQUIRE_MESSAGE(rest.status == 201, rest.body);
  CHECK(str(rest.json().at("payment"), "status") == "refunded");
  auto more = post(c, path, admin(c), body(1), {{"Idempotency-Key", "r-3"}});
  CHECK(more.status == 409);
  auto pay = c.get("/api/v1/payments/" + p.payment(), bearer(admin(c)));
  CHECK(pay.json().at("refunded_amount").at("amount").to_number<std::int64_t>() == total);
  CHECK(db_count("SELECT COUNT(*) FROM sandbox_payment_operations WHERE operation = 'refund' AND approved "
                 "AND key LIKE '%' || $1 || '%'",
                 p.payment()) == 2);
}

TEST_CASE("a vendor ships only orders with its own products") {
  http_client c{node().port()};
  const auto boss = admin(c);
  // Two vendors, a user of each.
  auto vendor_user = [&](std::string& vendor_id) {
    auto v = post(c, "/api/v1/vendors", boss, json::serialize(json::object{{"name", "V " + random_uuid()}}));
    REQUIRE_MESSAGE(v.status == 201, v.body);
    vendor_id = str(v.json(), "id");
    const auto email = "vendor-" + random_uuid() + "@example.com";
    auto r = c.request("POST", "/api/v1/auth/register",
                       json::serialize(json::object{{"email", email}, {"password", "correct horse battery"}, {"name", "v"}}),
                       json_body({}));
    REQUIRE_MESSAGE(r.status == 201, r.body);
    auto linked = c.request("PUT", "/api/v1/admin/users/" + str(r.json().at("user"), "id") + "/roles",
                            json::serialize(json::object{{"roles", json::array{"vendor"}}, {"vendor_id", vendor_id}}),
                            json_body(bearer(boss)));
    REQUIRE_MESSAGE(linked.status == 200, linked.body);
    auto login = c.request("POST", "/api/v1/auth/login",
                           json::serialize(json::object{{"email", email}, {"password", "correct horse battery"}}),
                           json_body({}));
    REQUIRE_MESSAGE(login.status == 200, login.body);
    return str(login.json(), "access_token");
  };
  std::string vendor_a, vendor_b;
  const auto a = vendor_user(vendor_a);
  const auto b = vendor_user(vendor_b);
  // Vendor A's product, bought by a customer.
  auto made = post(c, "/api/v1/products", a,
                   json::serialize(json::object{{"sku", "SHIP-" + random_uuid().substr(0, 8)},
                                                {"name", "Vendor A widget"},
                                                {"base_price", {{"amount", 1500}, {"currency", "USD"}}},
                                                {"initial_stock", 5}}));
  REQUIRE_MESSAGE(made.status == 201, made.body);
  customer who;
  const auto cart = new_cart(c, who);
  add(c, who, cart, str(made.json(), "id"), 1);
  auto paid = checkout(c, who, cart, "tok_ok", "vendor-ship-1");
  REQUIRE_MESSAGE(paid.status == 201, paid.body);
  const auto order = str(paid.json(), "id");

  auto foreign = post(c, "/api/v1/orders/" + order + "/ship", b, "{}");
  CHECK(foreign.status == 404);
  // A label link a client would render must be http(s): a script link is refused and changes nothing.
  auto script_label = post(c, "/api/v1/orders/" + order + "/ship", a,
                           R"j({"carrier": "ups", "tracking_number": "1Z1", "label_url": "javascript:alert(1)"})j");
  CHECK(script_label.status == 400);
  CHECK(code_of(script_label) == "invalid_request");
  CHECK(script_label.json().at("errors").as_array().at(0).at("pointer").as_string() == "/label_url");
  CHECK(db_count("SELECT COUNT(*) FROM orders WHERE id = $1::uuid AND status = 'paid'", order) == 1);
  auto own = post(c, "/api/v1/orders/" + order + "/ship", a, "{}");
  REQUIRE_MESSAGE(own.status == 200, own.body);
  CHECK(str(own.json(), "status") == "shipped");

  // Vendor B's user buys vendor A's widget: it reads that order (its own purchase) but does not ship it
  // (the OWASP review found it could, with a carrier and tracking number of its choice).
  const customer b_buyer{str(c.get("/api/v1/me", bearer(b)).json(), "id"), b};
  const auto b_cart = new_cart(c, b_buyer);
  add(c, b_buyer, b_cart, str(made.json(), "id"), 1);
  auto bought = checkout(c, b_buyer, b_cart, "tok_ok", "vendor-ship-2");
  REQUIRE_MESSAGE(bought.status == 201, bought.body);
  const auto b_order = str(bought.json(), "id");
  CHECK(c.get("/api/v1/orders/" + b_order, bearer(b)).status == 200);
  auto self_ship = post(c, "/api/v1/orders/" + b_order + "/ship", b,
                        R"({"carrier": "fake", "tracking_number": "NOPE"})");
  CHECK(self_ship.status == 403);
  CHECK(code_of(self_ship) == "forbidden");
  CHECK(db_count("SELECT COUNT(*) FROM orders WHERE id = $1::uuid AND status = 'paid'", b_order) == 1);
  auto by_a = post(c, "/api/v1/orders/" + b_order + "/ship", a, "{}");
  REQUIRE_MESSAGE(by_a.status == 200, by_a.body);
  CHECK(str(by_a.json(), "status") == "shipped");
}
