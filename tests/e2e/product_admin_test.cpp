// End-to-end: product management and search through a real mercatod (its own scratch database, the
// test Redis under its own key prefix). POST/PATCH/DELETE /products with their roles and object-level
// rules (a vendor changes only its own vendor's products: another's is 404), validation (every bad
// field in one 400, nothing written), duplicate sku 409, If-Match 412 / If-None-Match 304, archiving,
// the domain events in the outbox (same transaction, old and new prices), search relevance, every
// filter and sort, paging stability while products are added, and cache invalidation: by the writer,
// by the outbox subscriber from a committed event alone, and on a second node.

#include <doctest/doctest.h>

#include <chrono>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>
#include <pqxx/pqxx>

#include <unistd.h>

#include "persistence/redis_client.hpp"
#include "support/http_client.hpp"
#include "support/node_process.hpp"
#include "support/scratch_database.hpp"

namespace json = boost::json;
using mercato::test::http_client;
using mercato::test::http_reply;
using mercato::test::node_process;
using namespace std::chrono_literals;

namespace {

const std::string admin_email = "padmin-" + std::to_string(std::random_device{}()) + "@example.com";
const std::string admin_password = "admin password for tests";
const std::string demo_laptops = "fe201124-ac0f-5de5-b610-41651c414cbc";    // Electronics > Computers > Laptops
const std::string demo_computers = "2e25a027-72a6-535d-bc68-f5968c62dc60";  // its parent

mercato::test::scratch_database& database() {
  static mercato::test::scratch_database db;
  return db;
}

struct prefix_cleanup {
  std::string prefix;
  ~prefix_cleanup() {
    if (!mercato::test::test_redis_url().empty()) {
      mercato::persistence::redis_client redis{mercato::test::test_redis_url()};
      (void)redis.delete_by_pattern(prefix + "*");
    }
  }
};

const std::string& key_prefix() {
  static prefix_cleanup p{"e2e-products:" + std::to_string(::getpid()) + ":" +
                          std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + ":"};
  return p.prefix;
}

std::map<std::string, std::string> node_env() {
  return {{"MERCATO_PG_DSN", database().dsn()},
          {"MERCATO_ADMIN_EMAIL", admin_email},
          {"MERCATO_ADMIN_PASSWORD", admin_password},
          {"MERCATO_REDIS_KEY_PREFIX", key_prefix()}};
}

node_process& node() {
  static node_process n{{"--demo"}, node_env()};
  static const bool ready = n.wait_ready(60s);
  REQUIRE_MESSAGE(ready, "mercatod did not become ready; its log:\n" << n.log());
  return n;
}

std::string random_word() {
  static std::mt19937_64 gen{std::random_device{}()};
  std::string w = "zq";
  for (int i = 0; i < 8; ++i) {
    w += static_cast<char>('a' + gen() % 26);
  }
  return w;
}

using headers = std::vector<std::pair<std::string, std::string>>;

headers auth(const std::string& token, headers extra = {}) {
  extra.emplace_back("Content-Type", "application/json");
  if (!token.empty()) {
    extra.emplace_back("Authorization", "Bearer " + token);
  }
  return extra;
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
  try {
    const auto j = r.json();
    for (const auto& e : j.at("errors").as_array()) {
      out.insert(str(e, "pointer"));
    }
  } catch (...) {
  }
  return out;
}

std::int64_t price_of(const json::value& p, const char* which = "current_price") {
  return p.at(which).at("amount").to_number<std::int64_t>();
}

json::object money(std::int64_t cents) { return {{"amount", cents}, {"currency", "USD"}}; }

struct accounts {
  std::string admin, vendor_a, vendor_b, customer;  // access tokens
  std::string vendor_a_id, vendor_b_id;
};

std::string login(http_client& c, const std::string& email, const std::string& password) {
  auto r = c.request("POST", "/api/v1/auth/login", json::serialize(json::object{{"email", email}, {"password", password}}),
                     auth(""));
  REQUIRE_MESSAGE(r.status == 200, r.body);
  return str(r.json(), "access_token");
}

// Registers a user; with a vendor id, links it as that vendor's user and signs in again.
std::string make_user(http_client& c, const std::string& admin, const std::string& vendor_id) {
  const auto email = random_word() + "@example.com";
  const std::string password = "correct horse battery";
  auto r = c.request("POST", "/api/v1/auth/register",
                     json::serialize(json::object{{"email", email}, {"password", password}, {"name", "u"}}), auth(""));
  REQUIRE_MESSAGE(r.status == 201, r.body);
  if (vendor_id.empty()) {
    return str(r.json(), "access_token");
  }
  const auto user_id = str(r.json().at("user"), "id");
  auto linked = c.request("PUT", "/api/v1/admin/users/" + user_id + "/roles",
                          json::serialize(json::object{{"roles", json::array{"vendor"}}, {"vendor_id", vendor_id}}),
                          auth(admin));
  REQUIRE_MESSAGE(linked.status == 200, linked.body);
  return login(c, email, password);
}

const accounts& users() {
  static const accounts a = [] {
    http_client c{node().port()};
    accounts out;
    out.admin = login(c, admin_email, admin_password);
    for (auto* id : {&out.vendor_a_id, &out.vendor_b_id}) {
      auto v = c.request("POST", "/api/v1/vendors", json::serialize(json::object{{"name", "V " + random_word()}}),
                         auth(out.admin));
      REQUIRE_MESSAGE(v.status == 201, v.body);
      *id = str(v.json(), "id");
    }
    out.vendor_a = make_user(c, out.admin, out.vendor_a_id);
    out.vendor_b = make_user(c, out.admin, out.vendor_b_id);
    out.customer = make_user(c, out.admin, "");
    return out;
  }();
  return a;
}

http_reply create(http_client& c, const std::string& token, json::object body, headers extra = {}) {
  return c.request("POST", "/api/v1/products", json::serialize(body), auth(token, std::move(extra)));
}

json::object product(const std::string& name, std::int64_t price, json::object more = {}) {
  json::object b{{"sku", "SKU-" + random_word()}, {"name", name}, {"base_price", money(price)}};
  for (auto& kv : more) {
    b[kv.key()] = kv.value();
  }
  return b;
}

// Creates and returns the product representation.
json::value create_ok(http_client& c, const std::string& token, json::object body) {
  auto r = create(c, token, std::move(body));
  REQUIRE_MESSAGE(r.status == 201, r.body);
  return r.json();
}

http_reply patch(http_client& c, const std::string& token, const std::string& id, json::object body,
                 headers extra = {}) {
  return c.request("PATCH", "/api/v1/products/" + id, json::serialize(body), auth(token, std::move(extra)));
}

std::vector<std::string> ids_of(const http_reply& r) {
  std::vector<std::string> ids;
  const auto j = r.json();
  for (const auto& p : j.at("data").as_array()) {
    ids.push_back(str(p, "id"));
  }
  return ids;
}

// Every product of a listing, following cursors; `between` runs after each page.
std::vector<json::value> all_pages(http_client& c, const std::string& query, int limit,
                                   const std::function<void()>& between = {}) {
  std::vector<json::value> out;
  std::string cursor;
  for (int guard = 0; guard < 100; ++guard) {
    auto r = c.get("/api/v1/products?" + query + "&limit=" + std::to_string(limit) +
                   (cursor.empty() ? "" : "&cursor=" + cursor));
    REQUIRE_MESSAGE(r.status == 200, r.body);
    const auto j = r.json();
    for (const auto& p : j.at("data").as_array()) {
      out.push_back(p);
    }
    const auto& next = j.at("meta").at("next_cursor");
    if (next.is_null()) {
      CHECK_FALSE(j.at("meta").at("has_more").as_bool());
      return out;
    }
    cursor = std::string(next.as_string());
    if (between) {
      between();
    }
  }
  FAIL("the listing did not end");
  return out;
}

// Polls until `ok` or the deadline; no fixed sleeps.
bool eventually(const std::function<bool()>& ok, std::chrono::milliseconds deadline = 10s) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < until) {
    if (ok()) {
      return true;
    }
    std::this_thread::sleep_for(20ms);
  }
  return ok();
}

