// End-to-end: the catalog read API of a real mercatod (--demo) against the test PostgreSQL.
// Cursor paging in every sort order, the product shape of API.md, filters, ETag / If-None-Match,
// validation errors (every bad field listed), the category tree and HEAD. The node runs with the test
// Redis, so all of that goes through the two-level catalog cache; the cache's own cases are at the end
// (hits visible in /metrics, a 304 from a cached entry, a node whose Redis is unreachable).
//
// Only reads the demo catalog; other test executables may run against the same database at the
// same time, so counts are "at least the demo" and checks compare listings with each other.

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <csignal>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/json.hpp>

#include <unistd.h>

#include "persistence/redis_client.hpp"
#include "support/http_client.hpp"
#include "support/node_process.hpp"

namespace json = boost::json;
using mercato::test::http_client;
using mercato::test::http_reply;
using mercato::test::node_process;

namespace {

constexpr std::size_t demo_products = 63;
constexpr std::size_t demo_categories = 21;

// A Redis key prefix of its own for each node this file starts: cache entries of earlier runs (or of
// other tests' nodes, possibly against another database) are never served to it.
// Their keys are deleted when the test program ends (after the nodes: this static is built first).
struct key_prefixes {
  std::vector<std::string> prefixes;
  ~key_prefixes() {
    if (mercato::test::test_redis_url().empty()) {
      return;
    }
    mercato::persistence::redis_client redis{mercato::test::test_redis_url()};
    for (const auto& p : prefixes) {
      (void)redis.delete_by_pattern(p + "*");
    }
  }
};

std::string own_key_prefix(const std::string& what) {
  static key_prefixes cleanup;
  auto p = "e2e-catalog:" + std::to_string(::getpid()) + ":" +
           std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + ":" + what + ":";
  cleanup.prefixes.push_back(p);
  return p;
}

// One node for the whole file (started on first use, killed at exit by its destructor).
node_process& node() {
  static node_process n{{"--demo"}, {{"MERCATO_REDIS_KEY_PREFIX", own_key_prefix("main")}}};
  static const bool ready = n.wait_ready(std::chrono::seconds(60));
  REQUIRE_MESSAGE(ready, "mercatod --demo did not become ready; its log:\n" << n.log());
  return n;
}

json::value parse_json(const http_reply& r, const std::string& what) {
  json::value v;
  try {
    v = r.json();
  } catch (const std::exception& e) {
    FAIL_CHECK(what << ": body is not JSON (" << e.what() << "): " << r.body);
  }
  return v;
}

bool is_uuid(const std::string& s) {
  static const std::regex re{"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"};
  return std::regex_match(s, re);
}

bool is_rfc3339_utc(const std::string& s) {
  static const std::regex re{R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$)"};
  return std::regex_match(s, re);
}

// A key that orders RFC 3339 UTC timestamps correctly whatever the number of fraction digits.
std::string time_key(const std::string& ts) {
  std::string secs = ts.substr(0, 19);
  std::string frac;
  const auto dot = ts.find('.');
  if (dot != std::string::npos) {
    frac = ts.substr(dot + 1, ts.size() - dot - 2);  // without the 'Z'
  }
  frac.resize(9, '0');
  return secs + "." + frac;
}

// Collation-independent name key: lower-case letters and digits only. Any sane collation (C, en_US,
// ICU) orders the demo names consistently with it.
std::string name_key(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c)) {
      out += static_cast<char>(std::tolower(c));
    }
  }
  return out;
}

std::string str(const json::value& v) { return v.is_string() ? std::string(v.get_string()) : std::string{}; }

std::int64_t integer(const json::value& v) {
  if (v.is_int64()) return v.get_int64();
  if (v.is_uint64()) return static_cast<std::int64_t>(v.get_uint64());
  return INT64_MIN;
}

bool is_integer(const json::value& v) { return v.is_int64() || v.is_uint64(); }

std::int64_t price_of(const json::object& p) { return integer(p.at("current_price").at("amount")); }
std::int64_t available_of(const json::object& p) { return integer(p.at("stock").at("available")); }

// Checks one product against the API.md shape; returns false (after reporting) when it is unusable.
bool check_product_shape(const json::value& v) {
  if (!v.is_object()) {
    FAIL_CHECK("a product is not a JSON object: " << json::serialize(v));
    return false;
  }
  const auto& p = v.get_object();
  const std::string tag = "product " + json::serialize(p.if_contains("id") ? *p.if_contains("id") : json::value{});
  bool ok = true;
  for (const char* field : {"id", "sku", "name", "description", "category_id", "vendor_id", "base_price",
                            "current_price", "stock", "attributes", "images", "weight", "dimensions", "status",
                            "version", "created_at", "updated_at"}) {
    if (!p.contains(field)) {
      FAIL_CHECK(tag << " lacks the field \"" << field << "\": " << json::serialize(p));
      ok = false;
    }
  }
  if (!ok) {
    return false;
  }
  CHECK_MESSAGE((p.at("id").is_string() && is_uuid(str(p.at("id")))), tag << ": id is not a UUID string");
  CHECK_MESSAGE((p.at("sku").is_string() && !p.at("sku").get_string().empty()), tag << ": sku is not a non-empty string");
  CHECK_MESSAGE((p.at("name").is_string() && !p.at("name").get_string().empty()),
                tag << ": name is not a non-empty string");
  CHECK_MESSAGE((p.at("description").is_string() || p.at("description").is_null()),
                tag << ": description is neither a string nor null");
  for (const char* ref : {"category_id", "vendor_id"}) {
    const auto& r = p.at(ref);
    CHECK_MESSAGE((r.is_null() || (r.is_string() && is_uuid(str(r)))), tag << ": " << ref << " is not a UUID or null");
  }
  for (const char* money : {"base_price", "current_price"}) {
    const auto& m = p.at(money);
    if (!m.is_object()) {
      FAIL_CHECK(tag << ": " << money << " is not an object");
      ok = false;
      continue;
    }
    const auto* amount = m.get_object().if_contains("amount");
    const auto* currency = m.get_object().if_contains("currency");
    CHECK_MESSAGE((amount && is_integer(*amount)), tag << ": " << money << ".amount is not an integer (minor units): "
                                                     << json::serialize(m));
    CHECK_MESSAGE((amount && is_integer(*amount) && integer(*amount) > 0), tag << ": " << money << ".amount <= 0");
    CHECK_MESSAGE((currency && str(*currency) == "USD"), tag << ": " << money << ".currency is not \"USD\"");
    ok = ok && amount && is_integer(*amount);
  }
  const auto& stock = p.at("stock");
  if (!stock.is_object() || !stock.get_object().contains("available") || !stock.get_object().contains("status") ||
      !is_integer(stock.at("available"))) {
    FAIL_CHECK(tag << ": stock is not {available: integer, status}: " << json::serialize(stock));
    return false;
  }
  const auto avail = integer(stock.at("available"));
  const auto status = str(stock.at("status"));
  CHECK_MESSAGE(avail >= 0, tag << ": stock.available is negative");
  CHECK_MESSAGE((status == "in_stock" || status == "low_stock" || status == "out_of_stock"),
                tag << ": stock.status '" << status << "' is not in_stock|low_stock|out_of_stock");
  if (avail == 0) {
    CHECK_MESSAGE(status == "out_of_stock", tag << ": available 0 but stock.status is " << status);
  } else {
    CHECK_MESSAGE(status != "out_of_stock", tag << ": available " << avail << " but stock.status is out_of_stock");
  }
  CHECK_MESSAGE((p.at("attributes").is_object() || p.at("attributes").is_null()),
                tag << ": attributes is neither an object nor null");
  CHECK_MESSAGE((p.at("images").is_array() || p.at("images").is_null()), tag << ": images is neither an array nor null");
  CHECK_MESSAGE((p.at("weight").is_number() || p.at("weight").is_null()), tag << ": weight is neither a number nor null");
  CHECK_MESSAGE((p.at("dimensions").is_object() || p.at("dimensions").is_null()),
                tag << ": dimensions is neither an object nor null");
  CHECK_MESSAGE(str(p.at("status")) == "active", tag << ": a listed product has status " << p.at("status"));
  CHECK_MESSAGE((is_integer(p.at("version")) && integer(p.at("version")) >= 1), tag << ": version is not an integer >= 1");
  CHECK_MESSAGE(is_rfc3339_utc(str(p.at("created_at"))), tag << ": created_at is not RFC 3339 UTC: " << p.at("created_at"));
  CHECK_MESSAGE(is_rfc3339_utc(str(p.at("updated_at"))), tag << ": updated_at is not RFC 3339 UTC: " << p.at("updated_at"));
  return ok && p.at("id").is_string() && p.at("created_at").is_string() && p.at("name").is_string();
}

