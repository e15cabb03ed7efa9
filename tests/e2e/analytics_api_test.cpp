// End-to-end: business analytics from real domain events (issue 11). Against a running node with a
// database of its own: a paid checkout and a declined one produce OrderPlaced, PaymentProcessed,
// PaymentFailed, CartItemAdded and CartCheckedOut through the outbox; GET /api/v1/admin/analytics
// (polled, bounded) and /metrics must then show them. Admin only: 401 anonymous, 403 for a customer;
// a bad window is a 400 naming it.
#include <doctest/doctest.h>

#include <chrono>
#include <functional>
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

using headers = std::vector<std::pair<std::string, std::string>>;

mercato::test::scratch_database& database() {
  static mercato::test::scratch_database db;
  return db;
}

node_process& node() {
  static node_process n{{"--demo"},
                        {{"MERCATO_PG_DSN", database().dsn()},
                         {"MERCATO_RATE_LIMITS", "off"},
                         {"MERCATO_REDIS_KEY_PREFIX", "analytics-e2e-" + std::to_string(std::random_device{}()) + ":"}}};
  static const bool ready = n.wait_ready(60s);
  REQUIRE_MESSAGE(ready, "mercatod did not become ready; its log:\n" << n.log());
  return n;
}

std::string random_uuid() {
  static std::mt19937_64 gen{std::random_device{}()};
  char buf[37];
  const auto a = gen(), b = gen();
  std::snprintf(buf, sizeof buf, "%08llx-%04llx-4%03llx-8%03llx-%012llx", static_cast<unsigned long long>(a >> 32),
                static_cast<unsigned long long>((a >> 16) & 0xffff), static_cast<unsigned long long>(a & 0xfff),
                static_cast<unsigned long long>(b >> 52), static_cast<unsigned long long>(b & 0xffffffffffffull));
  return buf;
}

// A signed access token for a user id (the node shares the test JWT secret).
std::string token_for(const std::string& user, std::vector<std::string> roles = {"customer"}) {
  using namespace mercato::security;
  jwt_settings s;
  s.secret = mercato::test::test_jwt_secret();
  s.kid = "mercato-1";
  return sign_access_token(make_access_claims(user, std::move(roles), "", s, std::chrono::system_clock::now()), s);
}

headers bearer(const std::string& token, headers extra = {}) {
  extra.emplace_back("Authorization", "Bearer " + token);
  return extra;
}

headers json_body(headers h) {
  h.emplace_back("Content-Type", "application/json");
  return h;
}

std::string str(const json::value& v, const char* key) { return std::string(v.at(key).as_string()); }
std::int64_t num(const json::value& v, const char* key) { return v.at(key).to_number<std::int64_t>(); }
double real(const json::value& v, const char* key) { return v.at(key).to_number<double>(); }

std::string code_of(const http_reply& r) {
  try {
    return str(r.json(), "code");
  } catch (...) {
    return "<no problem body: " + r.body + ">";
  }
}

// A real admin account: admin routes confirm the caller's roles against the users table.
std::string admin_token(http_client& c) {
  static std::string admin;
  if (admin.empty()) {
    const auto email = "analytics-admin-" + std::to_string(std::random_device{}()) + "@example.com";
    auto reg = c.request("POST", "/api/v1/auth/register",
                         json::serialize(json::object{{"email", email}, {"password", "correct horse battery"}, {"name", "A"}}),
                         json_body({}));
    REQUIRE_MESSAGE(reg.status == 201, reg.body);
    const auto user_id = str(reg.json().at("user"), "id");
    {
      pqxx::connection conn{database().dsn()};
      pqxx::work tx{conn};
      tx.exec_params("UPDATE users SET roles = ARRAY['admin'] WHERE id = $1::uuid", user_id);
      tx.commit();
    }
    auto login = c.request("POST", "/api/v1/auth/login",
                           json::serialize(json::object{{"email", email}, {"password", "correct horse battery"}}),
                           json_body({}));
    REQUIRE_MESSAGE(login.status == 200, login.body);
    admin = str(login.json(), "access_token");
  }
  return admin;
}

// A demo product with at least `units` available.
std::string product_in_stock(http_client& c, std::int64_t units) {
  auto r = c.get("/api/v1/products?limit=100&sort=name");
  REQUIRE(r.status == 200);
  const auto page = r.json();
  for (const auto& p : page.at("data").as_array()) {
    const auto id = str(p, "id");
    auto inv = c.get("/api/v1/inventory/" + id);
    if (inv.status == 200 && num(inv.json(), "available") >= units) {
      return id;
    }
  }
  FAIL("no demo product has " << units << " units available");
  return {};
}