long count(const std::string& sql, const std::string& param) {
  pqxx::connection conn{database().dsn()};
  pqxx::nontransaction tx{conn};
  return tx.exec_params(sql, param)[0][0].as<long>();
}

}  // namespace

TEST_CASE("a vendor creates a product for its own vendor: 201, ETag, Location, inventory and event committed") {
  http_client c{node().port()};
  const auto& u = users();
  const auto word = random_word();
  auto r = create(c, u.vendor_a,
                  product("Lamp " + word, 2599,
                          {{"description", "A lamp.\nWith two lines."},
                           {"category_id", demo_laptops},
                           {"current_price", money(1999)},
                           {"initial_stock", 7},
                           {"low_stock_threshold", 3},
                           {"attributes", json::object{{"color", "red"}}},
                           {"images", json::array{"/img/a.jpg"}},
                           {"weight", 1.25},
                           {"dimensions", json::object{{"length_cm", 10}}}}),
                  {{"X-Request-Id", "create-" + word}});
  REQUIRE_MESSAGE(r.status == 201, r.body);
  const auto p = r.json();
  const auto id = str(p, "id");
  CHECK(r.header("etag") == "\"1\"");
  CHECK(r.header("location") == "/api/v1/products/" + id);
  CHECK(str(p, "vendor_id") == u.vendor_a_id);
  CHECK(price_of(p) == 1999);
  CHECK(price_of(p, "base_price") == 2599);
  CHECK(p.at("stock").at("available").to_number<int>() == 7);
  CHECK(str(p.at("stock"), "status") == "in_stock");
  CHECK(p.at("weight").to_number<double>() == doctest::Approx(1.25));
  CHECK(str(p, "description") == "A lamp.\nWith two lines.");
  CHECK(str(p, "status") == "active");
  CHECK(p.at("version").to_number<int>() == 1);

  auto got = c.get("/api/v1/products/" + id);
  REQUIRE(got.status == 200);
  CHECK(got.json() == p);
  CHECK(got.header("etag") == "\"1\"");
  CHECK(count("SELECT COUNT(*) FROM inventory WHERE product_id = $1::uuid AND on_hand = 7 AND low_stock_threshold = 3",
              id) == 1);
  CHECK(count("SELECT COUNT(*) FROM entity_snapshots WHERE kind = 'inventory' AND id = $1 AND version = 1", id) == 1);
  CHECK(count("SELECT COUNT(*) FROM outbox WHERE aggregate_kind = 'product' AND aggregate_id = $1"
              " AND event_type = 'ProductCreated' AND event_version = '1' AND data->>'sku' LIKE 'SKU-%'"
              " AND metadata->>'correlation_id' = 'create-" + word + "' AND metadata->>'source' = 'http'",
              id) == 1);

  // Admin: a vendor_id of its choice, or none. Defaults: current_price = base_price, stock 0.
  auto admin_made = create_ok(c, u.admin, product("Admin " + word, 500, {{"vendor_id", u.vendor_b_id}}));
  CHECK(str(admin_made, "vendor_id") == u.vendor_b_id);
  CHECK(price_of(admin_made) == 500);
  CHECK(str(admin_made.at("stock"), "status") == "out_of_stock");
  auto no_vendor = create_ok(c, u.admin, product("Nobody's " + word, 500));
  CHECK(no_vendor.at("vendor_id").is_null());
}

