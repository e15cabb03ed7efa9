#pragma once
// Catalog reads: GET /api/v1/products, /api/v1/products/{id}, /api/v1/categories.

#include "http/router.hpp"
#include "persistence/catalog_store.hpp"
#include "persistence/pg_pool.hpp"

namespace boost::json {
class object;
}

namespace mercato::http {

void add_catalog_routes(router& routes, persistence::pg_pool& pool);

// The product representation of API.md (exposed for tests).
boost::json::object product_json(const persistence::product_view& p);

}  // namespace mercato::http
