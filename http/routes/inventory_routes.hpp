#pragma once
// Inventory over HTTP (API.md "Inventory"): each product's stock is an inventory entity of the runtime,
// reached through the entity bridge. Who may adjust (the product's vendor, an admin) is decided here,
// from the catalog.

#include "http/entity_bridge.hpp"
#include "http/router.hpp"
#include "persistence/pg_pool.hpp"

namespace mercato::http {

void add_inventory_routes(router& routes, persistence::pg_pool& pool, const entity_bridge& bridge);

}  // namespace mercato::http
