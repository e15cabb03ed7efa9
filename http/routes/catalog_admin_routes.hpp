#pragma once
// Catalog structure owned by admins (API.md "Catalog"): POST /categories, POST /vendors and the public
// GET /vendors/{id}. A category change invalidates the cached tree on every node.

#include <memory>

#include "http/router.hpp"
#include "persistence/pg_pool.hpp"

namespace mercato::http {

class catalog_cache;
class worker_pool;

void add_catalog_admin_routes(router& routes, persistence::pg_pool& pool, worker_pool& workers,
                              std::shared_ptr<catalog_cache> cache);

}  // namespace mercato::http
