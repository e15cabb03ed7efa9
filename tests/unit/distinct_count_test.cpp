// distinct_count (actors/analytics): exact while small, a bounded sketch past that, unions by merge.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "actors/analytics/distinct_count.hpp"

using mercato::actors::distinct_count;

namespace {

std::string cart(int i) { return "cart-" + std::to_string(i); }

bool within(std::int64_t estimate, double truth, double tolerance) {
  return std::abs(static_cast<double>(estimate) - truth) <= truth * tolerance;
}

}  // namespace

TEST_CASE("distinct_count is exact up to its limit, duplicates counted once") {
  distinct_count c;
  CHECK(c.size() == 0);
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 128; ++i) {
      c.insert(cart(i));
    }
  }
  CHECK(c.exact());
  CHECK(c.size() == 128);
}

TEST_CASE("past the limit it estimates within a few percent, whatever the count") {
  // Standard error 3.3 %: 10 % is three of them. Deterministic (fixed hash), so this cannot flake.
  for (int n : {129, 1'000, 20'000, 500'000}) {
    CAPTURE(n);
    distinct_count c;
    for (int i = 0; i < n; ++i) {
      c.insert(cart(i));
      c.insert(cart(i));
    }
    CHECK_FALSE(c.exact());
    CHECK(within(c.size(), n, 0.10));
  }
}

TEST_CASE("merge is a union: overlapping minutes are not counted twice") {
  distinct_count a, b, small, acc;
  for (int i = 0; i < 6'000; ++i) {
    a.insert(cart(i));
  }
  for (int i = 3'000; i < 9'000; ++i) {
    b.insert(cart(i));
  }
  for (int i = 8'990; i < 9'010; ++i) {
    small.insert(cart(i));  // exact, 10 of them new
  }
  acc.merge(a);
  acc.merge(b);
  acc.merge(small);
  CHECK(within(acc.size(), 9'010, 0.10));

  // Small exact counters merge exactly.
  distinct_count x, y, u;
  for (int i = 0; i < 50; ++i) {
    x.insert(cart(i));
    y.insert(cart(i + 25));
  }
  u.merge(x);
  u.merge(y);
  CHECK(u.exact());
  CHECK(u.size() == 75);
}
