// The product lines add-to-cart reads instead of PostgreSQL: served while fresh, gone after the TTL or
// an invalidation, and a load that raced with an invalidation is never stored.

#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <thread>

#include "http/product_lines.hpp"

using mercato::http::product_line_info;
using mercato::http::product_lines;

namespace {

product_line_info info(const std::string& id, std::int64_t price, std::int32_t available) {
  product_line_info p;
  p.line.product_id = id;
  p.line.sku = "SKU-" + id;
  p.line.name = "name " + id;
  p.line.unit_price = price;
  p.available = available;
  return p;
}

}  // namespace

TEST_CASE("a stored line is found until invalidated; unknown products are remembered as not sold") {
  product_lines lines{std::chrono::minutes(1)};
  CHECK_FALSE(lines.find("a").has_value());
  lines.store("a", info("a", 1999, 7), lines.generation());
  auto found = lines.find("a");
  REQUIRE(found.has_value());
  REQUIRE(found->has_value());
  CHECK((*found)->line.unit_price == 1999);
  CHECK((*found)->available == 7);
  CHECK((*found)->line.sku == "SKU-a");

  lines.store("gone", std::nullopt, lines.generation());
  auto gone = lines.find("gone");
  REQUIRE(gone.has_value());
  CHECK_FALSE(gone->has_value());  // known: not sold

  lines.invalidate("a");
  CHECK_FALSE(lines.find("a").has_value());
  CHECK(lines.find("gone").has_value());  // only the product named
  lines.clear();
  CHECK_FALSE(lines.find("gone").has_value());
  const auto s = lines.stats();
  CHECK(s.hits == 3);
  CHECK(s.misses == 3);
  CHECK(s.stores == 2);
  CHECK(s.invalidations == 2);
}

TEST_CASE("a load that started before an invalidation is not stored") {
  product_lines lines{std::chrono::minutes(1)};
  const auto before = lines.generation();  // a load reads PostgreSQL from here ...
  lines.invalidate("b");                    // ... while the product changes and is dropped
  lines.store("b", info("b", 100, 1), before);
  CHECK_FALSE(lines.find("b").has_value());
  CHECK(lines.stats().stale_loads_dropped == 1);
  // A load that started after it is kept.
  lines.store("b", info("b", 200, 1), lines.generation());
  REQUIRE(lines.find("b").has_value());
  CHECK((*lines.find("b"))->line.unit_price == 200);
}

TEST_CASE("an entry expires after the TTL") {
  product_lines lines{std::chrono::milliseconds(30)};
  lines.store("c", info("c", 5, 5), lines.generation());
  REQUIRE(lines.find("c").has_value());
  const auto stored = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - stored < std::chrono::milliseconds(40)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // waiting out the TTL is the property itself
  }
  CHECK_FALSE(lines.find("c").has_value());
}

TEST_CASE("the cache stays within its bound") {
  product_lines lines{std::chrono::minutes(1), 160};  // 10 per shard
  for (int i = 0; i < 5000; ++i) {
    lines.store("p" + std::to_string(i), info("p", 1, 1), lines.generation());
  }
  int kept = 0;
  for (int i = 0; i < 5000; ++i) {
    kept += lines.find("p" + std::to_string(i)).has_value() ? 1 : 0;
  }
  CHECK(kept > 0);
  CHECK(kept <= 160);
  CHECK(lines.find("p4999").has_value());  // the newest store always lands
}
