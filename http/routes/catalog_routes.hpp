#pragma once
// Catalog reads: GET /api/v1/products, /api/v1/products/{id}, /api/v1/categories, served through the
// two-level catalog cache when one is given (see catalog_routes.cpp for the keys and the threading).

#include <memory>

#include "http/catalog_cache.hpp"
#include "http/router.hpp"
#include "persistence/catalog_store.hpp"
#include "persistence/pg_pool.hpp"

namespace boost::json {
class object;
}

namespace mercato::http {

// `cache` may be null: every read then goes to PostgreSQL. Writers of the catalog (product, stock and
// category changes) must call cache->invalidate_product(id) / invalidate_categories() on the same
// cache object; they reach every node through Redis.
void add_catalog_routes(router& routes, persistence::pg_pool& pool, std::shared_ptr<catalog_cache> cache = nullptr);

// The product representation of API.md (exposed for tests).
boost::json::object product_json(const persistence::product_view& p);

}  // namespace mercato::http