struct listing {
  std::vector<json::object> items;
  std::size_t pages = 0;
  bool complete = false;  // reached has_more=false with every page well-formed
};

// Pages through GET /api/v1/products?<query>&limit=<limit> following meta.next_cursor.
listing fetch_all(http_client& c, const std::string& query, int limit = 7) {
  listing out;
  std::string cursor;
  for (int guard = 0; guard < 200; ++guard) {
    std::string target = "/api/v1/products?limit=" + std::to_string(limit);
    if (!query.empty()) {
      target += "&" + query;
    }
    if (!cursor.empty()) {
      target += "&cursor=" + cursor;  // base64url: safe in a query string as is
    }
    const auto r = c.get(target);
    if (r.status != 200) {
      FAIL_CHECK("GET " << target << " answered " << r.status << ": " << r.body);
      return out;
    }
    CHECK_MESSAGE(r.header("content-type").rfind("application/json", 0) == 0,
                  "GET " << target << " content-type is " << r.header("content-type"));
    const auto v = parse_json(r, "GET " + target);
    if (!v.is_object() || !v.get_object().contains("data") || !v.at("data").is_array() ||
        !v.get_object().contains("meta") || !v.at("meta").is_object()) {
      FAIL_CHECK("GET " << target << " is not {data: [...], meta: {...}}: " << r.body);
      return out;
    }
    const auto& data = v.at("data").get_array();
    const auto& meta = v.at("meta").get_object();
    ++out.pages;
    CHECK_MESSAGE(data.size() <= static_cast<std::size_t>(limit),
                  "GET " << target << " returned " << data.size() << " items for limit " << limit);
    for (const auto& item : data) {
      if (check_product_shape(item)) {
        out.items.push_back(item.get_object());
      }
    }
    if (!meta.contains("has_more") || !meta.at("has_more").is_bool() || !meta.contains("next_cursor")) {
      FAIL_CHECK("GET " << target << ": meta is not {next_cursor, has_more: bool}: " << json::serialize(meta));
      return out;
    }
    const bool has_more = meta.at("has_more").get_bool();
    if (!has_more) {
      CHECK_MESSAGE(meta.at("next_cursor").is_null(), "has_more=false but next_cursor is " << meta.at("next_cursor"));
      out.complete = true;
      return out;
    }
    CHECK_MESSAGE(data.size() == static_cast<std::size_t>(limit),
                  "a page with has_more=true is not full: " << data.size() << " of " << limit);
    if (!meta.at("next_cursor").is_string() || meta.at("next_cursor").get_string().empty()) {
      FAIL_CHECK("has_more=true but next_cursor is " << meta.at("next_cursor"));
      return out;
    }
    cursor = std::string(meta.at("next_cursor").get_string());
  }
  FAIL_CHECK("paging " << query << " did not end after 200 pages");
  return out;
}

std::vector<std::string> ids_of(const std::vector<json::object>& items) {
  std::vector<std::string> out;
  for (const auto& p : items) out.push_back(str(p.at("id")));
  return out;
}

std::set<std::string> id_set(const std::vector<json::object>& items) {
  const auto ids = ids_of(items);
  return {ids.begin(), ids.end()};
}

void check_no_duplicates(const listing& l, const std::string& what) {
  const auto ids = ids_of(l.items);
  std::map<std::string, int> seen;
  for (const auto& id : ids) {
    if (++seen[id] == 2) {
      FAIL_CHECK(what << ": product " << id << " appears on more than one page");
    }
  }
}

// The whole catalog, newest first, fetched once per process.
const listing& all_products() {
  static const listing l = [] {
    http_client c{node().port()};
    return fetch_all(c, "", 7);
  }();
  return l;
}

// Pointers of the `errors` list of a 400 problem (empty when the answer is not one).
std::vector<std::string> problem_pointers(const http_reply& r, const std::string& what) {
  std::vector<std::string> out;
  CHECK_MESSAGE(r.status == 400, what << ": expected 400, got " << r.status << ": " << r.body);
  CHECK_MESSAGE(r.header("content-type").rfind("application/problem+json", 0) == 0,
                what << ": content-type is " << r.header("content-type"));
  const auto v = parse_json(r, what);
  if (!v.is_object()) {
    return out;
  }
  const auto& o = v.get_object();
  CHECK_MESSAGE((o.contains("code") && o.at("code").is_string() && !o.at("code").get_string().empty()),
                what << ": the problem has no code: " << r.body);
  CHECK_MESSAGE((o.contains("status") && integer(o.at("status")) == 400), what << ": problem.status is not 400");
  if (!o.contains("errors") || !o.at("errors").is_array()) {
    FAIL_CHECK(what << ": the problem has no errors list: " << r.body);
    return out;
  }
  for (const auto& e : o.at("errors").get_array()) {
    const auto* pointer = e.is_object() ? e.get_object().if_contains("pointer") : nullptr;
    const auto* message = e.is_object() ? e.get_object().if_contains("message") : nullptr;
    CHECK_MESSAGE((pointer && pointer->is_string() && message && message->is_string()),
                  what << ": an error is not {pointer, message}: " << json::serialize(e));
    if (pointer && pointer->is_string()) out.push_back(str(*pointer));
  }
  return out;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return "[" + out + "]";
}

