// The catalog listing's SQL on 100,000 generated products: listing, every sort (first and later
// pages) and the full-text search are planned through indexes, never a sequential scan of products.
// The SQL under test is exactly what GET /products runs (catalog_store::listing_query).
#include <doctest/doctest.h>

#include <set>
#include <string>

#include <boost/json.hpp>
#include <pqxx/pqxx>

#include "persistence/catalog_store.hpp"
#include "persistence/migrations.hpp"
#include "support/scratch_database.hpp"

using namespace mercato;
using persistence::product_cursor;
using persistence::product_filter;
using persistence::product_sort;

namespace {

constexpr int products = 100'000;

// Every node of the plan: (node type, relation name or "").
void walk(const boost::json::value& node, std::vector<std::pair<std::string, std::string>>& out) {
  if (!node.is_object()) {
    return;
  }
  const auto& o = node.as_object();
  std::string type = o.contains("Node Type") ? std::string(o.at("Node Type").as_string()) : "";
  std::string rel = o.contains("Relation Name") ? std::string(o.at("Relation Name").as_string()) : "";
  if (!type.empty()) {
    out.emplace_back(type, rel);
  }
  if (const auto* plans = o.if_contains("Plans")) {
    for (const auto& p : plans->as_array()) {
      walk(p, out);
    }
  }
}

struct plan {
  std::vector<std::pair<std::string, std::string>> nodes;
  std::string text;
  bool seq_scan_of_products() const {
    for (const auto& [type, rel] : nodes) {
      if (type == "Seq Scan" && rel == "products") return true;
    }
    return false;
  }
  bool uses(const std::string& type) const {
    for (const auto& n : nodes) {
      if (n.first == type) return true;
    }
    return false;
  }
};

plan explain(pqxx::connection& conn, const product_filter& f, product_sort sort,
             const std::optional<product_cursor>& after) {
  const auto [sql, values] = persistence::catalog_store::listing_query(f, sort, after, 20);
  pqxx::nontransaction tx{conn};
  const auto rows = tx.exec_params("EXPLAIN (FORMAT JSON) " + sql, pqxx::prepare::make_dynamic_params(values));
  plan p;
  p.text = rows[0][0].as<std::string>();
  const auto doc = boost::json::parse(p.text);
  walk(doc.as_array().at(0).as_object().at("Plan"), p.nodes);
  return p;
}

pqxx::connection& catalog() {
  static test::scratch_database db;
  static pqxx::connection conn{db.dsn()};
  static const bool loaded = [] {
    persistence::apply_migrations(conn, persistence::bundled_migrations());
    pqxx::work tx{conn};
    tx.exec("INSERT INTO vendors (id, name) VALUES ('00000000-0000-4000-8000-000000000001', 'Gen Vendor A'),"
            " ('00000000-0000-4000-8000-000000000002', 'Gen Vendor B')");
    tx.exec("INSERT INTO categories (id, name) VALUES ('00000000-0000-4000-8000-0000000000c1', 'Gen Root')");
    tx.exec("INSERT INTO categories (id, name, parent_id) VALUES ('00000000-0000-4000-8000-0000000000c2', 'Gen Leaf',"
            " '00000000-0000-4000-8000-0000000000c1')");
    // One word in 500 names is rare ("zephyr"), so the full-text search is selective, as real searches are.
    tx.exec(
        "INSERT INTO products (sku, name, description, category_id, vendor_id, base_price, current_price,"
        " created_at, updated_at)"
        " SELECT 'GEN-' || g,"
        "  (ARRAY['Alpha','Bravo','Cobalt','Delta','Ember','Falcon','Granite','Harbor'])[1 + g % 8] || ' ' ||"
        "  CASE WHEN g % 500 = 0 THEN 'Zephyr ' ELSE '' END || 'Item ' || g,"
        "  'Generated product number ' || g || ' for the plan test',"
        "  CASE WHEN g % 50 = 0 THEN '00000000-0000-4000-8000-0000000000c2'::uuid ELSE NULL END,"
        "  CASE WHEN g % 100 = 0 THEN '00000000-0000-4000-8000-000000000001'::uuid"
        "       ELSE '00000000-0000-4000-8000-000000000002'::uuid END,"
        "  ((g % 5000) + 100) / 100.0, ((g % 4000) + 50) / 100.0,"
        "  NOW() - g * INTERVAL '1 second', NOW() - g * INTERVAL '1 second'"
        " FROM generate_series(1, " + std::to_string(products) + ") g");
    tx.exec("INSERT INTO inventory (product_id, on_hand, reserved, low_stock_threshold, version)"
            " SELECT id, (abs(hashtext(sku)) % 20), 0, 10, 1 FROM products");
    tx.commit();
    pqxx::nontransaction n{conn};
    n.exec("ANALYZE products");
    n.exec("ANALYZE inventory");
    n.exec("ANALYZE categories");
    return true;
  }();
  (void)loaded;
  return conn;
}

// The cursor of the first page's last row, as the listing hands it to the next page.
std::optional<product_cursor> second_page_cursor(pqxx::connection& conn, const product_filter& f, product_sort s) {
  auto page = persistence::catalog_store::list_products(conn, f, s, std::nullopt, 20);
  REQUIRE(page.items.size() == 20);
  REQUIRE(page.next.has_value());
  return page.next;
}

void check_indexed(pqxx::connection& conn, const product_filter& f, product_sort s, const std::string& what) {
  for (const auto& after : {std::optional<product_cursor>{}, second_page_cursor(conn, f, s)}) {
    const auto p = explain(conn, f, s, after);
    INFO(what << (after ? " (a later page)" : " (first page)") << ": " << p.text);
    CHECK_FALSE(p.seq_scan_of_products());
    CHECK((p.uses("Index Scan") || p.uses("Index Only Scan") || p.uses("Bitmap Index Scan")));
  }
}

}  // namespace

