#pragma once
// Checkout, orders and payments over HTTP (API.md "Checkout, orders, payments"): the checkout starts the
// checkout saga (actors/order/checkout_saga) for an order whose id is derived from the caller, the cart
// and the Idempotency-Key, so a repeat (also after a restart) drives the same order and never charges
// twice; orders and payments are read through their entities, listings from the `orders` projection.

#include <memory>

#include <caf/actor_system.hpp>

#include "actors/cart/cart_pricing.hpp"
#include "actors/order/checkout_saga.hpp"
#include "actors/shipping/carrier.hpp"
#include "http/entity_bridge.hpp"
#include "http/router.hpp"
#include "persistence/pg_pool.hpp"

namespace mercato::http {

struct order_routes_context {
  persistence::pg_pool& pool;
  const entity_bridge& bridge;
  caf::actor_system& system;
  actors::checkout_context checkout;
  std::shared_ptr<const actors::pricing_rules> pricing;
  std::shared_ptr<actors::carrier> carrier;  // makes shipments (and renders their labels)
};

void add_order_routes(router& routes, std::shared_ptr<order_routes_context> ctx);

}  // namespace mercato::http