// Category tree helpers.
struct category_info {
  std::string id;
  std::string name;
  std::optional<std::string> parent_id;
  int depth = 0;
  std::string root_id;
};

json::array categories_tree() {
  http_client c{node().port()};
  const auto r = c.get("/api/v1/categories");
  REQUIRE_MESSAGE(r.status == 200, "GET /api/v1/categories answered " << r.status << ": " << r.body);
  const auto v = parse_json(r, "GET /api/v1/categories");
  REQUIRE_MESSAGE(v.is_array(), "GET /api/v1/categories is not a JSON array: " << r.body);
  return v.get_array();
}

// Flattens the tree, checking each node's shape and parent_id on the way.
std::vector<category_info> flatten(const json::array& tree) {
  std::vector<category_info> out;
  std::function<void(const json::array&, const std::optional<std::string>&, int, const std::string&)> walk =
      [&](const json::array& nodes, const std::optional<std::string>& parent, int depth, const std::string& root) {
        for (const auto& n : nodes) {
          if (!n.is_object() || !n.get_object().contains("id") || !n.get_object().contains("name") ||
              !n.get_object().contains("parent_id") || !n.get_object().contains("children") ||
              !n.at("children").is_array()) {
            FAIL_CHECK("a category is not {id, name, parent_id, children: [...]}: " << json::serialize(n));
            continue;
          }
          category_info ci;
          ci.id = str(n.at("id"));
          ci.name = str(n.at("name"));
          ci.depth = depth;
          ci.root_id = root.empty() ? ci.id : root;
          CHECK_MESSAGE(is_uuid(ci.id), "category id is not a UUID: " << n.at("id"));
          CHECK_MESSAGE(!ci.name.empty(), "category " << ci.id << " has no name");
          const auto& pid = n.at("parent_id");
          if (!parent) {
            CHECK_MESSAGE(pid.is_null(), "top-level category " << ci.name << " has parent_id " << pid);
          } else {
            CHECK_MESSAGE(str(pid) == *parent,
                          "category " << ci.name << " is nested under " << *parent << " but has parent_id " << pid);
            ci.parent_id = str(pid);
          }
          out.push_back(ci);
          walk(n.at("children").get_array(), ci.id, depth + 1, ci.root_id);
        }
      };
  walk(tree, std::nullopt, 1, "");
  return out;
}

// Ids of `root` and everything under it.
std::set<std::string> subtree(const std::vector<category_info>& cats, const std::string& root) {
  std::set<std::string> out{root};
  bool grew = true;
  while (grew) {
    grew = false;
    for (const auto& c : cats) {
      if (c.parent_id && out.count(*c.parent_id) && !out.count(c.id)) {
        out.insert(c.id);
        grew = true;
      }
    }
  }
  return out;
}

// A raw exchange on a fresh connection: sends `bytes`, returns everything read until the server
// closes (or 10 s pass).
std::string raw_until_close(std::uint16_t port, const std::string& bytes) {
  namespace net = boost::asio;
  net::io_context ioc;
  boost::beast::tcp_stream s{ioc};
  s.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  net::write(s.socket(), net::buffer(bytes));
  std::string out;
  std::array<char, 4096> buf{};
  std::function<void()> read_more = [&] {
    s.async_read_some(net::buffer(buf), [&](boost::system::error_code ec, std::size_t n) {
      out.append(buf.data(), n);
      if (!ec) read_more();
    });
  };
  s.expires_after(std::chrono::seconds(10));  // the whole exchange
  read_more();
  ioc.run();
  return out;
}

}  // namespace

TEST_CASE("catalog: paging newest-first walks every product exactly once") {
  const auto& all = all_products();
  REQUIRE_MESSAGE(all.complete, "paging the default listing did not reach has_more=false");
  CHECK_MESSAGE(all.items.size() >= demo_products, "expected at least the " << demo_products << " demo products, got "
                                                                            << all.items.size());
  CHECK_MESSAGE(all.pages >= (demo_products + 6) / 7, "63+ products with limit=7 need at least 9 pages, got "
                                                          << all.pages);
  check_no_duplicates(all, "sort=-created_at");
  CHECK_MESSAGE(id_set(all.items).size() == all.items.size(), "duplicate ids in the default listing");
  for (std::size_t i = 1; i < all.items.size(); ++i) {
    const auto prev = str(all.items[i - 1].at("created_at"));
    const auto cur = str(all.items[i].at("created_at"));
    CHECK_MESSAGE(time_key(prev) >= time_key(cur), "not newest-first at position " << i << ": " << prev << " then "
                                                                                   << cur);
  }
  std::size_t zero = 0;
  for (const auto& p : all.items) zero += available_of(p) == 0 ? 1 : 0;
  CHECK_MESSAGE(zero >= 1, "the demo catalog has products without stock, none listed with available 0");

  // The first page without a limit has the default size 20 and agrees with the paged walk.
  http_client c{node().port()};
  const auto r = c.get("/api/v1/products");
  REQUIRE(r.status == 200);
  const auto v = parse_json(r, "GET /api/v1/products");
  REQUIRE(v.is_object());
  const auto& data = v.at("data").get_array();
  CHECK_MESSAGE(data.size() == 20, "the default limit should be 20, got " << data.size());
  CHECK_MESSAGE(v.at("meta").at("has_more") == json::value(true), "the first default page should have more");
  for (std::size_t i = 0; i < data.size() && i < all.items.size(); ++i) {
    CHECK_MESSAGE(str(data[i].at("id")) == str(all.items[i].at("id")),
                  "the default first page differs from the paged walk at position " << i);
  }

  // limit=100 gives one page covering the whole demo catalog in the same order.
  const auto big = fetch_all(c, "", 100);
  CHECK(big.complete);
  CHECK_MESSAGE(ids_of(big.items) == ids_of(all.items), "limit=100 and limit=7 walks list different orders");
}

