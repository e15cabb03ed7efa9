#pragma once
// What happens to an order after checkout that needs more than one entity or the payment provider
// (API.md "orders", "payments"): cancel (a paid order is refunded in full and its stock returned; an
// order still pending payment is ended by its checkout saga, which voids and releases once the cancel
// is recorded, or ends it paid if its capture was under way, and then it is refunded), receiving a
// return (stock returned, the returned lines refunded), and a refund of a payment. Each is a short-lived
// flow actor whose steps are idempotent (provider calls by key, entity commands by id), so a repeat of
// the request after any failure finishes the same operation without refunding twice. Each records
// itself before its first side effect (the order's operation, the payment's pending refund), and
// housekeeping finishes what a dead node left under way (resume_* below).

#include <functional>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/expected.hpp>

#include "actors/order/checkout_saga.hpp"
#include "actors/protocol/meta.hpp"
#include "actors/protocol/order_messages.hpp"

namespace mercato::actors {

using order_done = std::function<void(caf::expected<protocol::order_view>)>;
using payment_done = std::function<void(caf::expected<protocol::payment_view>)>;

// Cancels `order_id` (pending_payment or paid; anything else: invalid_transition).
void run_cancel(caf::actor_system& sys, checkout_context ctx, std::string order_id, protocol::command_meta meta,
                order_done done);

// Receives return `return_id` of `order_id`: its units back in stock, its lines' value refunded, the
// order refunded (everything returned) or partially_refunded. An empty `return_id`: the return the
// order records as being received (housekeeping's resume).
void run_receive_return(caf::actor_system& sys, checkout_context ctx, std::string order_id, std::string return_id,
                        protocol::command_meta meta, order_done done);

// Refunds `amount` of payment `payment_id` as refund `refund_id` (at most what can still be refunded).
// An empty `refund_id`: finishes the refunds the payment records as pending (housekeeping's resume).
void run_refund(caf::actor_system& sys, checkout_context ctx, std::string payment_id, std::string refund_id,
                std::int64_t amount, std::string reason, protocol::command_meta meta, payment_done done);

}  // namespace mercato::actors
