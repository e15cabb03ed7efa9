// End-to-end: checkout, orders and payments over HTTP against a running node (API.md "Checkout, orders,
// payments"): the checkout saga reserves every line, charges through the sandbox provider, commits the
// stock and empties the cart; a decline, a provider timeout or a short line compensate (stock back, no
// charge); Idempotency-Key replays answer the same order and never charge twice; no oversell under
// concurrent checkouts; one customer never sees another's order or payment.
#include <doctest/doctest.h>

#include <chrono>
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
#include "support/shop.hpp"

namespace json = boost::json;
using mercato::test::http_client;
using mercato::test::http_reply;
using mercato::test::node_process;
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
                         {"MERCATO_CHECKOUT_PROVIDER_TIMEOUT_MS", "1000"},
                         {"MERCATO_CART_TAX_RATES", "DE=1900"},
                         {"MERCATO_REDIS_KEY_PREFIX", "checkout-e2e-" + std::to_string(std::random_device{}()) + ":"}}};
  static const bool ready = n.wait_ready(60s);
  REQUIRE_MESSAGE(ready, "mercatod did not become ready; its log:\n" << n.log());
  return n;
}

using namespace mercato::test::shop;

long query(const std::string& sql, const std::string& param = {}) {
  return mercato::test::shop::scalar(database().dsn(), sql, param);
}

// The admin account of this test's node (made once).
std::string admin_token(http_client& c) {
  static const std::string token = mercato::test::shop::admin_token(c, database().dsn());
  return token;
}

// A demo product no other test case of this file uses, with exactly `available` units available.
std::string product_with_stock(http_client& c, std::int64_t available) {
  static int next = 0;
  return mercato::test::shop::product_with_stock(c, database().dsn(), next++, available);
}

}  // namespace

TEST_CASE("checkout: the order is paid, the stock sold, the cart emptied; a replay answers the same order once") {
  http_client c{node().port()};
  customer ada;
  const auto p = product_with_stock(c, 10);
  const auto cart = new_cart(c, ada);
  add(c, ada, cart, p, 2);
  const auto cart_before = c.get("/api/v1/carts/" + cart, bearer(ada.token)).json();

  auto r = checkout(c, ada, cart, "tok_ok", "order-1", "DE");
  REQUIRE_MESSAGE(r.status == 201, r.body);
  const auto order = r.json();
  const auto order_id = str(order, "id");
  CHECK(r.header("location") == "/api/v1/orders/" + order_id);
  CHECK(str(order, "status") == "paid");
  CHECK(str(order, "order_number").rfind("MC-", 0) == 0);
  CHECK(str(order, "customer_id") == ada.id);
  REQUIRE(order.at("items").as_array().size() == 1);
  CHECK(order.at("items").at(0).at("quantity").to_number<int>() == 2);
  const auto subtotal = cart_before.at("totals").at("subtotal").at("amount").to_number<std::int64_t>();
  CHECK(order.at("subtotal").at("amount").to_number<std::int64_t>() == subtotal);
  CHECK(order.at("tax_amount").at("amount").to_number<std::int64_t>() == (subtotal * 1900 + 5000) / 10000);  // DE
  CHECK(order.at("total_amount").at("amount").to_number<std::int64_t>() ==
        subtotal + order.at("tax_amount").at("amount").to_number<std::int64_t>() +
            order.at("shipping_amount").at("amount").to_number<std::int64_t>());
  CHECK(str(order.at("payment"), "status") == "captured");
  CHECK(str(order.at("shipping_address"), "country") == "DE");
  CHECK(str(order.at("history").as_array().back(), "status") == "paid");

  // Stock sold (on hand down, nothing left reserved); the cart emptied; the projections written.
  CHECK(available_of(c, p) == 8);
  CHECK(reserved_of(c, p) == 0);
  CHECK(c.get("/api/v1/carts/" + cart, bearer(ada.token)).json().at("items").as_array().empty());
  CHECK(query("SELECT COUNT(*) FROM orders WHERE id = $1::uuid AND status = 'paid'", order_id) == 1);
  CHECK(query("SELECT COUNT(*) FROM order_items WHERE order_id = $1::uuid AND quantity = 2", order_id) == 1);
  CHECK(query("SELECT COUNT(*) FROM outbox WHERE aggregate_id = $1 AND event_type = 'OrderPlaced'", order_id) == 1);

  // The order and its payment, for their customer.
  auto read = c.get("/api/v1/orders/" + order_id, bearer(ada.token));
  REQUIRE(read.status == 200);
  CHECK(read.json().at("version") == order.at("version"));
  const auto payment_id = str(order.at("payment"), "id");
  auto pay = c.get("/api/v1/payments/" + payment_id, bearer(ada.token));
  REQUIRE_MESSAGE(pay.status == 200, pay.body);
  CHECK(str(pay.json(), "status") == "captured");
  CHECK(pay.json().at("amount").at("amount") == order.at("total_amount").at("amount"));
  CHECK(str(pay.json(), "order_id") == order_id);

  // Replays with the same key: the same order, charged once.
  auto again = checkout(c, ada, cart, "tok_ok", "order-1", "DE");
  REQUIRE_MESSAGE(again.status == 201, again.body);
  CHECK(str(again.json(), "id") == order_id);
  CHECK(again.header("idempotent-replayed") == "true");
  auto other_body = checkout(c, ada, cart, "tok_ok", "order-1", "US");
  CHECK(other_body.status == 422);
  CHECK(query("SELECT COUNT(*) FROM sandbox_payment_operations WHERE operation = 'capture' AND key LIKE '%' || $1 || '%'",
              payment_id) == 1);
  CHECK(available_of(c, p) == 8);

  // Another customer sees neither.
  customer bob;
  CHECK(c.get("/api/v1/orders/" + order_id, bearer(bob.token)).status == 404);
  CHECK(c.get("/api/v1/payments/" + payment_id, bearer(bob.token)).status == 404);
  CHECK(c.get("/api/v1/orders/" + order_id).status == 401);
}