TEST_CASE("catalog: paging by price, -price and name") {
  const auto& all = all_products();
  REQUIRE(all.complete);
  const auto all_ids = id_set(all.items);
  http_client c{node().port()};

  SUBCASE("sort=price: non-decreasing current_price") {
    const auto l = fetch_all(c, "sort=price");
    REQUIRE(l.complete);
    check_no_duplicates(l, "sort=price");
    CHECK_MESSAGE(id_set(l.items) == all_ids, "sort=price did not list the same products as the default sort");
    CHECK(l.items.size() == all.items.size());
    for (std::size_t i = 1; i < l.items.size(); ++i) {
      CHECK_MESSAGE(price_of(l.items[i - 1]) <= price_of(l.items[i]),
                    "sort=price out of order at " << i << ": " << price_of(l.items[i - 1]) << " then "
                                                  << price_of(l.items[i]));
    }
  }
  SUBCASE("sort=-price: non-increasing current_price") {
    const auto l = fetch_all(c, "sort=-price");
    REQUIRE(l.complete);
    check_no_duplicates(l, "sort=-price");
    CHECK_MESSAGE(id_set(l.items) == all_ids, "sort=-price did not list the same products as the default sort");
    CHECK(l.items.size() == all.items.size());
    for (std::size_t i = 1; i < l.items.size(); ++i) {
      CHECK_MESSAGE(price_of(l.items[i - 1]) >= price_of(l.items[i]),
                    "sort=-price out of order at " << i << ": " << price_of(l.items[i - 1]) << " then "
                                                   << price_of(l.items[i]));
    }
  }
  SUBCASE("sort=name: alphabetical") {
    const auto l = fetch_all(c, "sort=name");
    REQUIRE(l.complete);
    check_no_duplicates(l, "sort=name");
    CHECK_MESSAGE(id_set(l.items) == all_ids, "sort=name did not list the same products as the default sort");
    CHECK(l.items.size() == all.items.size());
    for (std::size_t i = 1; i < l.items.size(); ++i) {
      const auto a = str(l.items[i - 1].at("name"));
      const auto b = str(l.items[i].at("name"));
      CHECK_MESSAGE(name_key(a) <= name_key(b), "sort=name out of order at " << i << ": '" << a << "' then '" << b
                                                                              << "'");
    }
    // The pages agree with a one-page listing (keyset paging loses nothing between pages).
    const auto one = fetch_all(c, "sort=name", 100);
    CHECK_MESSAGE(ids_of(one.items) == ids_of(l.items), "sort=name: limit=7 pages differ from one limit=100 page");
  }
  SUBCASE("sort=-created_at explicitly equals the default") {
    const auto l = fetch_all(c, "sort=-created_at", 11);
    REQUIRE(l.complete);
    CHECK_MESSAGE(ids_of(l.items) == ids_of(all.items), "sort=-created_at differs from the default order");
  }
}