TEST_CASE("the generated catalog is there") {
  pqxx::nontransaction tx{catalog()};
  CHECK(tx.exec("SELECT COUNT(*) FROM products")[0][0].as<int>() == products);
}

TEST_CASE("listing in every sort is an index scan on the first and later pages") {
  auto& conn = catalog();
  check_indexed(conn, {}, product_sort::newest, "-created_at");
  check_indexed(conn, {}, product_sort::name, "name");
  check_indexed(conn, {}, product_sort::price_asc, "price");
  check_indexed(conn, {}, product_sort::price_desc, "-price");
}

TEST_CASE("full-text search goes through the GIN index, in relevance and the other sorts") {
  auto& conn = catalog();
  product_filter f;
  f.query = "zephyr";
  for (auto s : {product_sort::relevance, product_sort::price_asc, product_sort::name, product_sort::newest}) {
    const auto p = explain(conn, f, s, std::nullopt);
    INFO(p.text);
    CHECK_FALSE(p.seq_scan_of_products());
  }
  const auto p = explain(conn, f, product_sort::relevance, std::nullopt);
  INFO(p.text);
  CHECK(p.text.find("idx_products_search") != std::string::npos);
  check_indexed(conn, f, product_sort::relevance, "q=zephyr relevance");
  // The search finds exactly the generated "Zephyr" products, ranked.
  auto page = persistence::catalog_store::list_products(conn, f, product_sort::relevance, std::nullopt, 100);
  CHECK(page.items.size() == 100);
  for (const auto& item : page.items) {
    CHECK(item.name.find("Zephyr") != std::string::npos);
  }
}

TEST_CASE("filters keep index plans: vendor, category with sub-categories, price range, in stock") {
  auto& conn = catalog();
  product_filter vendor;
  vendor.vendor_id = "00000000-0000-4000-8000-000000000001";
  check_indexed(conn, vendor, product_sort::newest, "vendor");
  product_filter category;
  category.category_id = "00000000-0000-4000-8000-0000000000c1";
  check_indexed(conn, category, product_sort::price_asc, "category (root of a sub-tree)");
  product_filter range;
  range.min_price = 1000;
  range.max_price = 1200;
  check_indexed(conn, range, product_sort::price_asc, "price range");
  product_filter stocked;
  stocked.in_stock_only = true;
  check_indexed(conn, stocked, product_sort::newest, "in_stock");
}