// API6 (docs/security.md): a checkout places an order, so it spends the caller's orders budget, like the
// seed's POST /api/orders; past the budget the checkout is refused before anything is reserved or charged.
TEST_CASE("checkout spends the orders budget: past it a 429 rate_limited problem, no order, nothing reserved") {
  // A node of its own with rate limits on (this file's node runs without them) and its own database: a
  // second node on that database would join its cluster and leave shards unserved once it stops.
  mercato::test::scratch_database own;
  node_process n{{"--demo"},
                 {{"MERCATO_PG_DSN", own.dsn()},
                  {"MERCATO_RATE_LIMITS", "on"},
                  {"MERCATO_RATE_LIMIT_ORDERS", "2/15m"},
                  {"MERCATO_REDIS_KEY_PREFIX", "orders-budget-" + std::to_string(std::random_device{}()) + ":"}}};
  REQUIRE_MESSAGE(n.wait_ready(60s), "mercatod did not become ready; its log:\n" << n.log());
  http_client c{n.port()};
  customer ada;
  const auto p = mercato::test::shop::product_with_stock(c, own.dsn(), 0, 10);

  const auto first_cart = new_cart(c, ada);
  add(c, ada, first_cart, p, 1);
  auto first = checkout(c, ada, first_cart, "tok_ok", "budget-1");
  REQUIRE_MESSAGE(first.status == 201, first.body);
  auto listed = c.get("/api/v1/orders", bearer(ada.token));  // the budget's second request
  REQUIRE_MESSAGE(listed.status == 200, listed.body);

  const auto second_cart = new_cart(c, ada);
  add(c, ada, second_cart, p, 2);
  auto refused = checkout(c, ada, second_cart, "tok_ok", "budget-2");
  REQUIRE_MESSAGE(refused.status == 429, refused.body);
  CHECK(code_of(refused) == "rate_limited");
  CHECK(refused.header("content-type") == "application/problem+json");
  CHECK(refused.body.find("orders budget") != std::string::npos);
  CHECK(refused.header("ratelimit-limit") == "2");
  CHECK(refused.header("ratelimit-remaining") == "0");
  CHECK(std::stoi(refused.header("retry-after")) > 0);

  // Nothing happened: one order, one unit sold, nothing reserved, the second cart as it was.
  const auto orders = [&] {
    return mercato::test::shop::scalar(own.dsn(), "SELECT COUNT(*) FROM orders WHERE customer_id = $1::uuid", ada.id);
  };
  CHECK(orders() == 1);
  CHECK(available_of(c, p) == 9);
  CHECK(reserved_of(c, p) == 0);
  auto cart = c.get("/api/v1/carts/" + second_cart, bearer(ada.token));
  REQUIRE_MESSAGE(cart.status == 200, cart.body);
  CHECK(quantity_in(cart.json()) == 2);
  // Another customer's budget is their own.
  customer bo;
  const auto bos_cart = new_cart(c, bo);
  add(c, bo, bos_cart, p, 1);
  auto theirs = checkout(c, bo, bos_cart, "tok_ok", "budget-3");
  CHECK_MESSAGE(theirs.status == 201, theirs.body);
  CHECK(orders() == 1);
}

