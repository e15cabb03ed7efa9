#pragma once
// Carts over HTTP (API.md "Carts"): every cart is an entity of the runtime, reached through the
// entity bridge; product details and the stock available now come from the committed catalog and
// inventory (carts do not reserve stock).

#include <cstdint>

#include "http/entity_bridge.hpp"
#include "http/router.hpp"
#include "persistence/pg_pool.hpp"

namespace mercato::http {

// Totals of a cart, in minor units.
struct cart_pricing {
  std::int64_t tax_rate_bp = 0;                 // tax in basis points of the subtotal (until addresses, one rate)
  std::int64_t shipping_flat = 499;             // per cart with items ...
  std::int64_t free_shipping_threshold = 5000;  // ... unless the subtotal reaches this
};

void add_cart_routes(router& routes, persistence::pg_pool& pool, const entity_bridge& bridge, cart_pricing pricing);

}  // namespace mercato::http