TEST_CASE("catalog: filters") {
  const auto& all = all_products();
  REQUIRE(all.complete);
  const auto cats = flatten(categories_tree());
  http_client c{node().port()};
  std::map<std::string, std::string> category_of;
  for (const auto& p : all.items) category_of[str(p.at("id"))] = str(p.at("category_id"));

  SUBCASE("category=<top-level> lists exactly the products of its subtree") {
    std::size_t roots = 0;
    std::size_t covered = 0;
    for (const auto& cat : cats) {
      if (cat.parent_id) continue;
      ++roots;
      const auto tree = subtree(cats, cat.id);
      CHECK_MESSAGE(tree.size() > 1, "top-level category " << cat.name << " has no sub-categories");
      const auto l = fetch_all(c, "category=" + cat.id);
      REQUIRE(l.complete);
      check_no_duplicates(l, "category=" + cat.name);
      std::set<std::string> expected;
      for (const auto& p : all.items) {
        if (tree.count(str(p.at("category_id")))) expected.insert(str(p.at("id")));
      }
      for (const auto& p : l.items) {
        CHECK_MESSAGE(tree.count(str(p.at("category_id"))) == 1,
                      "category=" << cat.name << " listed " << str(p.at("name")) << " from category "
                                  << str(p.at("category_id")) << ", outside its subtree");
      }
      CHECK_MESSAGE(id_set(l.items) == expected, "category=" << cat.name << " listed " << l.items.size()
                                                             << " products, its subtree holds " << expected.size());
      CHECK_MESSAGE(!l.items.empty(), "category=" << cat.name << " is empty");
      // Filtered pages keep the default order (newest first).
      for (std::size_t i = 1; i < l.items.size(); ++i) {
        CHECK(time_key(str(l.items[i - 1].at("created_at"))) >= time_key(str(l.items[i].at("created_at"))));
      }
      covered += l.items.size();
    }
    CHECK_MESSAGE(roots == 3, "expected 3 top-level categories, got " << roots);
    CHECK_MESSAGE(covered >= demo_products, "the top-level categories together cover only " << covered << " products");
  }
  SUBCASE("category=<leaf> lists only that category") {
    const auto leaf = std::find_if(cats.begin(), cats.end(), [](const category_info& c) { return c.name == "Laptops"; });
    REQUIRE_MESSAGE(leaf != cats.end(), "the demo tree has no Laptops category");
    const auto l = fetch_all(c, "category=" + leaf->id);
    REQUIRE(l.complete);
    CHECK_MESSAGE(l.items.size() >= 1, "category=Laptops is empty");
    for (const auto& p : l.items) {
      CHECK_MESSAGE(str(p.at("category_id")) == leaf->id, "category=Laptops listed " << str(p.at("name")));
    }
  }
  SUBCASE("category=<unknown uuid> is an empty list") {
    const auto l = fetch_all(c, "category=00000000-0000-4000-8000-000000000000");
    CHECK(l.complete);
    CHECK_MESSAGE(l.items.empty(), "an unknown category listed " << l.items.size() << " products");
  }
  SUBCASE("in_stock=true excludes products without stock") {
    const auto l = fetch_all(c, "in_stock=true");
    REQUIRE(l.complete);
    check_no_duplicates(l, "in_stock=true");
    std::set<std::string> expected;
    std::size_t zero = 0;
    for (const auto& p : all.items) {
      if (available_of(p) > 0) expected.insert(str(p.at("id")));
      else ++zero;
    }
    for (const auto& p : l.items) {
      CHECK_MESSAGE(available_of(p) > 0, "in_stock=true listed " << str(p.at("name")) << " with available "
                                                                 << available_of(p));
      CHECK_MESSAGE(str(p.at("stock").at("status")) != "out_of_stock",
                    "in_stock=true listed an out_of_stock product " << str(p.at("name")));
    }
    CHECK_MESSAGE(id_set(l.items) == expected,
                  "in_stock=true listed " << l.items.size() << " products; " << expected.size() << " have stock");
    CHECK_MESSAGE(l.items.size() < all.items.size(), "in_stock=true excluded nothing (" << zero
                                                                                          << " have no stock)");
    // in_stock=false is no filter at all.
    const auto f = fetch_all(c, "in_stock=false", 100);
    CHECK_MESSAGE(f.items.size() == all.items.size(), "in_stock=false should not filter");
  }
  SUBCASE("min_price and max_price bound current_price (minor units, inclusive)") {
    const std::int64_t lo = 10000;
    const std::int64_t hi = 50000;
    const auto l = fetch_all(c, "min_price=" + std::to_string(lo) + "&max_price=" + std::to_string(hi));
    REQUIRE(l.complete);
    std::set<std::string> expected;
    for (const auto& p : all.items) {
      if (price_of(p) >= lo && price_of(p) <= hi) expected.insert(str(p.at("id")));
    }
    for (const auto& p : l.items) {
      CHECK_MESSAGE((price_of(p) >= lo && price_of(p) <= hi),
                    str(p.at("name")) << " costs " << price_of(p) << ", outside [" << lo << ", " << hi << "]");
    }
    CHECK_MESSAGE(id_set(l.items) == expected, "the price range listed " << l.items.size() << " products, "
                                                                         << expected.size() << " are in range");
    CHECK_MESSAGE(!expected.empty(), "no demo product costs between 100.00 and 500.00");

    // The bounds are inclusive: an exact price finds its product with either bound.
    const auto& probe = all.items.front();
    const auto exact = std::to_string(price_of(probe));
    const auto same = fetch_all(c, "min_price=" + exact + "&max_price=" + exact, 100);
    CHECK_MESSAGE(id_set(same.items).count(str(probe.at("id"))) == 1,
                  "min_price=max_price=" << exact << " does not find " << str(probe.at("name")));
    for (const auto& p : same.items) CHECK(price_of(p) == price_of(probe));
    const auto only_min = fetch_all(c, "min_price=" + exact, 100);
    for (const auto& p : only_min.items) CHECK(price_of(p) >= price_of(probe));
    const auto only_max = fetch_all(c, "max_price=" + exact, 100);
    for (const auto& p : only_max.items) CHECK(price_of(p) <= price_of(probe));
    CHECK_MESSAGE(only_min.items.size() + only_max.items.size() == all.items.size() + same.items.size(),
                  "min_price and max_price at the same value do not partition the catalog");
  }
  SUBCASE("q=laptop finds the laptops") {
    const auto leaf = std::find_if(cats.begin(), cats.end(), [](const category_info& c) { return c.name == "Laptops"; });
    REQUIRE(leaf != cats.end());
    const auto l = fetch_all(c, "q=laptop");
    REQUIRE(l.complete);
    const auto found = id_set(l.items);
    std::size_t laptops = 0;
    for (const auto& p : all.items) {
      if (str(p.at("category_id")) == leaf->id) {
        ++laptops;
        CHECK_MESSAGE(found.count(str(p.at("id"))) == 1, "q=laptop did not find " << str(p.at("name")));
      }
    }
    CHECK(laptops >= 1);
    for (const auto& p : l.items) {
      auto text = str(p.at("name")) + " " + str(p.at("description"));
      std::transform(text.begin(), text.end(), text.begin(), [](unsigned char ch) { return std::tolower(ch); });
      CHECK_MESSAGE(text.find("laptop") != std::string::npos,
                    "q=laptop found " << str(p.at("name")) << ", which does not mention laptops");
    }
    CHECK_MESSAGE(l.items.size() < all.items.size(), "q=laptop matched the whole catalog");
    // The same search sorted by price keeps the matches and orders them.
    const auto by_price = fetch_all(c, "q=laptop&sort=price", 2);
    CHECK_MESSAGE(id_set(by_price.items) == found, "q=laptop&sort=price found other products than q=laptop");
    for (std::size_t i = 1; i < by_price.items.size(); ++i) {
      CHECK(price_of(by_price.items[i - 1]) <= price_of(by_price.items[i]));
    }
    // Relevance paging (the default with q) loses nothing.
    const auto small = fetch_all(c, "q=laptop&sort=relevance", 2);
    CHECK_MESSAGE(id_set(small.items) == found, "q=laptop paged by 2 differs from paged by 7");
    check_no_duplicates(small, "q=laptop limit=2");
    // A word no product has finds nothing.
    const auto none = fetch_all(c, "q=zzyzxnonexistentword");
    CHECK(none.complete);
    CHECK_MESSAGE(none.items.empty(), "a nonsense query found " << none.items.size() << " products");
  }
  SUBCASE("vendor=<id> lists exactly that vendor's products") {
    std::map<std::string, std::size_t> per_vendor;
    for (const auto& p : all.items) {
      if (p.at("vendor_id").is_string()) ++per_vendor[str(p.at("vendor_id"))];
    }
    CHECK_MESSAGE(per_vendor.size() >= 3, "the demo catalog has 3 vendors, products name " << per_vendor.size());
    for (const auto& [vendor, count] : per_vendor) {
      const auto l = fetch_all(c, "vendor=" + vendor);
      REQUIRE(l.complete);
      for (const auto& p : l.items) {
        CHECK_MESSAGE(str(p.at("vendor_id")) == vendor, "vendor=" << vendor << " listed " << str(p.at("name"))
                                                                 << " of vendor " << p.at("vendor_id"));
      }
      CHECK_MESSAGE(l.items.size() == count, "vendor=" << vendor << " listed " << l.items.size() << ", expected "
                                                       << count);
    }
  }
  SUBCASE("filters combine") {
    const auto& probe = all.items.front();
    const auto vendor = str(probe.at("vendor_id"));
    const auto l = fetch_all(c, "vendor=" + vendor + "&in_stock=true&sort=price&max_price=100000");
    REQUIRE(l.complete);
    std::set<std::string> expected;
    for (const auto& p : all.items) {
      if (str(p.at("vendor_id")) == vendor && available_of(p) > 0 && price_of(p) <= 100000) {
        expected.insert(str(p.at("id")));
      }
    }
    CHECK_MESSAGE(id_set(l.items) == expected, "vendor+in_stock+max_price listed " << l.items.size()
                                                                                  << ", expected " << expected.size());
  }
}

TEST_CASE("catalog: a cursor is bound to its sort") {
  http_client c{node().port()};
  const auto r = c.get("/api/v1/products?limit=5&sort=name");
  REQUIRE(r.status == 200);
  const auto v = parse_json(r, "sort=name page");
  REQUIRE(v.at("meta").at("next_cursor").is_string());
  const auto cursor = str(v.at("meta").at("next_cursor"));

  const auto bad = c.get("/api/v1/products?limit=5&sort=price&cursor=" + cursor);
  const auto pointers = problem_pointers(bad, "a sort=name cursor with sort=price");
  CHECK_MESSAGE(contains(pointers, "/query/cursor"), "the 400 does not name the cursor: " << joined(pointers));

  const auto bad2 = c.get("/api/v1/products?limit=5&cursor=" + cursor);  // default sort
  CHECK_MESSAGE(contains(problem_pointers(bad2, "a sort=name cursor with the default sort"), "/query/cursor"),
                "the 400 does not name the cursor");

  const auto good = c.get("/api/v1/products?limit=5&sort=name&cursor=" + cursor);
  CHECK_MESSAGE(good.status == 200, "the cursor with its own sort answered " << good.status << ": " << good.body);
}