TEST_CASE("checkout: bad requests change nothing (no key, bad body, guest cart, empty cart, someone else's cart)") {
  http_client c{node().port()};
  customer ada;
  const auto p = product_with_stock(c, 5);
  const auto cart = new_cart(c, ada);
  add(c, ada, cart, p, 1);

  auto no_key = c.request("POST", "/api/v1/carts/" + cart + "/checkout", checkout_body("tok_ok"), json_body(bearer(ada.token)));
  CHECK(no_key.status == 400);
  CHECK(code_of(no_key) == "invalid_request");
  auto bad = c.request("POST", "/api/v1/carts/" + cart + "/checkout",
                       R"({"shipping_address": {"line1": "", "country": "usa"}, "payment": {"method": "cash"}, "x": 1})",
                       json_body(bearer(ada.token, {{"Idempotency-Key", "bad-1"}})));
  CHECK(bad.status == 400);
  for (const auto* pointer : {"/shipping_address/line1", "/shipping_address/city", "/shipping_address/country",
                              "/payment/method", "/payment/token", "/x"}) {
    CHECK_MESSAGE(bad.body.find(pointer) != std::string::npos, pointer);
  }
  auto anonymous = c.request("POST", "/api/v1/carts/" + cart + "/checkout", checkout_body("tok_ok"),
                             json_body({{"Idempotency-Key", "anon-1"}}));
  CHECK(anonymous.status == 401);
  customer bob;
  auto foreign = checkout(c, bob, cart, "tok_ok", "foreign-1");
  CHECK(foreign.status == 404);
  // A guest cart is claimed first.
  auto guest = c.request("POST", "/api/v1/carts");
  REQUIRE(guest.status == 201);
  const auto guest_id = str(guest.json(), "id");
  auto guest_checkout = c.request("POST", "/api/v1/carts/" + guest_id + "/checkout", checkout_body("tok_ok"),
                                  json_body(bearer(ada.token, {{"Idempotency-Key", "guest-1"},
                                                               {"X-Cart-Token", str(guest.json(), "cart_token")}})));
  CHECK(guest_checkout.status == 409);
  // An empty cart.
  const auto empty = new_cart(c, ada);
  auto nothing = checkout(c, ada, empty, "tok_ok", "empty-1");
  CHECK(nothing.status == 409);
  CHECK(available_of(c, p) == 5);
  CHECK(query("SELECT COUNT(*) FROM order_sagas WHERE customer_id = $1::uuid", ada.id) == 0);
}