struct customer {
  std::string id = random_uuid();
  std::string token = token_for(id);
};

std::string cart_with(http_client& c, const customer& who, const std::string& product) {
  auto r = c.request("POST", "/api/v1/carts", {}, bearer(who.token));
  REQUIRE_MESSAGE(r.status == 201, r.body);
  const auto cart = str(r.json(), "id");
  auto add = c.request("POST", "/api/v1/carts/" + cart + "/items",
                       json::serialize(json::object{{"product_id", product}, {"quantity", 1}}),
                       json_body(bearer(who.token)));
  REQUIRE_MESSAGE(add.status == 200, add.body);
  return cart;
}

http_reply checkout(http_client& c, const customer& who, const std::string& cart, const std::string& card,
                    const std::string& key) {
  const auto body = json::serialize(json::object{
      {"shipping_address", {{"name", "Ada"}, {"line1", "1 Main St"}, {"city", "Springfield"}, {"postal_code", "12345"},
                            {"country", "US"}}},
      {"payment", {{"method", "card"}, {"token", card}}}});
  return c.request("POST", "/api/v1/carts/" + cart + "/checkout", body,
                   json_body(bearer(who.token, {{"Idempotency-Key", key}})));
}

http_reply analytics(http_client& c, const std::string& window) {
  return c.get("/api/v1/admin/analytics" + (window.empty() ? std::string() : "?window=" + window),
               bearer(admin_token(c)));
}

// Polls `probe` every 50 ms until it holds or `limit` passes; answers whether it held.
bool eventually(const std::function<bool()>& probe, std::chrono::milliseconds limit = 30s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (probe()) {
      return true;
    }
    std::this_thread::sleep_for(50ms);
  }
  return probe();
}

// The value of an unlabelled or exactly-labelled series in a /metrics scrape, or -1.
double scraped(const std::string& text, const std::string& series) {
  std::size_t at = 0;
  while ((at = text.find(series + " ", at)) != std::string::npos) {
    if (at == 0 || text[at - 1] == '\n') {
      return std::stod(text.substr(at + series.size() + 1));
    }
    at += series.size();
  }
  return -1;
}

}  // namespace

TEST_CASE("analytics: admin only; a bad window is a 400 naming it") {
  http_client c{node().port()};
  auto anonymous = c.get("/api/v1/admin/analytics");
  CHECK(anonymous.status == 401);
  CHECK(code_of(anonymous) == "unauthenticated");
  // A real customer account (admin routes confirm the caller's session, so a forged token is refused
  // with 401 before its role is looked at).
  auto reg = c.request("POST", "/api/v1/auth/register",
                       json::serialize(json::object{{"email", "analytics-customer-" + std::to_string(std::random_device{}()) +
                                                                  "@example.com"},
                                                    {"password", "correct horse battery"},
                                                    {"name", "C"}}),
                       json_body({}));
  REQUIRE_MESSAGE(reg.status == 201, reg.body);
  auto customer_read = c.get("/api/v1/admin/analytics", bearer(str(reg.json(), "access_token")));
  CHECK(customer_read.status == 403);
  CHECK(code_of(customer_read) == "forbidden");

  for (const auto* bad : {"0m", "25h", "1w", "abc", "30s", "-5m"}) {
    CAPTURE(bad);
    auto r = analytics(c, bad);
    CHECK(r.status == 400);
    CHECK(code_of(r) == "invalid_request");
    REQUIRE(r.status == 400);
    const auto problem = r.json();
    const auto& errors = problem.at("errors").as_array();
    REQUIRE(errors.size() == 1);
    CHECK(str(errors[0], "pointer") == "/query/window");
  }

  // The default window is 1 h; every figure is there, 0 with no business yet.
  auto r = analytics(c, "");
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const auto body = r.json();
  CHECK(str(body, "window") == "1h");
  CHECK(num(body, "window_seconds") == 3600);
  for (const auto* key : {"orders_per_minute", "cart_abandonment_rate", "conversion_rate", "payment_failure_rate"}) {
    CAPTURE(key);
    CHECK(body.as_object().contains(key));
  }
  CHECK(num(body.at("revenue_per_hour"), "amount") >= 0);
  CHECK(num(body.at("average_order_value"), "amount") >= 0);
  auto day = analytics(c, "24h");
  REQUIRE(day.status == 200);
  CHECK(num(day.json(), "window_seconds") == 86400);
}