TEST_CASE("POST /products: every invalid field in one 400, unknown references, duplicate sku 409; nothing written") {
  http_client c{node().port()};
  const auto& u = users();
  const auto sku = "BAD-" + random_word();
  auto r = create(c, u.admin,
                  {{"sku", sku + " with spaces"},
                   {"name", ""},
                   {"base_price", 1999},
                   {"current_price", json::object{{"amount", 0}, {"currency", "EUR"}}},
                   {"initial_stock", -1},
                   {"low_stock_threshold", 1.5},
                   {"category_id", "nope"},
                   {"images", json::array{"ok.jpg", 3, "javascript:alert(document.cookie)", "https://img.example/1.png"}},
                   {"weight", -2},
                   {"attributes", "red"},
                   {"status", "archived"}});
  CHECK(r.status == 400);
  CHECK(code_of(r) == "invalid_request");
  const std::set<std::string> expected{"/sku",          "/name",           "/base_price",          "/current_price/amount",
                                       "/current_price/currency", "/initial_stock", "/low_stock_threshold",
                                       "/category_id",  "/images/1",       "/images/2",            "/weight",
                                       "/attributes",
                                       "/status"};
  CHECK(pointers_of(r) == expected);
  CHECK(count("SELECT COUNT(*) FROM products WHERE sku LIKE $1", sku + "%") == 0);

  auto missing = create(c, u.admin, json::object{});
  CHECK(missing.status == 400);
  CHECK(pointers_of(missing) == std::set<std::string>{"/sku", "/name", "/base_price"});

  auto unknown_cat = create(c, u.admin, product("X", 100, {{"category_id", "00000000-0000-4000-8000-000000000000"}}));
  CHECK(unknown_cat.status == 400);
  CHECK(pointers_of(unknown_cat) == std::set<std::string>{"/category_id"});
  auto unknown_vendor = create(c, u.admin, product("X", 100, {{"vendor_id", "00000000-0000-4000-8000-000000000000"}}));
  CHECK(unknown_vendor.status == 400);
  CHECK(pointers_of(unknown_vendor) == std::set<std::string>{"/vendor_id"});

  auto first = create(c, u.vendor_a, {{"sku", sku}, {"name", "First"}, {"base_price", money(100)}});
  REQUIRE_MESSAGE(first.status == 201, first.body);
  auto dup = create(c, u.vendor_b, {{"sku", sku}, {"name", "Second"}, {"base_price", money(100)}});
  CHECK(dup.status == 409);
  CHECK(code_of(dup) == "sku_taken");
  CHECK(count("SELECT COUNT(*) FROM products WHERE sku = $1", sku) == 1);
  CHECK(count("SELECT COUNT(*) FROM outbox WHERE event_type = 'ProductCreated' AND data->>'sku' = $1", sku) == 1);
}