TEST_CASE("catalog: one product by id, ETag and If-None-Match") {
  const auto& all = all_products();
  REQUIRE_FALSE(all.items.empty());
  const auto& listed = all.items.front();
  const auto id = str(listed.at("id"));
  http_client c{node().port()};

  const auto r = c.get("/api/v1/products/" + id);
  REQUIRE_MESSAGE(r.status == 200, "GET /api/v1/products/" << id << " answered " << r.status << ": " << r.body);
  CHECK(r.header("content-type").rfind("application/json", 0) == 0);
  const auto v = parse_json(r, "GET product");
  REQUIRE(check_product_shape(v));
  CHECK_MESSAGE(str(v.at("id")) == id, "asked for " << id << ", got " << v.at("id"));
  CHECK_MESSAGE(v == json::value(listed), "the product differs from its listing entry:\n"
                                              << json::serialize(v) << "\n"
                                              << json::serialize(listed));
  const auto etag = r.header("etag");
  const auto expected_etag = "\"" + std::to_string(integer(v.at("version"))) + "\"";
  CHECK_MESSAGE(etag == expected_etag, "ETag is '" << etag << "', expected '" << expected_etag << "' from version");

  const auto not_modified = c.get("/api/v1/products/" + id, {{"If-None-Match", etag}});
  CHECK_MESSAGE(not_modified.status == 304, "If-None-Match with the current ETag answered " << not_modified.status);
  CHECK_MESSAGE(not_modified.body.empty(), "a 304 has a body: " << not_modified.body);
  CHECK_MESSAGE(not_modified.header("etag") == etag, "the 304 carries ETag '" << not_modified.header("etag") << "'");

  const auto listed_tags = c.get("/api/v1/products/" + id, {{"If-None-Match", "\"999999\", " + etag}});
  CHECK_MESSAGE(listed_tags.status == 304, "If-None-Match with a list holding the ETag answered "
                                               << listed_tags.status);

  const auto stale = c.get("/api/v1/products/" + id, {{"If-None-Match", "\"999999\""}});
  CHECK_MESSAGE(stale.status == 200, "If-None-Match with another ETag answered " << stale.status);
  CHECK_MESSAGE(stale.header("etag") == etag, "the 200 after a stale If-None-Match has ETag " << stale.header("etag"));
  CHECK_MESSAGE(parse_json(stale, "200 after stale If-None-Match") == v, "the body changed between two GETs");

  // The connection still works after a 304 (no body to skip).
  CHECK(c.get("/api/v1/products/" + id).status == 200);
}

// RFC 9110 section 8.6: a 304 MUST NOT carry a Content-Length other than the 200's (a cache or
// client that refreshes its stored headers from the 304 would otherwise see an empty representation).
TEST_CASE("catalog: a 304 does not claim a different Content-Length than the 200") {
  const auto& all = all_products();
  REQUIRE_FALSE(all.items.empty());
  const auto id = str(all.items.front().at("id"));
  http_client c{node().port()};
  const auto ok = c.get("/api/v1/products/" + id);
  REQUIRE(ok.status == 200);
  const auto nm = c.get("/api/v1/products/" + id, {{"If-None-Match", ok.header("etag")}});
  REQUIRE(nm.status == 304);
  const auto cl = nm.header("content-length");
  CHECK_MESSAGE((cl.empty() || cl == std::to_string(ok.body.size())),
                "the 304 has Content-Length: " << cl << " but the 200 body is " << ok.body.size() << " bytes");
}

TEST_CASE("catalog: unknown and malformed product ids") {
  http_client c{node().port()};
  const auto missing = c.get("/api/v1/products/00000000-0000-4000-8000-000000000000");
  CHECK_MESSAGE(missing.status == 404, "an unknown UUID answered " << missing.status << ": " << missing.body);
  CHECK_MESSAGE(missing.header("content-type").rfind("application/problem+json", 0) == 0,
                "the 404 content-type is " << missing.header("content-type"));
  const auto mv = parse_json(missing, "404");
  CHECK_MESSAGE((mv.is_object() && str(mv.at("code")) == "not_found"), "the 404 code is not not_found: " << missing.body);
  CHECK_MESSAGE((mv.is_object() && integer(mv.at("status")) == 404), "problem.status is not 404");

  const auto bad = c.get("/api/v1/products/not-a-uuid");
  const auto pointers = problem_pointers(bad, "GET /api/v1/products/not-a-uuid");
  const bool names_id = std::any_of(pointers.begin(), pointers.end(), [](const std::string& p) {
    return p.size() >= 3 && p.compare(p.size() - 3, 3, "/id") == 0;
  });
  CHECK_MESSAGE(names_id, "no error pointer names the id: " << joined(pointers));
}

TEST_CASE("catalog: invalid query parameters are each named") {
  http_client c{node().port()};
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"limit=0", "/query/limit"},
      {"limit=101", "/query/limit"},
      {"limit=abc", "/query/limit"},
      {"limit=", "/query/limit"},
      {"limit=-5", "/query/limit"},
      {"cursor=garbage", "/query/cursor"},
      {"cursor=%21%21%21", "/query/cursor"},
      {"category=not-a-uuid", "/query/category"},
      {"vendor=42", "/query/vendor"},
      {"min_price=-1", "/query/min_price"},
      {"max_price=cheap", "/query/max_price"},
      {"in_stock=yes", "/query/in_stock"},
      {"sort=popularity", "/query/sort"},
      {"sort=relevance", "/query/sort"},  // relevance needs q
  };
  for (const auto& [query, pointer] : cases) {
    CAPTURE(query);
    const auto r = c.get("/api/v1/products?" + query);
    const auto pointers = problem_pointers(r, "?" + query);
    CHECK_MESSAGE(contains(pointers, pointer), "?" << query << ": errors " << joined(pointers) << " lack " << pointer);
  }

  // Every bad field at once: one 400 naming all of them.
  const auto r = c.get(
      "/api/v1/products?limit=abc&cursor=garbage&category=not-a-uuid&vendor=x&min_price=-1&max_price=y&in_stock=maybe"
      "&sort=nope");
  const auto pointers = problem_pointers(r, "all invalid at once");
  for (const char* p : {"/query/limit", "/query/cursor", "/query/category", "/query/vendor", "/query/min_price",
                        "/query/max_price", "/query/in_stock", "/query/sort"}) {
    CHECK_MESSAGE(contains(pointers, p), "the combined 400 lacks " << p << "; it lists " << joined(pointers));
  }
  // The boundaries are valid.
  CHECK(c.get("/api/v1/products?limit=1").status == 200);
  CHECK(c.get("/api/v1/products?limit=100").status == 200);
}

