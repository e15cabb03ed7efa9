#pragma once
// Inventory over HTTP (API.md "Inventory"): each product's stock is an inventory entity of the runtime,
// reached through the entity bridge. Who may adjust (the product's vendor, an admin) is decided here,
// from the catalog. A committed adjustment drops the product from this node's product_lines before the
// answer, so the next add-to-cart here sees the new stock.

#include "http/entity_bridge.hpp"
#include "http/product_lines.hpp"
#include "http/router.hpp"
#include "persistence/pg_pool.hpp"

namespace mercato::http {

void add_inventory_routes(router& routes, persistence::pg_pool& pool, const entity_bridge& bridge,
                          product_lines& lines);

}  // namespace mercato::http
