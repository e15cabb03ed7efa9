// Snapshots read back from PostgreSQL are input too: inputs found by tests/fuzz (snapshots) that broke a
// decoder, each now refused with an exception the entity runtime reports (never undefined behaviour).

#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include <boost/json/parse.hpp>

#include "actors/cart/cart_model.hpp"
#include "actors/inventory/inventory_model.hpp"
#include "actors/snapshot_fields.hpp"

using mercato::actors::cart_model;
using mercato::actors::inventory_model;

TEST_CASE("inventory snapshot times: what format_time writes reads back; other eras and fields are refused") {
  const auto t = inventory_model::parse_time("2026-09-21T12:00:00.250000Z");
  CHECK(inventory_model::format_time(t).rfind("2026-09-21T12:00:00.25", 0) == 0);
  CHECK(inventory_model::parse_time(inventory_model::format_time(t)) == t);
  // Year 1013 overflowed system_clock's nanoseconds in from_time_t (UBSan: signed integer overflow).
  CHECK_THROWS_AS(inventory_model::parse_time("1013-09-21T12:00:00.00Z"), std::invalid_argument);
  CHECK_THROWS_AS(inventory_model::parse_time("9999-01-01T00:00:00Z"), std::invalid_argument);
  CHECK_THROWS_AS(inventory_model::parse_time("2026-13-01T00:00:00Z"), std::invalid_argument);
  CHECK_THROWS_AS(inventory_model::parse_time("2026-01-01T24:00:00Z"), std::invalid_argument);
  CHECK_THROWS_AS(inventory_model::parse_time("2026-01-00T00:00:00Z"), std::invalid_argument);

  const std::string snapshot =
      R"({"schema":1,"on_hand":10,"reserved":2,"low_stock_threshold":3,"reservations":[{"id":"r1","quantity":2,)"
      R"("expires_at":"1013-09-21T12:00:00.00Z","reserved_at":"2026-09-21T11:50:00Z"}],"low":false,"settled":[],)"
      R"("updated_at":"2026-09-21T12:00:00Z"})";
  CHECK_THROWS_AS(inventory_model::decode(boost::json::parse(snapshot)), std::invalid_argument);
}

namespace {

std::string cart_with_line(const std::string& quantity, const std::string& unit_price) {
  return R"({"schema":2,"owner_user_id":"","token_hash":"","currency":"USD","status":"open","updated_at":"",)"
         R"("merged_into":"","last_order_id":"","items":[{"product_id":"p","sku":"s","name":"n","quantity":)" +
         quantity + R"(,"unit_price":)" + unit_price + "}]}";
}

}  // namespace

TEST_CASE("cart snapshot lines: quantities and prices the commands allow read back; others are refused") {
  const auto ok = cart_model::decode(boost::json::parse(cart_with_line("999", "9999999999")));
  REQUIRE(ok.items.size() == 1);
  CHECK(ok.items[0].quantity == 999);
  CHECK(ok.items[0].unit_price == 9'999'999'999);
  // A unit price of ~10^18 overflowed the cart's subtotal (UBSan: signed integer overflow; found by the
  // snapshots fuzz target in the suite).
  CHECK_THROWS_AS(cart_model::decode(boost::json::parse(cart_with_line("20", "999000000000000009"))),
                  std::invalid_argument);
  CHECK_THROWS_AS(cart_model::decode(boost::json::parse(cart_with_line("0", "100"))), std::invalid_argument);
  CHECK_THROWS_AS(cart_model::decode(boost::json::parse(cart_with_line("4294967297", "100"))), std::invalid_argument);
  CHECK_THROWS_AS(cart_model::decode(boost::json::parse(cart_with_line("1", "0"))), std::invalid_argument);
}

TEST_CASE("minor units as a decimal column: signs, small amounts and the extremes of int64") {
  using mercato::actors::minor_to_decimal;
  CHECK(minor_to_decimal(12345) == "123.45");
  CHECK(minor_to_decimal(5) == "0.05");
  CHECK(minor_to_decimal(0) == "0.00");
  CHECK(minor_to_decimal(-705) == "-7.05");
  // A stored snapshot is input: the fuzzer found INT64_MIN, whose negation overflowed.
  CHECK(minor_to_decimal(std::numeric_limits<std::int64_t>::min()) == "-92233720368547758.08");
  CHECK(minor_to_decimal(std::numeric_limits<std::int64_t>::max()) == "92233720368547758.07");
}

TEST_CASE("a cart's stored text: the bytes the runtime stored before it had encode_text, and it reads back") {
  cart_model::state bare = cart_model::empty("c-1");
  bare.currency = "USD";
  bare.status = "open";
  cart_model::state full = bare;
  full.owner_user_id = "7f1a2b3c-0000-4000-8000-0000000000aa";
  full.token_hash = "ab\"cd\\ef";
  full.updated_at = "2026-12-02T01:00:00.000001Z";
  full.items.push_back({"6d1e5a54-0000-4000-8000-00000000a001", "SKU-\u00e9", "Caf\u00e9 \"Noir\"\n", 3, 1999, 0});
  full.items.push_back({"6d1e5a54-0000-4000-8000-00000000a002", "SKU-2", "Second", 1, 500, 0});
  full.items.back().previous_unit_price = 450;
  full.merged_into = "c-9";
  full.last_order_id = "6d1e5a54-0000-4000-8000-00000000b001";
  full.merged_from = {"g-1", "g-2"};
  // What boost::json::serialize wrote for the tree the cart's encode() built (removed in favour of
  // encode_text), for these two states: stored snapshots keep their form.
  const std::string bare_text =
      R"({"schema":2,"owner_user_id":"","token_hash":"","currency":"USD","status":"open","items":[],"updated_at":""})";
  const std::string full_text =
      R"({"schema":2,"owner_user_id":"7f1a2b3c-0000-4000-8000-0000000000aa","token_hash":"ab\"cd\\ef",)"
      R"("currency":"USD","status":"open","items":[{"product_id":"6d1e5a54-0000-4000-8000-00000000a001",)"
      "\"sku\":\"SKU-\u00e9\",\"name\":\"Caf\u00e9 \\\"Noir\\\"\\n\","
      R"("quantity":3,"unit_price":1999},{"product_id":"6d1e5a54-0000-4000-8000-00000000a002","sku":"SKU-2",)"
      R"("name":"Second","quantity":1,"unit_price":500,"previous_unit_price":450}],)"
      R"("updated_at":"2026-12-02T01:00:00.000001Z","merged_into":"c-9",)"
      R"("last_order_id":"6d1e5a54-0000-4000-8000-00000000b001","merged_from":["g-1","g-2"]})";
  CHECK(cart_model::encode_text(bare) == bare_text);
  CHECK(cart_model::encode_text(full) == full_text);
  for (const auto* text : {&bare_text, &full_text}) {
    CHECK(cart_model::encode_text(cart_model::decode(boost::json::parse(*text))) == *text);
  }
}