TEST_CASE("roles: anonymous 401, customer 403, a vendor cannot create for another vendor (403)") {
  http_client c{node().port()};
  const auto& u = users();
  auto anon = create(c, "", product("X", 100));
  CHECK(anon.status == 401);
  auto cust = create(c, u.customer, product("X", 100));
  CHECK(cust.status == 403);
  CHECK(code_of(cust) == "forbidden");
  auto other = create(c, u.vendor_a, product("X", 100, {{"vendor_id", u.vendor_b_id}}));
  CHECK(other.status == 403);
  CHECK(code_of(other) == "forbidden");
  const auto p = create_ok(c, u.vendor_a, product("Mine", 100));
  auto cust_patch = patch(c, u.customer, str(p, "id"), {{"name", "hijacked"}});
  CHECK(cust_patch.status == 403);
  auto cust_delete = c.request("DELETE", "/api/v1/products/" + str(p, "id"), {}, auth(u.customer));
  CHECK(cust_delete.status == 403);
}

TEST_CASE("BOLA: a vendor cannot change or archive another vendor's product (404); the owner and admin can") {
  http_client c{node().port()};
  const auto& u = users();
  const auto p = create_ok(c, u.vendor_a, product("Owned " + random_word(), 1000));
  const auto id = str(p, "id");
  auto other_patch = patch(c, u.vendor_b, id, {{"current_price", money(1)}});
  CHECK(other_patch.status == 404);
  CHECK(code_of(other_patch) == "not_found");
  auto other_delete = c.request("DELETE", "/api/v1/products/" + id, {}, auth(u.vendor_b));
  CHECK(other_delete.status == 404);
  CHECK(code_of(other_delete) == "not_found");
  auto unchanged = c.get("/api/v1/products/" + id).json();
  CHECK(price_of(unchanged) == 1000);
  CHECK(unchanged.at("version").to_number<int>() == 1);

  auto own = patch(c, u.vendor_a, id, {{"name", "Owned and renamed"}});
  REQUIRE_MESSAGE(own.status == 200, own.body);
  CHECK(str(own.json(), "name") == "Owned and renamed");
  auto by_admin = patch(c, u.admin, id, {{"description", nullptr}});
  REQUIRE_MESSAGE(by_admin.status == 200, by_admin.body);
  CHECK(by_admin.json().at("description").is_null());
  CHECK(by_admin.json().at("version").to_number<int>() == 3);
}