TEST_CASE("catalog: the category tree") {
  const auto tree = categories_tree();
  const auto cats = flatten(tree);
  CHECK_MESSAGE(tree.size() == 3, "expected 3 top-level categories, got " << tree.size());
  CHECK_MESSAGE(cats.size() == demo_categories, "expected " << demo_categories << " categories, got " << cats.size());
  int max_depth = 0;
  std::set<std::string> ids;
  for (const auto& c : cats) {
    max_depth = std::max(max_depth, c.depth);
    CHECK_MESSAGE(ids.insert(c.id).second, "category " << c.id << " appears twice in the tree");
  }
  CHECK_MESSAGE(max_depth == 3, "the demo tree has 3 levels, got " << max_depth);
  std::map<int, int> per_level;
  for (const auto& c : cats) ++per_level[c.depth];
  CHECK_MESSAGE(per_level[1] == 3, "level 1 has " << per_level[1] << " categories");
  CHECK_MESSAGE(per_level[2] >= 1, "level 2 is empty");
  CHECK_MESSAGE(per_level[3] >= 1, "level 3 is empty");
  // Every product's category is in the tree.
  for (const auto& p : all_products().items) {
    if (p.at("category_id").is_string()) {
      CHECK_MESSAGE(ids.count(str(p.at("category_id"))) == 1,
                    str(p.at("name")) << " has category " << str(p.at("category_id")) << ", not in the tree");
    }
  }
}

TEST_CASE("catalog: HEAD on a product gives the headers and no body") {
  const auto& all = all_products();
  REQUIRE_FALSE(all.items.empty());
  const auto id = str(all.items.front().at("id"));
  // Both to the node itself (node_port), never through the contract proxy: Prism cannot carry a HEAD,
  // and it serialises JSON bodies again (1.761E0 becomes 1.761), so its GET is not the node's byte count.
  http_client c{node().node_port()};
  const auto get = c.get("/api/v1/products/" + id);
  REQUIRE(get.status == 200);

  const auto raw = raw_until_close(node().node_port(), "HEAD /api/v1/products/" + id +
                                                      " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  const auto end = raw.find("\r\n\r\n");
  REQUIRE_MESSAGE(end != std::string::npos, "no complete HEAD response: " << raw);
  const auto head = raw.substr(0, end);
  const auto after = raw.substr(end + 4);
  CHECK_MESSAGE(head.rfind("HTTP/1.1 200", 0) == 0, "HEAD status line: " << head.substr(0, head.find('\r')));
  CHECK_MESSAGE(after.empty(), "HEAD answered with " << after.size() << " body bytes: " << after);
  auto lower = head;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char ch) { return std::tolower(ch); });
  CHECK_MESSAGE(lower.find("\r\ncontent-length: " + std::to_string(get.body.size())) != std::string::npos,
                "HEAD lacks the GET's Content-Length " << get.body.size() << ":\n" << head);
  CHECK_MESSAGE(lower.find("\r\netag: " + get.header("etag")) != std::string::npos, "HEAD lacks the ETag:\n" << head);
  CHECK_MESSAGE(lower.find("\r\ncontent-type: application/json") != std::string::npos,
                "HEAD lacks Content-Type:\n" << head);
  CHECK_MESSAGE(lower.find("\r\nx-request-id: ") != std::string::npos, "HEAD lacks X-Request-Id:\n" << head);
}

// --- the catalog cache ------------------------------------------------------------------------------

namespace {

// The value of the first sample of `metric` whose labels include every `labels` entry; -1 if none.
double metric_value(const std::string& text, const std::string& metric, const std::vector<std::string>& labels = {}) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.rfind(metric, 0) != 0) continue;
    const char next = line.size() > metric.size() ? line[metric.size()] : '\0';
    if (next != '{' && next != ' ') continue;
    bool all = true;
    for (const auto& l : labels) all = all && line.find(l) != std::string::npos;
    if (!all) continue;
    return std::stod(line.substr(line.rfind(' ') + 1));
  }
  return -1;
}

struct cache_counters {
  double l1_hits = 0, l1_misses = 0, l2_hits = 0, l2_misses = 0, l2_errors = 0, loads = 0, ratio = 0, entries = 0;
  double hits() const { return l1_hits + l2_hits; }
};

cache_counters scrape_cache(std::uint16_t port) {
  http_client c{port};
  const auto r = c.get("/metrics");
  REQUIRE_MESSAGE(r.status == 200, "GET /metrics answered " << r.status);
  const std::string m = "mercato_cache_requests_total";
  cache_counters out;
  out.l1_hits = metric_value(r.body, m, {"level=\"l1\"", "result=\"hit\""});
  out.l1_misses = metric_value(r.body, m, {"level=\"l1\"", "result=\"miss\""});
  out.l2_hits = metric_value(r.body, m, {"level=\"l2\"", "result=\"hit\""});
  out.l2_misses = metric_value(r.body, m, {"level=\"l2\"", "result=\"miss\""});
  out.l2_errors = metric_value(r.body, m, {"level=\"l2\"", "result=\"error\""});
  out.loads = metric_value(r.body, "mercato_cache_loads_total");
  out.ratio = metric_value(r.body, "mercato_cache_hit_ratio");
  out.entries = metric_value(r.body, "mercato_cache_l1_entries");
  for (double v : {out.l1_hits, out.l1_misses, out.l2_hits, out.l2_misses, out.l2_errors, out.loads, out.ratio,
                   out.entries}) {
    CHECK_MESSAGE(v >= 0, "a mercato_cache_* series is missing from /metrics:\n" << r.body);
  }
  return out;
}

json::value readyz_checks(std::uint16_t port) {
  http_client c{port};
  const auto r = c.get("/readyz");
  CHECK_MESSAGE(r.status == 200, "GET /readyz answered " << r.status << ": " << r.body);
  const auto v = parse_json(r, "GET /readyz");
  if (!v.is_object() || !v.get_object().contains("checks")) {
    FAIL_CHECK("/readyz has no checks: " << r.body);
    return {};
  }
  return v.at("checks");
}

}  // namespace

TEST_CASE("catalog cache: a repeated GET of a product is served from the cache, byte for byte") {
  const auto& all = all_products();
  REQUIRE(all.items.size() >= 2);
  const auto id = str(all.items[1].at("id"));
  http_client c{node().port()};

  const auto first = c.get("/api/v1/products/" + id);
  REQUIRE(first.status == 200);
  const auto before = scrape_cache(node().port());
  for (int i = 0; i < 3; ++i) {
    const auto again = c.get("/api/v1/products/" + id);
    REQUIRE(again.status == 200);
    CHECK_MESSAGE(again.body == first.body, "a cached answer differs from the first:\n" << again.body << "\n"
                                                                                          << first.body);
    CHECK(again.header("etag") == first.header("etag"));
    CHECK(again.header("content-type") == first.header("content-type"));
  }
  const auto after = scrape_cache(node().port());
  CHECK_MESSAGE(after.hits() >= before.hits() + 3, "cache hits went from " << before.hits() << " to " << after.hits());
  CHECK_MESSAGE(after.l1_hits >= before.l1_hits + 3, "L1 hits went from " << before.l1_hits << " to " << after.l1_hits);
  CHECK_MESSAGE(after.loads == before.loads, "the repeated GETs loaded from PostgreSQL ("
                                                 << before.loads << " → " << after.loads << " loads)");
  CHECK(after.ratio > 0);
  CHECK(after.ratio <= 1);
  CHECK(after.entries >= 1);
}

