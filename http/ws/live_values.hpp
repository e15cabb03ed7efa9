#pragma once
// The current values live-updates subscribers get first, read from the query tables the entities
// write in their own transactions (committed state only): stock from `inventory`, prices from
// `products`, order status from `orders`, each with its version.

#include <cstddef>

#include "http/ws/hub.hpp"

namespace mercato::persistence {
class pg_pool;
}

namespace mercato::http::ws {

// Runs the reads on `pool`. A customer's orders: the newest `max_orders`; "" (support, admin): the
// newest `max_orders` of all.
value_loader database_loader(persistence::pg_pool& pool, std::size_t max_orders);

}  // namespace mercato::http::ws