TEST_CASE("PATCH: price change bumps the version, answers the ETag, and commits ProductUpdated with old and new prices") {
  http_client c{node().port()};
  const auto& u = users();
  const auto word = random_word();
  const auto p = create_ok(c, u.vendor_a, product("Priced " + word, 3000, {{"current_price", money(2500)}}));
  const auto id = str(p, "id");

  auto bad = patch(c, u.vendor_a, id,
                   {{"current_price", money(-5)}, {"sku", "NEW"}, {"vendor_id", u.vendor_b_id}, {"name", nullptr},
                    {"initial_stock", 4}});
  CHECK(bad.status == 400);
  CHECK(pointers_of(bad) ==
        std::set<std::string>{"/current_price/amount", "/sku", "/vendor_id", "/name", "/initial_stock"});
  auto empty = patch(c, u.vendor_a, id, json::object{});
  CHECK(empty.status == 400);
  CHECK(code_of(empty) == "invalid_request");
  auto bad_id = patch(c, u.vendor_a, "not-a-uuid", {{"name", "x"}});
  CHECK(bad_id.status == 400);
  auto unknown = patch(c, u.admin, "00000000-0000-4000-8000-000000000000", {{"name", "x"}});
  CHECK(unknown.status == 404);
  CHECK(count("SELECT version FROM products WHERE id = $1::uuid", id) == 1);

  auto stale = patch(c, u.vendor_a, id, {{"current_price", money(2000)}}, {{"If-Match", "\"7\""}});
  CHECK(stale.status == 412);
  CHECK(code_of(stale) == "precondition_failed");
  CHECK(price_of(c.get("/api/v1/products/" + id).json()) == 2500);

  auto ok = patch(c, u.vendor_a, id, {{"current_price", money(2000)}},
                  {{"If-Match", "\"1\""}, {"X-Request-Id", "price-" + word}});
  REQUIRE_MESSAGE(ok.status == 200, ok.body);
  CHECK(ok.header("etag") == "\"2\"");
  CHECK(price_of(ok.json()) == 2000);
  CHECK(ok.json().at("version").to_number<int>() == 2);
  CHECK(count("SELECT COUNT(*) FROM outbox WHERE aggregate_kind = 'product' AND aggregate_id = $1"
              " AND event_type = 'ProductUpdated' AND (data->>'price_changed')::boolean"
              " AND (data->'old_prices'->>'current_price')::int = 2500"
              " AND (data->'new_prices'->>'current_price')::int = 2000"
              " AND (data->'new_prices'->>'base_price')::int = 3000 AND (data->>'version')::int = 2"
              " AND metadata->>'correlation_id' = 'price-" + word + "' AND metadata->>'user_id' <> ''",
              id) == 1);
  // Stale now (the version moved on); the refused PATCH wrote no event.
  CHECK(patch(c, u.vendor_a, id, {{"base_price", money(1)}}, {{"If-Match", "\"1\""}}).status == 412);
  CHECK(count("SELECT COUNT(*) FROM outbox WHERE aggregate_id = $1 AND event_type = 'ProductUpdated'", id) == 1);
  // The writer reads its own write at once (the cached page was dropped before the answer).
  auto got = c.get("/api/v1/products/" + id);
  CHECK(price_of(got.json()) == 2000);
  CHECK(got.header("etag") == "\"2\"");
}

