#pragma once
// Product management (API.md "Catalog"): POST /products, PATCH /products/{id}, DELETE /products/{id}
// (archives). Vendors change only their own vendor's products (another vendor's product is 404);
// admins change any. Each write commits its domain event to the outbox in the product's transaction;
// the answer is sent after this node invalidated the product's cache entries, and the outbox
// subscriber (subscribe_catalog_invalidation) invalidates again from the committed events.

#include <memory>

#include "http/router.hpp"
#include "persistence/outbox_dispatcher.hpp"
#include "persistence/pg_pool.hpp"

namespace mercato::http {

class catalog_cache;
class worker_pool;

void add_product_routes(router& routes, persistence::pg_pool& pool, worker_pool& workers,
                        std::shared_ptr<catalog_cache> cache);

// The outbox handler that drops cached product pages and listings for committed ProductCreated,
// ProductUpdated, ProductArchived (aggregate `product`) and StockChanged (aggregate `inventory`)
// events, with the filter to subscribe it with. It hands the Redis work to `workers`; when they refuse
// it throws, so the dispatcher delivers the batch again (at least once).
persistence::outbox_dispatcher::handler catalog_invalidation_handler(worker_pool& workers,
                                                                    std::shared_ptr<catalog_cache> cache);
persistence::outbox_filter catalog_invalidation_filter();

}  // namespace mercato::http
