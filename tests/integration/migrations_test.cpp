// Migrations and the demo catalog against a real, empty PostgreSQL database.
#include <doctest/doctest.h>

#include <atomic>
#include <climits>
#include <set>
#include <thread>

#include <boost/json.hpp>
#include <pqxx/pqxx>

#include "persistence/catalog_store.hpp"
#include "persistence/inventory_seed.hpp"
#include "persistence/migrations.hpp"
#include "persistence/snapshot_writer.hpp"
#include "support/scratch_database.hpp"

using namespace mercato;

namespace {
int count(pqxx::connection& c, const std::string& sql) {
  pqxx::nontransaction tx{c};
  return tx.exec(sql)[0][0].as<int>();
}
}  // namespace

TEST_CASE("the bundled migrations are ordered by version without duplicates") {
  const auto& all = persistence::bundled_migrations();
  REQUIRE(all.size() >= 3);
  CHECK(all.front().version == 1);
  for (std::size_t i = 0; i < all.size(); ++i) {
    CHECK((i == 0 || all[i].version > all[i - 1].version));
    CHECK_FALSE(all[i].name.empty());
    CHECK_FALSE(all[i].sql.empty());
  }
}

TEST_CASE("a new product's inventory is seeded at version 1 in the product's transaction") {
  test::scratch_database db;
  pqxx::connection conn{db.dsn()};
  persistence::apply_migrations(conn, persistence::bundled_migrations());
  const std::string id = "6d1e5a54-0000-4000-8000-00000000a001";
  {
    pqxx::work tx{conn};
    tx.exec_params("INSERT INTO products (id, sku, name, base_price, current_price) VALUES ($1::uuid, 'SEED-1', "
                   "'Seeded', 10, 10)",
                   id);
    persistence::seed_inventory(tx, id, 7, 3);
    tx.commit();
  }
  CHECK(count(conn, "SELECT COUNT(*) FROM inventory WHERE on_hand = 7 AND reserved = 0 AND low_stock_threshold = 3 "
                    "AND version = 1") == 1);
  auto snap = persistence::load_snapshot(conn, "inventory", id);
  REQUIRE(snap);
  CHECK(snap->version == 1);
  CHECK(boost::json::parse(snap->state_json).at("on_hand") == 7);
  // A second seed of the same product is refused (its inventory exists).
  pqxx::work tx{conn};
  CHECK_THROWS(persistence::seed_inventory(tx, id, 1, 1));
}

TEST_CASE("applying migrations twice is a no-op the second time") {
  test::scratch_database db;
  pqxx::connection conn{db.dsn()};
  const auto& all = persistence::bundled_migrations();
  CHECK_FALSE(persistence::migrations_current(conn, all));

  auto first = persistence::apply_migrations(conn, all);
  CHECK(first.applied.size() == all.size());
  CHECK(first.schema_version == all.back().version);
  CHECK(persistence::migrations_current(conn, all));

  auto second = persistence::apply_migrations(conn, all);
  CHECK(second.applied.empty());
  CHECK(second.schema_version == all.back().version);
  CHECK(count(conn, "SELECT COUNT(*) FROM schema_migrations") == static_cast<int>(all.size()));
  // The tables of the seed design exist, with the full-text index.
  CHECK(count(conn, "SELECT COUNT(*) FROM pg_indexes WHERE indexname = 'idx_products_search'") == 1);
  for (const char* table : {"products", "categories", "vendors", "orders", "order_items", "entity_snapshots",
                            "outbox", "idempotency_keys"}) {
    CAPTURE(table);
    CHECK(count(conn, std::string("SELECT COUNT(*) FROM pg_tables WHERE tablename = '") + table + "'") == 1);
  }
}