TEST_CASE("GET /products/{id}: If-None-Match with the current ETag is 304, a stale one 200") {
  http_client c{node().port()};
  const auto& u = users();
  const auto id = str(create_ok(c, u.vendor_a, product("Etag " + random_word(), 100)), "id");
  auto same = c.get("/api/v1/products/" + id, {{"If-None-Match", "\"1\""}});
  CHECK(same.status == 304);
  CHECK(same.header("etag") == "\"1\"");
  REQUIRE(patch(c, u.vendor_a, id, {{"name", "Etag changed"}}).status == 200);
  auto changed = c.get("/api/v1/products/" + id, {{"If-None-Match", "\"1\""}});
  CHECK(changed.status == 200);
  CHECK(changed.header("etag") == "\"2\"");
}

TEST_CASE("DELETE archives: If-Match 412 when stale; then gone from GET, listings and search; event committed") {
  http_client c{node().port()};
  const auto& u = users();
  const auto word = random_word();
  const auto id = str(create_ok(c, u.vendor_a, product("Archive " + word, 100)), "id");
  REQUIRE(ids_of(c.get("/api/v1/products?q=" + word)) == std::vector<std::string>{id});
  REQUIRE(c.get("/api/v1/products/" + id).status == 200);  // cached now

  auto stale = c.request("DELETE", "/api/v1/products/" + id, {}, auth(u.vendor_a, {{"If-Match", "\"9\""}}));
  CHECK(stale.status == 412);
  CHECK(code_of(stale) == "precondition_failed");
  auto gone = c.request("DELETE", "/api/v1/products/" + id, {}, auth(u.vendor_a, {{"If-Match", "\"1\""}}));
  REQUIRE_MESSAGE(gone.status == 200, gone.body);
  CHECK(str(gone.json(), "status") == "archived");
  CHECK(gone.header("etag") == "\"2\"");

  auto get = c.get("/api/v1/products/" + id);
  CHECK(get.status == 404);
  CHECK(code_of(get) == "not_found");
  CHECK(ids_of(c.get("/api/v1/products?q=" + word)).empty());
  for (const auto& p : all_pages(c, "vendor=" + u.vendor_a_id, 100)) {
    CHECK(str(p, "id") != id);
  }
  CHECK(patch(c, u.vendor_a, id, {{"name", "back"}}).status == 404);
  CHECK(c.request("DELETE", "/api/v1/products/" + id, {}, auth(u.admin)).status == 404);
  CHECK(count("SELECT COUNT(*) FROM outbox WHERE aggregate_id = $1 AND event_type = 'ProductArchived'", id) == 1);
}

TEST_CASE("search: relevance order, every filter and sort") {
  http_client c{node().port()};
  const auto& u = users();
  const auto w = random_word();
  // Relevance counts mentions (name and description): three beat two beat one.
  const auto strong = str(create_ok(c, u.vendor_a, product(w + " Kettle", 4000,
                                                           {{"description", w + " kettle, the " + w + " one"},
                                                            {"category_id", demo_laptops},
                                                            {"initial_stock", 5}})),
                          "id");
  const auto weak = str(create_ok(c, u.vendor_b, product("Teapot", 1000,
                                                         {{"description", "goes well with a " + w},
                                                          {"category_id", demo_computers}})),
                        "id");
  const auto mid =
      str(create_ok(c, u.vendor_a, product("Mug " + w, 2500, {{"description", "the " + w + " mug"}, {"initial_stock", 50}})),
          "id");

  CHECK(ids_of(c.get("/api/v1/products?q=" + w)) == std::vector<std::string>{strong, mid, weak});
  CHECK(ids_of(c.get("/api/v1/products?sort=relevance&q=" + w + "%20")) == std::vector<std::string>{strong, mid, weak});
  CHECK(ids_of(c.get("/api/v1/products?sort=price&q=" + w)) == std::vector<std::string>{weak, mid, strong});
  CHECK(ids_of(c.get("/api/v1/products?sort=-price&q=" + w)) == std::vector<std::string>{strong, mid, weak});
  CHECK(ids_of(c.get("/api/v1/products?sort=name&q=" + w)) == std::vector<std::string>{mid, weak, strong});
  CHECK(ids_of(c.get("/api/v1/products?sort=-created_at&q=" + w)) == std::vector<std::string>{mid, weak, strong});
  // Filters.
  CHECK(ids_of(c.get("/api/v1/products?q=" + w + "&vendor=" + u.vendor_b_id)) == std::vector<std::string>{weak});
  CHECK(ids_of(c.get("/api/v1/products?q=" + w + "&category=" + demo_laptops)) == std::vector<std::string>{strong});
  // The parent category includes its sub-categories.
  CHECK(ids_of(c.get("/api/v1/products?sort=price&q=" + w + "&category=" + demo_computers)) ==
        std::vector<std::string>{weak, strong});
  CHECK(ids_of(c.get("/api/v1/products?sort=price&q=" + w + "&min_price=2000&max_price=4000")) ==
        std::vector<std::string>{mid, strong});
  CHECK(ids_of(c.get("/api/v1/products?sort=price&q=" + w + "&max_price=2499")) == std::vector<std::string>{weak});
  CHECK(ids_of(c.get("/api/v1/products?sort=price&q=" + w + "&in_stock=true")) ==
        std::vector<std::string>{mid, strong});
  // A price change moves the product in the price order at once (cached listings were dropped).
  REQUIRE(patch(c, u.admin, weak, {{"current_price", money(9000)}}).status == 200);
  CHECK(ids_of(c.get("/api/v1/products?sort=price&q=" + w)) == std::vector<std::string>{mid, strong, weak});
  // Bad parameters: 400 naming them.
  auto bad = c.get("/api/v1/products?sort=cheapest&min_price=-1&category=x");
  CHECK(bad.status == 400);
  CHECK(code_of(bad) == "invalid_request");
}

