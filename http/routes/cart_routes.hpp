#pragma once
// Carts over HTTP (API.md "Carts"): every cart is an entity of the runtime, reached through the
// entity bridge; product details and the stock available now come from the committed catalog and
// inventory (carts do not reserve stock), through the node's product_lines cache.

#include "actors/cart/cart_pricing.hpp"
#include "http/entity_bridge.hpp"
#include "http/product_lines.hpp"
#include "http/router.hpp"
#include "persistence/pg_pool.hpp"

namespace mercato::http {

// `pricing` computes the totals every cart answer shows (a cart has no address: the default tax rate).
// `lines` (outliving the routes) answers the product lookups of adding and changing lines.
void add_cart_routes(router& routes, persistence::pg_pool& pool, const entity_bridge& bridge,
                     actors::pricing_rules pricing, product_lines& lines);

}  // namespace mercato::http