TEST_CASE("checkout: a declined card and a provider timeout release the stock and charge nothing") {
  http_client c{node().port()};
  customer ada;
  const auto p = product_with_stock(c, 4);
  const auto cart = new_cart(c, ada);
  add(c, ada, cart, p, 3);

  auto declined = checkout(c, ada, cart, "tok_decline", "decline-1");
  CHECK(declined.status == 402);
  CHECK(code_of(declined) == "payment_declined");
  CHECK(available_of(c, p) == 4);
  CHECK(reserved_of(c, p) == 0);
  CHECK(c.get("/api/v1/carts/" + cart, bearer(ada.token)).json().at("items").as_array().size() == 1);

  auto slow = checkout(c, ada, cart, "tok_slow", "slow-1");
  CHECK(slow.status == 504);
  CHECK(code_of(slow) == "payment_timeout");
  CHECK(slow.json().at("retry_safe").as_bool());
  CHECK(available_of(c, p) == 4);
  CHECK(reserved_of(c, p) == 0);
  // Neither order was paid, nothing was captured, and both orders say why.
  CHECK(query("SELECT COUNT(*) FROM orders WHERE customer_id = $1::uuid AND status = 'paid'", ada.id) == 0);
  CHECK(query("SELECT COUNT(*) FROM orders WHERE customer_id = $1::uuid AND status = 'canceled'", ada.id) == 2);
  CHECK(query("SELECT COUNT(*) FROM payments WHERE customer_id = $1::uuid AND status = 'captured'", ada.id) == 0);
  CHECK(query("SELECT COUNT(*) FROM sandbox_payment_operations o JOIN payments p ON o.key LIKE '%' || p.id::text || '%' "
              "WHERE p.customer_id = $1::uuid AND o.operation = 'capture'",
              ada.id) == 0);
  // The cart is as it was: a good card now goes through.
  auto ok = checkout(c, ada, cart, "tok_ok", "after-1");
  REQUIRE_MESSAGE(ok.status == 201, ok.body);
  CHECK(available_of(c, p) == 1);

  // GET /orders: own orders, newest first, paged without repeats; filters; support sees anyone's.
  std::vector<std::string> seen;
  std::string cursor;
  for (int page = 0; page < 5; ++page) {
    auto list = c.get("/api/v1/orders?limit=2" + (cursor.empty() ? "" : "&cursor=" + cursor), bearer(ada.token));
    REQUIRE_MESSAGE(list.status == 200, list.body);
    const auto j = list.json();
    for (const auto& o : j.at("data").as_array()) {
      seen.push_back(str(o, "id"));
      CHECK(str(o, "customer_id") == ada.id);
    }
    if (j.at("meta").at("next_cursor").is_null()) {
      break;
    }
    cursor = str(j.at("meta"), "next_cursor");
  }
  REQUIRE(seen.size() == 3);
  CHECK(seen.front() == str(ok.json(), "id"));  // newest first
  CHECK(seen[0] != seen[1]);
  CHECK(seen[1] != seen[2]);
  auto paid_only = c.get("/api/v1/orders?status=paid", bearer(ada.token));
  REQUIRE(paid_only.status == 200);
  CHECK(paid_only.json().at("data").as_array().size() == 1);
  customer bob;
  auto bobs = c.get("/api/v1/orders?customer_id=" + ada.id, bearer(bob.token));  // his own, whatever he asks
  REQUIRE(bobs.status == 200);
  CHECK(bobs.json().at("data").as_array().empty());
  auto support = c.get("/api/v1/orders?customer_id=" + ada.id, bearer(token_for(random_uuid(), {"support"})));
  REQUIRE(support.status == 200);
  CHECK(support.json().at("data").as_array().size() == 3);
  CHECK(c.get("/api/v1/orders?status=lost", bearer(ada.token)).status == 400);
  CHECK(c.get("/api/v1/orders?cursor=bm90LWEtY3Vyc29y", bearer(ada.token)).status == 400);
}

TEST_CASE("checkout: a short line reserves nothing and lists the line; a changed price is refused until read") {
  http_client c{node().port()};
  customer ada;
  const auto plenty = product_with_stock(c, 10);
  const auto scarce = product_with_stock(c, 3);
  const auto cart = new_cart(c, ada);
  add(c, ada, cart, plenty, 2);
  add(c, ada, cart, scarce, 3);
  // Someone else buys 2 of the scarce product first.
  customer bob;
  const auto bobs = new_cart(c, bob);
  add(c, bob, bobs, scarce, 2);
  REQUIRE(checkout(c, bob, bobs, "tok_ok", "bob-1").status == 201);

  auto short_of = checkout(c, ada, cart, "tok_ok", "short-1");
  CHECK(short_of.status == 409);
  CHECK(code_of(short_of) == "insufficient_stock");
  CHECK(short_of.body.find("/items/" + scarce) != std::string::npos);
  CHECK(short_of.body.find("/items/" + plenty) == std::string::npos);
  CHECK(short_of.body.find("1 available") != std::string::npos);
  CHECK(available_of(c, plenty) == 10);  // all or nothing
  CHECK(reserved_of(c, plenty) == 0);
  CHECK(query("SELECT COUNT(*) FROM orders WHERE customer_id = $1::uuid", ada.id) == 0);  // never an order

  // A price change after the cart was read: refused, then accepted once the cart shows the new price.
  const auto admin = admin_token(c);
  const auto cart2 = new_cart(c, ada);
  add(c, ada, cart2, plenty, 1);
  const auto price = c.get("/api/v1/products/" + plenty).json().at("current_price").at("amount").to_number<std::int64_t>();
  auto patched = c.request("PATCH", "/api/v1/products/" + plenty,
                           json::serialize(json::object{{"current_price", {{"amount", price + 100}, {"currency", "USD"}}}}),
                           json_body(bearer(admin)));
  REQUIRE_MESSAGE(patched.status == 200, patched.body);
  auto changed = checkout(c, ada, cart2, "tok_ok", "price-1");
  CHECK(changed.status == 409);
  CHECK(code_of(changed) == "price_changed");
  CHECK(reserved_of(c, plenty) == 0);
  REQUIRE(c.get("/api/v1/carts/" + cart2, bearer(ada.token)).status == 200);  // shows the new price
  auto paid = checkout(c, ada, cart2, "tok_ok", "price-2");
  REQUIRE_MESSAGE(paid.status == 201, paid.body);
  CHECK(paid.json().at("items").at(0).at("unit_price").at("amount").to_number<std::int64_t>() == price + 100);
}