TEST_CASE("paging neither repeats nor skips a product while products are added between pages") {
  http_client c{node().port()};
  const auto& u = users();
  const auto w = random_word();
  std::set<std::string> originals;
  for (int i = 0; i < 9; ++i) {
    // Some equal prices and names: the id breaks ties.
    originals.insert(str(create_ok(c, u.vendor_a, product("Page " + w + " " + std::to_string(i % 3), 100 + (i % 4) * 10)),
                         "id"));
  }
  int added = 0;
  for (const char* sort : {"-created_at", "price", "-price", "name", "relevance"}) {
    CAPTURE(sort);
    auto seen = all_pages(c, std::string("sort=") + sort + "&q=" + w, 2, [&] {
      create_ok(c, u.vendor_b, product("Page " + w + " added " + std::to_string(added % 3), 95 + (added % 5) * 10));
      ++added;
    });
    std::multiset<std::string> ids;
    for (const auto& p : seen) {
      ids.insert(str(p, "id"));
    }
    for (const auto& id : ids) {
      CHECK_MESSAGE(ids.count(id) == 1, "product " << id << " was listed twice");
    }
    for (const auto& id : originals) {
      CHECK_MESSAGE(ids.count(id) == 1, "product " << id << " was skipped");
    }
  }
}

TEST_CASE("cache invalidation is driven by committed events: a StockChanged event alone refreshes a cached page") {
  http_client c{node().port()};
  const auto& u = users();
  const auto id = str(create_ok(c, u.vendor_a, product("Cached " + random_word(), 100, {{"initial_stock", 5}})), "id");
  // The product's own ProductCreated event is delivered first (it would drop the entry below too).
  REQUIRE(eventually([&] {
    return count("SELECT COUNT(*) FROM outbox_undispatched WHERE aggregate_id = $1", id) == 0;
  }));
  REQUIRE(c.get("/api/v1/products/" + id).json().at("stock").at("available").to_number<int>() == 5);
  // Stock changes behind the HTTP API's back (as the inventory entity's projection does)...
  {
    pqxx::connection conn{database().dsn()};
    pqxx::work tx{conn};
    tx.exec_params("UPDATE inventory SET on_hand = 2, version = version + 1 WHERE product_id = $1::uuid", id);
    tx.commit();
  }
  // ...the cached page still answers (the read model changed without an event)...
  CHECK(c.get("/api/v1/products/" + id).json().at("stock").at("available").to_number<int>() == 5);
  // ...until the committed event arrives through the outbox.
  {
    pqxx::connection conn{database().dsn()};
    pqxx::work tx{conn};
    tx.exec_params(
        "INSERT INTO outbox (id, aggregate_kind, aggregate_id, event_type, data, metadata)"
        " VALUES (gen_random_uuid(), 'inventory', $1, 'StockChanged', '{\"on_hand\": 2}', '{\"source\": \"test\"}')",
        id);
    tx.commit();
  }
  CHECK(eventually([&] {
    return c.get("/api/v1/products/" + id).json().at("stock").at("available").to_number<int>() == 2;
  }));
}