TEST_CASE("analytics: a paid and a declined checkout show up as orders, revenue, payments and conversion") {
  http_client c{node().port()};
  const auto product = product_in_stock(c, 2);
  const auto before = analytics(c, "1h");
  REQUIRE_MESSAGE(before.status == 200, before.body);
  const auto orders0 = num(before.json(), "orders_placed");
  const auto failed0 = num(before.json(), "payments_failed");
  const auto processed0 = num(before.json(), "payments_processed");

  customer ada, bob;
  const auto paid_cart = cart_with(c, ada, product);
  const auto declined_cart = cart_with(c, bob, product);
  auto paid = checkout(c, ada, paid_cart, "tok_ok", "analytics-paid");
  REQUIRE_MESSAGE(paid.status == 201, paid.body);
  const auto total = num(paid.json().at("total_amount"), "amount");
  const auto currency = str(paid.json().at("total_amount"), "currency");
  auto declined = checkout(c, bob, declined_cart, "tok_decline", "analytics-declined");
  REQUIRE_MESSAGE(declined.status == 402, declined.body);
  CHECK(code_of(declined) == "payment_declined");

  // The events travel through the outbox to the analytics actor: poll until they are counted.
  json::value now;
  const bool counted = eventually([&] {
    auto r = analytics(c, "5m");
    if (r.status != 200) {
      return false;
    }
    now = r.json();
    return num(now, "orders_placed") >= orders0 + 1 && num(now, "payments_failed") >= failed0 + 1 &&
           num(now, "payments_processed") >= processed0 + 1 && num(now, "carts_checked_out") >= 1;
  });
  REQUIRE_MESSAGE(counted, "analytics never showed the checkouts; last answer: " << json::serialize(now));

  // This node's database is its own and this test made the only checkouts, so the figures are exact.
  CHECK(orders0 == 0);
  CHECK(num(now, "orders_placed") == 1);
  CHECK(num(now, "payments_processed") == 1);
  CHECK(num(now, "payments_failed") == 1);
  CHECK(real(now, "payment_failure_rate") == doctest::Approx(0.5));
  CHECK(real(now, "orders_per_minute") == doctest::Approx(1.0 / 5));
  CHECK(num(now.at("average_order_value"), "amount") == total);
  CHECK(str(now.at("average_order_value"), "currency") == currency);
  CHECK(num(now.at("revenue_per_hour"), "amount") == total * 12);  // one order in 5 minutes
  CHECK(num(now, "carts_with_items") == 2);
  CHECK(num(now, "carts_checked_out") == 1);
  CHECK(real(now, "conversion_rate") == doctest::Approx(0.5));
  REQUIRE(now.at("by_currency").as_array().size() == 1);
  CHECK(num(now.at("by_currency").at(0).at("revenue"), "amount") == total);

  // A replayed checkout (same Idempotency-Key) is the same order: nothing new is counted.
  auto replay = checkout(c, ada, paid_cart, "tok_ok", "analytics-paid");
  REQUIRE(replay.status == 201);
  auto after = analytics(c, "24h");
  REQUIRE(after.status == 200);
  CHECK(num(after.json(), "orders_placed") == 1);
  CHECK(real(after.json(), "orders_per_minute") == doctest::Approx(1.0 / 1440));

  // /metrics: the counters at once, the gauges (last hour) within their refresh.
  std::string scrape;
  const bool exported = eventually([&] {
    auto m = c.get("/metrics");
    scrape = m.body;
    return m.status == 200 && scraped(scrape, "mercato_orders_placed_total") == 1 &&
           scraped(scrape, "mercato_payments_total{result=\"failed\"}") == 1 &&
           scraped(scrape, "mercato_payments_total{result=\"processed\"}") == 1 &&
           scraped(scrape, "mercato_revenue_minor_units_total{currency=\"" + currency + "\"}") ==
               static_cast<double>(total) &&
           scraped(scrape, "mercato_business_payment_failure_rate") == 0.5 &&
           scraped(scrape, "mercato_business_conversion_rate") == 0.5 &&
           scraped(scrape, "mercato_business_average_order_value{currency=\"" + currency + "\"}") ==
               static_cast<double>(total);
  });
  CHECK_MESSAGE(exported, "the business series never matched; scrape:\n" << scrape);
  CHECK(scraped(scrape, "mercato_business_orders_per_minute") == doctest::Approx(1.0 / 60));
}