TEST_CASE("no oversell: 200 concurrent checkouts for the last 50 units make exactly 50 paid orders") {
  http_client c{node().port()};
  constexpr int buyers = 200;
  constexpr int units = 50;
  const auto p = product_with_stock(c, units);
  std::vector<customer> people(buyers);
  std::vector<std::string> carts;
  for (const auto& who : people) {
    carts.push_back(new_cart(c, who));
    add(c, who, carts.back(), p, 1);
  }
  std::vector<unsigned> status(buyers, 0);
  std::vector<std::string> codes(buyers);
  std::vector<std::thread> threads;
  for (int i = 0; i < buyers; ++i) {
    threads.emplace_back([&, i] {
      http_client mine{node().port()};
      auto r = checkout(mine, people[i], carts[i], "tok_ok", "rush-" + std::to_string(i));
      status[i] = r.status;
      codes[i] = r.status == 201 ? "paid" : code_of(r);
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  int paid = 0;
  for (int i = 0; i < buyers; ++i) {
    if (status[i] == 201) {
      ++paid;
    } else {
      CHECK_MESSAGE(codes[i] == "insufficient_stock", status[i] << " " << codes[i]);
    }
  }
  CHECK(paid == units);
  CHECK(available_of(c, p) == 0);
  CHECK(reserved_of(c, p) == 0);
  CHECK(query("SELECT COUNT(*) FROM order_items i JOIN orders o ON o.id = i.order_id "
              "WHERE i.product_id = $1::uuid AND o.status = 'paid'",
              p) == units);
  CHECK(query("SELECT on_hand FROM inventory WHERE product_id = $1::uuid", p) == 0);
}

TEST_CASE("cancel while the payment is pending: the authorization is voided, the stock released, nothing charged") {
  http_client c{node().port()};
  customer ada;
  const auto p = product_with_stock(c, 6);
  const auto cart = new_cart(c, ada);
  add(c, ada, cart, p, 2);
  // tok_slow keeps the checkout waiting on the provider (1 s here) with the order pending payment.
  http_reply slow_answer;
  std::thread buyer([&] {
    http_client mine{node().port()};
    slow_answer = checkout(mine, ada, cart, "tok_slow", "race-1");
  });
  std::string order_id;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (order_id.empty() && std::chrono::steady_clock::now() < deadline) {
    pqxx::connection conn{database().dsn()};
    pqxx::nontransaction tx{conn};
    auto rows = tx.exec_params("SELECT order_id::text FROM order_sagas WHERE customer_id = $1::uuid AND step = "
                               "'pending_payment'",
                               ada.id);
    if (!rows.empty()) {
      order_id = rows[0][0].as<std::string>();
    } else {
      std::this_thread::sleep_for(10ms);
    }
  }
  REQUIRE_FALSE(order_id.empty());
  auto canceled = c.request("POST", "/api/v1/orders/" + order_id + "/cancel", {}, bearer(ada.token));
  buyer.join();
  REQUIRE_MESSAGE(canceled.status == 200, canceled.body);
  CHECK(str(canceled.json(), "status") == "canceled");
  // The checkout's own answer says why it failed, and nothing was charged or kept.
  CHECK_MESSAGE(slow_answer.status == 409, slow_answer.body);
  CHECK(code_of(slow_answer) == "order_canceled");
  CHECK(available_of(c, p) == 6);
  CHECK(reserved_of(c, p) == 0);
  CHECK(query("SELECT COUNT(*) FROM orders WHERE id = $1::uuid AND status = 'canceled'", order_id) == 1);
  CHECK(query("SELECT COUNT(*) FROM sandbox_payment_operations WHERE operation = 'capture' AND key LIKE '%' || $1 || '%'",
              order_id.substr(8)) == 0);
}