TEST_CASE("stock: a vendor adjusts its own product's stock, not another vendor's; 50 concurrent removals never go below 0") {
  http_client c{node().port()};
  const auto& u = users();
  const auto p = create_ok(c, u.vendor_a, product("Stocked " + random_word(), 900, {{"initial_stock", 20}}));
  const auto id = str(p, "id");
  const auto adjust = [&](http_client& client, const std::string& token, std::int64_t delta) {
    return client.request("POST", "/api/v1/inventory/" + id + "/adjustments",
                          json::serialize(json::object{{"delta", delta}, {"reason", "stock count"}}),
                          auth(token));
  };
  const auto on_hand = [&] {
    auto r = c.get("/api/v1/inventory/" + id);
    REQUIRE_MESSAGE(r.status == 200, r.body);
    return r.json().at("on_hand").to_number<std::int64_t>();
  };

  // Another vendor and a customer are refused, and nothing changes.
  auto foreign = adjust(c, u.vendor_b, 5);
  CHECK(foreign.status == 403);
  CHECK(code_of(foreign) == "forbidden");
  CHECK(adjust(c, u.customer, 5).status == 403);
  CHECK(on_hand() == 20);
  // The product's own vendor may.
  auto own = adjust(c, u.vendor_a, 5);
  REQUIRE_MESSAGE(own.status == 200, own.body);
  CHECK(own.json().at("on_hand").to_number<std::int64_t>() == 25);

  // 50 removals of one unit at once, each on its own connection, against 25 units: exactly 25 are
  // acknowledged, the rest are 409 insufficient_stock, and the stock ends at 0, never below.
  constexpr int senders = 50;
  std::vector<unsigned> status(senders, 0);
  std::vector<std::string> codes(senders);
  std::vector<std::thread> threads;
  for (int i = 0; i < senders; ++i) {
    threads.emplace_back([&, i] {
      http_client mine{node().port()};
      auto r = adjust(mine, u.vendor_a, -1);
      status[i] = r.status;
      if (r.status != 200) {
        codes[i] = code_of(r);
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  int acked = 0;
  for (int i = 0; i < senders; ++i) {
    if (status[i] == 200) {
      ++acked;
    } else {
      CHECK(status[i] == 409);
      CHECK(codes[i] == "insufficient_stock");
    }
  }
  CHECK(acked == 25);
  CHECK(on_hand() == 0);
  CHECK(count("SELECT on_hand FROM inventory WHERE product_id = $1::uuid", id) == 0);
  CHECK(count("SELECT COUNT(*) FROM outbox WHERE aggregate_id = $1 AND event_type = 'StockChanged' AND "
              "(data->>'delta')::int = -1",
              id) == 25);
}

// Last: its second node on the same database takes the shard leases of the first (until the cluster
// issue shares them), so entity commands to the first node are refused after it.
TEST_CASE("a PATCH on one node refreshes the page cached on another node") {
  http_client c{node().port()};
  const auto& u = users();
  node_process second{{"--demo"}, node_env()};
  REQUIRE_MESSAGE(second.wait_ready(60s), second.log());
  http_client c2{second.port()};
  const auto id = str(create_ok(c, u.vendor_a, product("Two nodes " + random_word(), 700)), "id");
  REQUIRE(price_of(c2.get("/api/v1/products/" + id).json()) == 700);
  REQUIRE(price_of(c2.get("/api/v1/products/" + id).json()) == 700);  // from its cache
  REQUIRE(patch(c, u.vendor_a, id, {{"current_price", money(650)}}).status == 200);
  CHECK(eventually([&] { return price_of(c2.get("/api/v1/products/" + id).json()) == 650; }));
}
