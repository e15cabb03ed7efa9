#pragma once
// Money of a cart: the totals every cart answer shows and the order (checkout) will charge, computed in
// one place so the two cannot disagree. All amounts in integer minor units of the cart's currency.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "actors/protocol/cart_messages.hpp"

namespace mercato::actors {

struct pricing_rules {
  std::int64_t default_tax_bp = 0;                        // until the country is known
  std::map<std::string, std::int64_t> tax_bp_by_country;  // ISO 3166-1 alpha-2 -> basis points
  std::int64_t shipping_flat = 499;                       // a cart with items ships for this ...
  std::int64_t free_shipping_threshold = 5000;            // ... unless its subtotal reaches this

  // The rate for `country` ("" or unknown: the default rate).
  std::int64_t tax_bp_for(const std::string& country) const;
};

struct cart_totals {
  std::int64_t subtotal = 0;
  std::int64_t tax = 0;       // of the subtotal, rounded half up
  std::int64_t shipping = 0;
  std::int64_t discount = 0;  // no promotions yet
  std::int64_t total = 0;     // subtotal + tax + shipping - discount
};

cart_totals price_cart(const std::vector<protocol::cart_line>& items, const pricing_rules& rules,
                       const std::string& country = {});

}  // namespace mercato::actors
