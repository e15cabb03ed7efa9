#include "actors/cart/cart_pricing.hpp"

namespace mercato::actors {

std::int64_t pricing_rules::tax_bp_for(const std::string& country) const {
  auto it = tax_bp_by_country.find(country);
  return it == tax_bp_by_country.end() ? default_tax_bp : it->second;
}

cart_totals price_cart(const std::vector<protocol::cart_line>& items, const pricing_rules& rules,
                       const std::string& country) {
  cart_totals t;
  for (const auto& l : items) {
    t.subtotal += l.unit_price * l.quantity;
  }
  t.tax = (t.subtotal * rules.tax_bp_for(country) + 5000) / 10000;
  t.shipping = items.empty() || t.subtotal >= rules.free_shipping_threshold ? 0 : rules.shipping_flat;
  t.total = t.subtotal + t.tax + t.shipping - t.discount;
  return t;
}

}  // namespace mercato::actors