TEST_CASE("nodes starting together apply each migration exactly once") {
  test::scratch_database db;
  const auto& all = persistence::bundled_migrations();
  constexpr int nodes = 4;
  std::atomic<int> applied{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < nodes; ++i) {
    threads.emplace_back([&] {
      try {
        pqxx::connection conn{db.dsn()};
        auto report = persistence::apply_migrations(conn, all);
        applied += static_cast<int>(report.applied.size());
      } catch (const std::exception&) {
        ++failures;
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  CHECK(failures.load() == 0);
  CHECK(applied.load() == static_cast<int>(all.size()));
  pqxx::connection conn{db.dsn()};
  CHECK(count(conn, "SELECT COUNT(*) FROM schema_migrations") == static_cast<int>(all.size()));
}

TEST_CASE("the demo catalog loads once and has the promised shape") {
  test::scratch_database db;
  pqxx::connection conn{db.dsn()};
  persistence::apply_migrations(conn, persistence::bundled_migrations());
  const int added = persistence::load_demo_catalog(conn);
  CHECK(added >= 60);
  CHECK(persistence::load_demo_catalog(conn) == 0);
  CHECK(count(conn, "SELECT COUNT(*) FROM products") == added);
  CHECK(count(conn, "SELECT COUNT(*) FROM vendors") == 3);
  CHECK(count(conn, "SELECT COUNT(*) FROM categories") >= 8);
  CHECK(count(conn, "SELECT COUNT(*) FROM products WHERE stock_quantity = 0") > 0);
  CHECK(count(conn, "SELECT COUNT(DISTINCT current_price) FROM products") > 30);
  // Every demo product is an inventory entity at version 1, with its projection row.
  CHECK(count(conn, "SELECT COUNT(*) FROM entity_snapshots s JOIN products p ON s.id = p.id::text "
                    "WHERE s.kind = 'inventory' AND s.version = 1 "
                    "AND (s.state->>'on_hand')::int = p.stock_quantity") == added);
  CHECK(count(conn, "SELECT COUNT(*) FROM inventory i JOIN products p ON i.product_id = p.id "
                    "WHERE i.on_hand = p.stock_quantity AND i.reserved = 0") == added);
  // Three levels: a leaf whose parent has a parent.
  CHECK(count(conn,
              "SELECT COUNT(*) FROM categories c JOIN categories p ON c.parent_id = p.id "
              "JOIN categories g ON p.parent_id = g.id WHERE g.parent_id IS NULL") > 0);

  auto tree = persistence::catalog_store::category_tree(conn);
  CHECK(tree.size() == 3);
  for (const auto& top : tree) {
    CHECK_FALSE(top.parent_id.has_value());
    for (const auto& mid : top.children) {
      CHECK(mid.parent_id == top.id);
      CHECK_FALSE(mid.children.empty());
    }
  }
}

TEST_CASE("ANALYZE keeps small statistics for the written tables' keys and none for their payloads") {
  test::scratch_database db;
  pqxx::connection conn{db.dsn()};
  persistence::apply_migrations(conn, persistence::bundled_migrations());
  {
    pqxx::work tx{conn};
    tx.exec(
        "INSERT INTO entity_snapshots (kind, id, version, owner_epoch, state, recent_commands) "
        "SELECT 'cart', 'c-' || g, g, 1, jsonb_build_object('items', jsonb_build_array(g), 'n', g), 'a,b' "
        "FROM generate_series(1, 500) g");
    tx.exec(
        "INSERT INTO outbox (id, aggregate_kind, aggregate_id, event_type, data, metadata) "
        "SELECT gen_random_uuid(), 'cart', 'c-' || g, 'CartItemAdded', jsonb_build_object('n', g), "
        "jsonb_build_object('source', 'test') FROM generate_series(1, 500) g");
    tx.commit();
  }
  {
    pqxx::nontransaction tx{conn};
    tx.exec("ANALYZE entity_snapshots, outbox");
  }
  const auto stats = [&](const char* table, const char* column) {
    return count(conn, std::string("SELECT COUNT(*) FROM pg_stats WHERE schemaname = 'public' AND tablename = '") +
                           table + "' AND attname = '" + column + "'");
  };
  // The keys the planner uses keep theirs (proof that ANALYZE ran) ...
  CHECK(stats("entity_snapshots", "id") == 1);
  CHECK(stats("entity_snapshots", "version") == 1);
  CHECK(stats("outbox", "seq") == 1);
  CHECK(stats("outbox", "aggregate_id") == 1);
  // ... the payloads, which no query filters on, have none.
  CHECK(stats("entity_snapshots", "state") == 0);
  CHECK(stats("entity_snapshots", "recent_commands") == 0);
  CHECK(stats("outbox", "data") == 0);
  CHECK(stats("outbox", "metadata") == 0);
  // The keys' statistics come from a small sample (target 10, migration 0022): at most ten histogram
  // buckets for 500 distinct versions and seqs, where the default target would build a hundred.
  const auto buckets = [&](const char* table, const char* column) {
    return count(conn, std::string("SELECT COALESCE(array_length(histogram_bounds::text::text[], 1), 0) FROM pg_stats "
                                   "WHERE schemaname = 'public' AND tablename = '") +
                           table + "' AND attname = '" + column + "'");
  };
  CHECK(buckets("entity_snapshots", "version") > 1);
  CHECK(buckets("entity_snapshots", "version") <= 11);
  CHECK(buckets("outbox", "seq") > 1);
  CHECK(buckets("outbox", "seq") <= 11);
  // The outbox keeps its seq and event-id keys and has no index by aggregate.
  CHECK(count(conn, "SELECT COUNT(*) FROM pg_indexes WHERE tablename = 'outbox' AND indexname = 'outbox_id_key'") == 1);
  CHECK(count(conn, "SELECT COUNT(*) FROM pg_indexes WHERE tablename = 'outbox' AND indexdef LIKE '%aggregate%'") == 0);
  // The payloads are json (migration 0023), which kept their statistics off (checked above after ANALYZE).
  CHECK(count(conn,
              "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = 'public' AND data_type = 'json' "
              "AND ((table_name = 'entity_snapshots' AND column_name = 'state') "
              "  OR (table_name = 'outbox' AND column_name IN ('data', 'metadata')))") == 3);
}

TEST_CASE("keyset paging visits every product once in every sort order") {
  test::scratch_database db;
  pqxx::connection conn{db.dsn()};
  persistence::apply_migrations(conn, persistence::bundled_migrations());
  const int total = persistence::load_demo_catalog(conn);
  using persistence::product_sort;
  for (auto sort : {product_sort::newest, product_sort::name, product_sort::price_asc, product_sort::price_desc}) {
    CAPTURE(static_cast<int>(sort));
    std::set<std::string> seen;
    std::optional<persistence::product_cursor> after;
    std::int64_t last_price = sort == product_sort::price_desc ? INT64_MAX : -1;
    int pages = 0;
    do {
      auto page = persistence::catalog_store::list_products(conn, {}, sort, after, 10);
      for (const auto& p : page.items) {
        CHECK(seen.insert(p.id).second);
        if (sort == product_sort::price_asc) {
          CHECK(p.current_price >= last_price);
        } else if (sort == product_sort::price_desc) {
          CHECK(p.current_price <= last_price);
        }
        last_price = p.current_price;
      }
      after = page.next;
      ++pages;
    } while (after && pages < 100);
    CHECK(static_cast<int>(seen.size()) == total);
  }
  persistence::product_filter f;
  f.query = "laptop";
  auto found = persistence::catalog_store::list_products(conn, f, product_sort::relevance, std::nullopt, 100);
  CHECK(found.items.size() >= 3);
  for (const auto& p : found.items) {
    // Full-text search covers name and description (stemmed: "laptops" matches too).
    CHECK((p.name + " " + p.description.value_or("")).find("aptop") != std::string::npos);
  }
}
