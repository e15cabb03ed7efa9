// Cart totals (actors/cart/cart_pricing): what every cart answer shows and checkout will charge.
#include <doctest/doctest.h>

#include "actors/cart/cart_pricing.hpp"

using mercato::actors::price_cart;
using mercato::actors::pricing_rules;
using mercato::protocol::cart_line;

namespace {
cart_line line(std::int64_t price, std::int32_t qty) { return cart_line{"p", "s", "n", qty, price, 0}; }
}  // namespace

TEST_CASE("the country's rate applies, else the default rate; tax is rounded half up") {
  pricing_rules rules;
  rules.default_tax_bp = 825;
  rules.tax_bp_by_country = {{"DE", 1900}, {"US", 0}};
  CHECK(rules.tax_bp_for("DE") == 1900);
  CHECK(rules.tax_bp_for("US") == 0);
  CHECK(rules.tax_bp_for("FR") == 825);
  CHECK(rules.tax_bp_for("") == 825);
  // 1000 * 8.25 % = 82.5 -> 83; 999 * 8.25 % = 82.41 -> 82.
  CHECK(price_cart({line(1000, 1)}, rules).tax == 83);
  CHECK(price_cart({line(999, 1)}, rules).tax == 82);
  CHECK(price_cart({line(1000, 1)}, rules, "DE").tax == 190);
  CHECK(price_cart({line(1000, 1)}, rules, "US").tax == 0);
}

TEST_CASE("flat shipping below the threshold, free from it on, none for an empty cart; total adds up") {
  pricing_rules rules;  // 4.99 shipping, free from 50.00, no tax
  const auto below = price_cart({line(2499, 2)}, rules);
  CHECK(below.subtotal == 4998);
  CHECK(below.shipping == 499);
  CHECK(below.total == 4998 + 499);
  const auto at = price_cart({line(2500, 2)}, rules);
  CHECK(at.shipping == 0);
  CHECK(at.total == 5000);
  const auto none = price_cart({}, rules);
  CHECK(none.shipping == 0);
  CHECK(none.total == 0);
  rules.default_tax_bp = 1000;
  const auto taxed = price_cart({line(1234, 3)}, rules);
  CHECK(taxed.subtotal == 3702);
  CHECK(taxed.tax == 370);
  CHECK(taxed.discount == 0);
  CHECK(taxed.total == taxed.subtotal + taxed.tax + taxed.shipping - taxed.discount);
}