TEST_CASE("catalog cache: If-None-Match gets a 304 from a cached entry") {
  const auto& all = all_products();
  REQUIRE(all.items.size() >= 3);
  const auto id = str(all.items[2].at("id"));
  http_client c{node().port()};
  const auto warm = c.get("/api/v1/products/" + id);
  REQUIRE(warm.status == 200);
  const auto etag = warm.header("etag");
  REQUIRE_FALSE(etag.empty());

  const auto before = scrape_cache(node().port());
  const auto nm = c.get("/api/v1/products/" + id, {{"If-None-Match", etag}});
  CHECK_MESSAGE(nm.status == 304, "If-None-Match with the current ETag answered " << nm.status);
  CHECK(nm.body.empty());
  CHECK(nm.header("etag") == etag);
  const auto stale = c.get("/api/v1/products/" + id, {{"If-None-Match", "\"999999\""}});
  CHECK(stale.status == 200);
  CHECK(stale.body == warm.body);
  const auto after = scrape_cache(node().port());
  CHECK_MESSAGE(after.hits() >= before.hits() + 2, "cache hits went from " << before.hits() << " to " << after.hits());
  CHECK_MESSAGE(after.loads == before.loads, "the conditional GETs loaded from PostgreSQL");
}

TEST_CASE("catalog cache: listings and the category tree are cached; search terms are normalised") {
  http_client c{node().port()};
  const auto tree = c.get("/api/v1/categories");
  REQUIRE(tree.status == 200);
  const auto page = c.get("/api/v1/products?limit=4&sort=price&in_stock=true");
  REQUIRE(page.status == 200);
  // A word from a product name, asked in two spellings that are one full-text query.
  std::string word;
  for (char ch : str(all_products().items.front().at("name"))) {
    if (std::isalpha(static_cast<unsigned char>(ch))) {
      word += ch;
    } else if (!word.empty()) {
      break;
    }
  }
  REQUIRE(word.size() >= 2);
  std::string upper = word;
  std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char ch) { return std::toupper(ch); });
  const auto search = c.get("/api/v1/products?q=" + word + "&limit=5");
  REQUIRE(search.status == 200);

  const auto before = scrape_cache(node().port());
  const auto tree2 = c.get("/api/v1/categories");
  const auto page2 = c.get("/api/v1/products?limit=4&sort=price&in_stock=true");
  const auto search2 = c.get("/api/v1/products?q=%20" + upper + "%20%20&limit=5");
  const auto after = scrape_cache(node().port());
  CHECK(tree2.status == 200);
  CHECK(tree2.body == tree.body);
  CHECK(page2.status == 200);
  CHECK(page2.body == page.body);
  CHECK(search2.status == 200);
  CHECK_MESSAGE(search2.body == search.body, "q=" << word << " and q=' " << upper << "  ' differ");
  CHECK_MESSAGE(after.hits() >= before.hits() + 3, "cache hits went from " << before.hits() << " to " << after.hits());
  CHECK(after.loads == before.loads);
}

TEST_CASE("catalog cache: /readyz reports Redis") {
  const auto checks = readyz_checks(node().port());
  CHECK_MESSAGE(str(checks.at("redis")) == "up",
                "checks: " << json::serialize(checks));

  node_process without{{"--demo"}, {{"MERCATO_REDIS_URL", ""}}};
  REQUIRE_MESSAGE(without.wait_ready(std::chrono::seconds(60)), "a node without Redis did not become ready:\n"
                                                                    << without.log());
  const auto none = readyz_checks(without.port());
  CHECK_MESSAGE(str(none.at("redis")) == "not configured", "checks: " << json::serialize(none));
  http_client c{without.port()};
  CHECK(c.get("/api/v1/categories").status == 200);
  CHECK(c.get("/api/v1/categories").status == 200);
  CHECK(scrape_cache(without.port()).l1_hits >= 1);
}

TEST_CASE("catalog cache: a node whose Redis is unreachable still serves the catalog") {
  const auto& all = all_products();
  REQUIRE_FALSE(all.items.empty());
  const auto id = str(all.items.front().at("id"));

  // Port 1 on loopback: connections are refused at once (nothing listens there).
  node_process cut_off{{"--demo"},
                       {{"MERCATO_REDIS_URL", "redis://127.0.0.1:1"}, {"MERCATO_REDIS_KEY_PREFIX", own_key_prefix("down")}}};
  // Redis down must not make the node unready: it is a cache, not the system of record.
  REQUIRE_MESSAGE(cut_off.wait_ready(std::chrono::seconds(60)), "a node with an unreachable Redis is not ready:\n"
                                                                    << cut_off.log());
  http_client c{cut_off.port()};
  const auto t0 = std::chrono::steady_clock::now();
  // (Compared with the data, not with the main node's answers: other tests' nodes may change the
  // shared catalog, and the main node may legitimately still serve its cached copy.)
  const auto reference = c.get("/api/v1/products/" + id);
  REQUIRE_MESSAGE(reference.status == 200, "GET product answered " << reference.status << ": " << reference.body);
  const auto product = parse_json(reference, "GET product without Redis");
  CHECK(check_product_shape(product));
  CHECK(str(product.at("id")) == id);
  CHECK(reference.header("etag") == "\"" + std::to_string(integer(product.at("version"))) + "\"");
  const auto tree = c.get("/api/v1/categories");
  CHECK(tree.status == 200);
  const auto tree_json = parse_json(tree, "GET categories without Redis");
  CHECK((tree_json.is_array() && !tree_json.get_array().empty()));
  const auto page = c.get("/api/v1/products?limit=6&sort=name");
  CHECK(page.status == 200);
  const auto page_json = parse_json(page, "GET products without Redis");
  CHECK((page_json.is_object() && page_json.at("data").is_array() && page_json.at("data").get_array().size() == 6));
  CHECK_MESSAGE(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(3), "reads were slow without Redis");

  const auto checks = readyz_checks(cut_off.port());
  CHECK_MESSAGE(str(checks.at("redis")) == "down (serving from PostgreSQL and local cache)",
                "checks: " << json::serialize(checks));
  CHECK(str(checks.at("postgres")) == "ok");

  // The local cache (L1) still serves repeats; the failed L2 lookups are counted as errors.
  const auto before = scrape_cache(cut_off.port());
  const auto again = c.get("/api/v1/products/" + id);
  CHECK(again.status == 200);
  CHECK(again.body == reference.body);
  const auto nm = c.get("/api/v1/products/" + id, {{"If-None-Match", reference.header("etag")}});
  CHECK(nm.status == 304);
  const auto after = scrape_cache(cut_off.port());
  CHECK(after.l2_errors >= 1);
  CHECK(after.l2_hits == 0);
  CHECK_MESSAGE(after.l1_hits >= before.l1_hits + 2, "L1 hits went from " << before.l1_hits << " to " << after.l1_hits);
  CHECK(cut_off.stop(SIGTERM) == 0);
}
