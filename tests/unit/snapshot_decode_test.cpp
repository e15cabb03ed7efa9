// Snapshots read back from PostgreSQL are input too: inputs found by tests/fuzz (snapshots) that broke a
// decoder, each now refused with an exception the entity runtime reports (never undefined behaviour).

#include <doctest/doctest.h>

#include <stdexcept>
#include <string>

#include <boost/json/parse.hpp>

#include "actors/inventory/inventory_model.hpp"

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
