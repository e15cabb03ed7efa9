#pragma once
// The checkout saga (API.md "Checkout"): one short-lived actor per checkout drives the order entity,
// whose snapshot records how far it got, through
//   reserve every line (all or nothing, reservation id = the order id)
//   -> order pending_payment -> payment: authorize, capture (provider, idempotent keys)
//   -> commit the reservations -> order paid (OrderPlaced, PaymentProcessed) -> ordered lines leave the cart.
// Any failure compensates: a short line releases every reservation and the order ends `failed` (never
// shown as an order); a declined or timed-out payment is voided, the reservations released and the
// order `canceled`. Every step is idempotent (entity commands that repeat answer the state as it is,
// provider calls by key), so driving an order again, after a retry or a crash, continues where it
// stopped and never charges or reserves twice. A transient error (an entity overloaded, a capture
// whose answer is unknown) leaves the order where it is: the answer says retry.

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/expected.hpp>

#include "actors/payment/payment_provider.hpp"
#include "actors/protocol/order_messages.hpp"

namespace mercato::actors {

struct checkout_settings {
  std::chrono::milliseconds reservation_ttl{15 * 60 * 1000};  // a checkout that never ends frees its stock
  std::chrono::milliseconds provider_timeout{5000};           // per provider call
  std::chrono::milliseconds step_timeout{8000};               // per entity request
  // Fault injection for the crash tests (empty: off, the default): the process kills itself with
  // SIGKILL right after this step is committed: create, reserve, authorize, capture, commit, paid
  // (checkout); cancel-begin, cancel-refund, cancel-restock (cancel of a paid order); receive-restock,
  // receive-refund (a return received); refund-provider (a refund made by the provider, not recorded).
  std::string crash_after;
};

// How a checkout ended: the order as it is (paid, failed, canceled) or why the saga could not go on.
// For a failed order with short lines, failure_detail holds them as JSON:
// [{"product_id","requested","available"}].
using checkout_done = std::function<void(caf::expected<protocol::order_view>)>;
using router_lookup = std::function<caf::actor(std::string_view kind)>;

struct checkout_context {
  router_lookup routers;
  std::shared_ptr<payment_provider> provider;
  checkout_settings settings;
};

// Creates the order `order_id` from `create` (or finds it) and drives it to its end.
// `create` with only its meta set resumes an existing order (recovery after a crash).
void run_checkout(caf::actor_system& sys, checkout_context ctx, std::string order_id, protocol::order_create create,
                  checkout_done done);

}  // namespace mercato::actors
