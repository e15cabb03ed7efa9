// End-to-end: GET /api/v1/me/notifications on a running mercatod whose outbox dispatcher feeds the
// notification handlers. Checkout is not there yet, so the tests append `OrderPlaced` events to the node's
// outbox table directly (as the order entity's commit will) and wait, polling with a bound, until the
// dispatcher has delivered them. A customer sees its own notifications and never another's (BOLA), a vendor's
// user sees the new order with its vendor's items only, anonymous is 401, paging and `unread=true`.

#include <doctest/doctest.h>

#include <chrono>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>
#include <pqxx/pqxx>

#include "support/http_client.hpp"
#include "support/node_process.hpp"
#include "support/scratch_database.hpp"

namespace json = boost::json;
using mercato::test::http_client;
using mercato::test::http_reply;
using mercato::test::node_process;
using namespace std::chrono_literals;

namespace {

const std::string admin_email = "nadmin-" + std::to_string(std::random_device{}()) + "@example.com";
const std::string admin_password = "admin password for tests";

mercato::test::scratch_database& database() {
  static mercato::test::scratch_database db;
  return db;
}

node_process& node() {
  static node_process n{{"--demo"},
                        {{"MERCATO_PG_DSN", database().dsn()},
                         {"MERCATO_ADMIN_EMAIL", admin_email},
                         {"MERCATO_ADMIN_PASSWORD", admin_password},
                         {"MERCATO_OUTBOX_POLL_INTERVAL_MS", "20"}}};
  static const bool ready = n.wait_ready(60s);
  REQUIRE_MESSAGE(ready, "mercatod did not become ready; its log:\n" << n.log());
  return n;
}

using headers = std::vector<std::pair<std::string, std::string>>;

headers auth(const std::string& token) {
  headers h{{"Content-Type", "application/json"}};
  if (!token.empty()) {
    h.emplace_back("Authorization", "Bearer " + token);
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

std::set<std::string> pointers_of(const http_reply& r) {
  std::set<std::string> out;
  const auto problem = r.json();  // kept: the loop must not walk a temporary
  for (const auto& e : problem.at("errors").as_array()) {
    out.insert(str(e, "pointer"));
  }
  return out;
}

std::string random_word() {
  static std::mt19937_64 gen{std::random_device{}()};
  std::string w = "nt";
  for (int i = 0; i < 10; ++i) {
    w += static_cast<char>('a' + gen() % 26);
  }
  return w;
}

struct account {
  std::string id, token;
};

account login(http_client& c, const std::string& email, const std::string& password) {
  auto r = c.request("POST", "/api/v1/auth/login", json::serialize(json::object{{"email", email}, {"password", password}}),
                     auth(""));
  REQUIRE_MESSAGE(r.status == 200, r.body);
  return {str(r.json().at("user"), "id"), str(r.json(), "access_token")};
}

// A new customer; with a vendor id, that vendor's user (signed in again after the role change).
account make_user(http_client& c, const std::string& vendor_id = {}) {
  static const account admin = [&] { return login(c, admin_email, admin_password); }();
  const auto email = random_word() + "@example.com";
  const std::string password = "correct horse battery";
  auto r = c.request("POST", "/api/v1/auth/register",
                     json::serialize(json::object{{"email", email}, {"password", password}, {"name", "n"}}), auth(""));
  REQUIRE_MESSAGE(r.status == 201, r.body);
  account a{str(r.json().at("user"), "id"), str(r.json(), "access_token")};
  if (vendor_id.empty()) {
    return a;
  }
  auto linked = c.request("PUT", "/api/v1/admin/users/" + a.id + "/roles",
                          json::serialize(json::object{{"roles", json::array{"vendor"}}, {"vendor_id", vendor_id}}),
                          auth(admin.token));
  REQUIRE_MESSAGE(linked.status == 200, linked.body);
  return login(c, email, password);
}

std::string make_vendor(http_client& c) {
  const auto admin = login(c, admin_email, admin_password);
  auto v = c.request("POST", "/api/v1/vendors", json::serialize(json::object{{"name", "V " + random_word()}}),
                     auth(admin.token));
  REQUIRE_MESSAGE(v.status == 201, v.body);
  return str(v.json(), "id");
}

std::string new_uuid() {
  pqxx::connection conn{database().dsn()};
  pqxx::nontransaction tx{conn};
  return tx.exec("SELECT gen_random_uuid()::text")[0][0].as<std::string>();
}

json::object item(const std::string& vendor_id, std::int64_t quantity, std::int64_t unit_price) {
  const auto product = new_uuid();
  return {{"product_id", product},          {"product_sku", "SKU-" + product.substr(0, 8)},
          {"product_name", "Thing " + product.substr(0, 8)}, {"quantity", quantity},
          {"unit_price", unit_price},       {"total_price", quantity * unit_price},
          {"vendor_id", vendor_id}};
}

// Appends an OrderPlaced event to the node's outbox, as the order entity's commit will; returns the event id.
std::string place_order(const std::string& customer_id, const std::string& order_number, json::array items) {
  std::int64_t total = 0;
  for (const auto& i : items) {
    total += i.at("total_price").to_number<std::int64_t>();
  }
  const auto order_id = new_uuid();
  const json::object data{{"order_id", order_id},
                          {"order_number", order_number},
                          {"customer_id", customer_id},
                          {"currency", "USD"},
                          {"total_amount", total},
                          {"items", std::move(items)},
                          {"shipping_address", json::object{{"name", "N"}, {"line1", "1 Main St"}, {"city", "X"},
                                                            {"postal_code", "1"}, {"country", "US"}}}};
  pqxx::connection conn{database().dsn()};
  pqxx::work tx{conn};
  auto id = tx.exec_params1("INSERT INTO outbox (id, aggregate_kind, aggregate_id, event_type, data, metadata) "
                            "VALUES (gen_random_uuid(), 'order', $1, 'OrderPlaced', $2::jsonb, "
                            "'{\"source\": \"e2e\"}') RETURNING id::text",
                            order_id, json::serialize(data))[0]
                .as<std::string>();
  tx.commit();
  return id;
}

bool dispatched(const std::string& event_id) {
  pqxx::connection conn{database().dsn()};
  pqxx::nontransaction tx{conn};
  return !tx.exec_params1("SELECT EXISTS (SELECT 1 FROM outbox_undispatched WHERE id = $1::uuid)", event_id)[0].as<bool>();
}

bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds timeout = 30s) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!cond()) {
    if (std::chrono::steady_clock::now() >= until) {
      return false;
    }
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

json::array notes(http_client& c, const std::string& token, const std::string& query = {}) {
  auto r = c.get("/api/v1/me/notifications" + query, auth(token));
  REQUIRE_MESSAGE(r.status == 200, r.body);
  return r.json().at("data").as_array();
}

// Waits until the caller has `n` notifications (the dispatcher delivers within its poll interval).
json::array wait_for_notes(http_client& c, const std::string& token, std::size_t n) {
  json::array got;
  const bool ok = eventually([&] {
    got = notes(c, token, "?limit=100");
    return got.size() >= n;
  });
  REQUIRE_MESSAGE(ok, "expected " << n << " notifications, have " << got.size() << "; node log:\n" << node().log());
  return got;
}

std::set<std::string> ids_of(const json::array& a) {
  std::set<std::string> out;
  for (const auto& n : a) {
    out.insert(str(n, "id"));
  }
  return out;
}

}  // namespace

TEST_CASE("an order placed notifies its customer and each vendor's users with their items; no one else") {
  http_client c{node().port()};
  const auto vendor_a = make_vendor(c);
  const auto vendor_b = make_vendor(c);
  const auto alice = make_user(c);
  const auto bob = make_user(c);
  const auto va = make_user(c, vendor_a);
  const auto vb = make_user(c, vendor_b);

  auto a1 = item(vendor_a, 2, 1500);
  auto b1 = item(vendor_b, 1, 999);
  const auto event_id = place_order(alice.id, "ORD-E2E-1", json::array{a1, b1});

  const auto mine = wait_for_notes(c, alice.token, 1);
  REQUIRE(mine.size() == 1);
  CHECK(str(mine[0], "kind") == "order_confirmation");
  CHECK(str(mine[0], "title") == "Order ORD-E2E-1 confirmed");
  CHECK(mine[0].at("data").at("total_amount") == 3999);
  CHECK(mine[0].at("read_at").is_null());

  const auto for_a = wait_for_notes(c, va.token, 1);
  REQUIRE(for_a.size() == 1);
  CHECK(str(for_a[0], "kind") == "vendor_new_order");
  REQUIRE(for_a[0].at("data").at("items").as_array().size() == 1);
  CHECK(for_a[0].at("data").at("items").at(0).at("product_id") == a1.at("product_id"));
  const auto for_b = wait_for_notes(c, vb.token, 1);
  REQUIRE(for_b.size() == 1);
  REQUIRE(for_b[0].at("data").at("items").as_array().size() == 1);
  CHECK(for_b[0].at("data").at("items").at(0).at("product_id") == b1.at("product_id"));

  // BOLA: bob sees none of alice's, and his own order shows to him only.
  CHECK(notes(c, bob.token).empty());
  place_order(bob.id, "ORD-E2E-2", json::array{item(vendor_b, 1, 100)});
  const auto bobs = wait_for_notes(c, bob.token, 1);
  REQUIRE(bobs.size() == 1);
  CHECK(str(bobs[0], "title") == "Order ORD-E2E-2 confirmed");
  CHECK(notes(c, alice.token).size() == 1);
  CHECK(notes(c, va.token).size() == 1);  // bob's order had nothing of vendor A's
  CHECK(wait_for_notes(c, vb.token, 2).size() == 2);

  // Redelivered (the dispatch mark undone, as after a crash before the mark): nobody is told twice.
  {
    pqxx::connection conn{database().dsn()};
    pqxx::work tx{conn};
    tx.exec_params("UPDATE outbox_cursor SET (tx, seq) = (SELECT tx, seq - 1 FROM outbox WHERE id = $1::uuid)",
                   event_id);
    tx.commit();
  }
  REQUIRE(eventually([&] { return dispatched(event_id); }));
  CHECK(notes(c, alice.token).size() == 1);
  CHECK(notes(c, va.token).size() == 1);
  CHECK(notes(c, vb.token).size() == 2);
}

TEST_CASE("anonymous and bad tokens are 401") {
  http_client c{node().port()};
  auto anon = c.get("/api/v1/me/notifications");
  CHECK(anon.status == 401);
  CHECK(code_of(anon) == "unauthenticated");
  CHECK(anon.header("content-type") == "application/problem+json");
  auto bad = c.get("/api/v1/me/notifications", {{"Authorization", "Bearer not-a-token"}});
  CHECK(bad.status == 401);
  CHECK(code_of(bad) == "invalid_token");
}

TEST_CASE("paging newest first with limit and cursor; unread=true; bad parameters are 400") {
  http_client c{node().port()};
  const auto vendor = make_vendor(c);
  const auto carol = make_user(c);
  for (int i = 0; i < 5; ++i) {
    place_order(carol.id, "ORD-P-" + std::to_string(i), json::array{item(vendor, 1, 100 + i)});
  }
  const auto all = wait_for_notes(c, carol.token, 5);
  REQUIRE(all.size() == 5);
  for (std::size_t i = 1; i < all.size(); ++i) {
    CHECK(str(all[i - 1], "created_at") >= str(all[i], "created_at"));  // newest first
  }

  std::vector<std::string> paged;
  std::string cursor;
  int pages = 0;
  for (;;) {
    auto r = c.get("/api/v1/me/notifications?limit=2" + (cursor.empty() ? "" : "&cursor=" + cursor), auth(carol.token));
    REQUIRE_MESSAGE(r.status == 200, r.body);
    const auto j = r.json();
    ++pages;
    for (const auto& n : j.at("data").as_array()) {
      paged.push_back(str(n, "id"));
    }
    if (!j.at("meta").at("has_more").as_bool()) {
      CHECK(j.at("meta").at("next_cursor").is_null());
      break;
    }
    CHECK(j.at("data").as_array().size() == 2);
    cursor = str(j.at("meta"), "next_cursor");
    REQUIRE(pages < 10);
  }
  CHECK(pages == 3);
  std::vector<std::string> expected;
  for (const auto& n : all) {
    expected.push_back(str(n, "id"));
  }
  CHECK(paged == expected);  // every one once, in the same order as the single page

  // Read one (no API marks read yet): unread=true leaves it out, the full list shows when.
  const auto read_id = str(all[1], "id");
  {
    pqxx::connection conn{database().dsn()};
    pqxx::work tx{conn};
    tx.exec_params("UPDATE notifications SET read_at = now() WHERE id = $1::uuid", read_id);
    tx.commit();
  }
  const auto unread = notes(c, carol.token, "?unread=true");
  CHECK(unread.size() == 4);
  CHECK(ids_of(unread).count(read_id) == 0);
  CHECK(notes(c, carol.token, "?unread=false").size() == 5);
  for (const auto& n : notes(c, carol.token)) {
    CHECK(n.at("read_at").is_null() == (str(n, "id") != read_id));
  }
  auto unread_page = c.get("/api/v1/me/notifications?unread=true&limit=3", auth(carol.token)).json();
  CHECK(unread_page.at("data").as_array().size() == 3);
  CHECK(unread_page.at("meta").at("has_more") == true);
  auto unread_rest = c.get("/api/v1/me/notifications?unread=true&limit=3&cursor=" +
                               str(unread_page.at("meta"), "next_cursor"),
                           auth(carol.token))
                         .json();
  CHECK(unread_rest.at("data").as_array().size() == 1);
  CHECK(unread_rest.at("meta").at("has_more") == false);

  auto bad_unread = c.get("/api/v1/me/notifications?unread=maybe", auth(carol.token));
  CHECK(bad_unread.status == 400);
  CHECK(code_of(bad_unread) == "invalid_request");
  CHECK(pointers_of(bad_unread) == std::set<std::string>{"/query/unread"});
  auto bad_cursor = c.get("/api/v1/me/notifications?cursor=bm9wZQ", auth(carol.token));
  CHECK(bad_cursor.status == 400);
  CHECK(pointers_of(bad_cursor) == std::set<std::string>{"/query/cursor"});
  auto bad_limit = c.get("/api/v1/me/notifications?limit=0", auth(carol.token));
  CHECK(bad_limit.status == 400);
  CHECK(pointers_of(bad_limit) == std::set<std::string>{"/query/limit"});
}
