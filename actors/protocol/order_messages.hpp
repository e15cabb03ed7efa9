#pragma once
// Order and payment commands and the views their replies carry (API.md "Checkout, orders, payments").
// Registered in the type-ID block: they cross nodes. Money in integer minor units.
//
// An order is created by the checkout saga (actors/order/checkout_saga) and moved along by it:
//   reserving -> pending_payment -> paid          (the stock of every line reserved, then charged)
//   reserving -> failed                           (a line short of stock: never shown as an order)
//   pending_payment -> canceled                   (payment declined or timed out; stock released)
// Each step is a command whose repeat (same target state) answers the order as it is, so a saga that
// is driven again after a crash or a retry never applies a step twice.

#include <cstdint>
#include <string>
#include <vector>

#include <caf/meta/type_name.hpp>

#include "actors/protocol/meta.hpp"

namespace mercato::protocol {

struct order_line {
  std::string product_id;
  std::string sku;
  std::string name;
  std::string vendor_id;
  std::int32_t quantity = 0;
  std::int64_t unit_price = 0;
};

struct order_history_entry {
  std::string status;
  std::string at;  // RFC 3339
};

struct order_shipment {
  std::string id;
  std::string carrier;
  std::string tracking_number;
  std::string label_url;
  std::string shipped_at;
};

struct order_return_line {
  std::string product_id;
  std::int32_t quantity = 0;
};

struct order_return {
  std::string id;
  std::vector<order_return_line> items;
  std::string reason;
  std::string status;  // requested, received
  std::int64_t refund_amount = 0;
  std::string requested_at;
  std::string received_at;
};

struct order_view {
  std::string id;
  std::int64_t version = 0;
  std::string order_number;
  std::string customer_id;
  std::string cart_id;
  std::string status;  // reserving, pending_payment, paid, canceled, failed
  std::string currency;
  std::vector<order_line> items;
  std::int64_t subtotal = 0;
  std::int64_t tax = 0;
  std::int64_t shipping = 0;
  std::int64_t discount = 0;
  std::int64_t total = 0;
  std::string shipping_address;  // JSON object text
  std::string billing_address;   // JSON object text
  std::string payment_id;
  std::string payment_status;
  std::vector<order_history_entry> history;
  std::string failure_code;    // failed/canceled: insufficient_stock, payment_declined, payment_timeout
  std::string failure_detail;  // JSON text: the short lines, or the provider's decline code
  std::string created_at;
  std::string updated_at;
  std::string payment_token;  // the provider's card token while the payment is open (never shown to clients)
  std::vector<order_shipment> shipments;
  std::vector<order_return> returns;
  std::int64_t refunded = 0;  // minor units refunded so far (cancel, returns)
  // An operation that spans entities and the provider, recorded before its first side effect so that
  // it is finished after a crash (order_sagas.step canceling / receiving): "cancel" or "receive"
  // (of return `operation_return_id`); empty when none is under way. Never shown to clients.
  std::string operation;
  std::string operation_return_id;
  // The checkout was allowed to capture: a cancel from here on waits for the order to be paid and
  // then refunds it, instead of voiding.
  bool capturing = false;
};

// Creates the order in `reserving` (the saga's first step). A repeat answers the order as it is.
struct order_create {
  command_meta meta;
  std::string customer_id;
  std::string cart_id;
  std::string currency;
  std::vector<order_line> items;
  std::int64_t subtotal = 0;
  std::int64_t tax = 0;
  std::int64_t shipping = 0;
  std::int64_t discount = 0;
  std::int64_t total = 0;
  std::string shipping_address;
  std::string billing_address;
  std::string payment_token;  // the provider's card token (never a card number)
};

// Moves the order to `to`, API.md's state machine: pending_payment, paid, canceled, failed (the
// checkout saga), shipped (with `shipment`), delivered, return_requested (with `return_request`),
// refunded / partially_refunded (receiving return `return_request.id`, refunding `refund_amount`).
// Already there (and, for returns, the same return): the order as it is. Any other transition:
// invalid_transition.
struct order_transition {
  command_meta meta;
  std::string to;
  std::string failure_code;
  std::string failure_detail;
  std::string payment_id;
  std::string payment_status;
  order_shipment shipment;
  order_return return_request;
  std::int64_t refund_amount = 0;
};

struct order_get {
  command_meta meta;
};

// Records that an operation starts, before its first side effect, and answers the order as it then
// is. "cancel" (pending_payment or paid; canceled already: the order as it is), "receive" (return
// `return_id` of a return_requested order). Gates of the checkout saga, which record nothing but
// are refused (invalid_transition) once a cancel is recorded: "authorize", and "capture" (which
// records `capturing`).
struct order_begin {
  command_meta meta;
  std::string operation;
  std::string return_id;
};

struct payment_pending_refund {
  std::string refund_id;
  std::int64_t amount = 0;
  std::string reason;
  std::string order_number;
  std::string started_at;
};

struct payment_view {
  std::string id;
  std::int64_t version = 0;
  std::string order_id;
  std::string customer_id;
  std::string status;  // pending, authorized, captured, failed, voided, refunded, partially_refunded
  std::int64_t amount = 0;
  std::int64_t refunded_amount = 0;
  std::string currency;
  std::string provider;
  std::string provider_reference;
  std::string token;  // the provider's card token, used for the provider calls
  std::string failure_code;
  std::string created_at;
  std::string updated_at;
  std::vector<std::string> refund_ids;  // refunds recorded (the last 64)
  // Refunds asked of the provider and not yet recorded: they count against what can still be
  // refunded, and a node that died between the provider's answer and the record finishes them.
  std::vector<payment_pending_refund> pending_refunds;
};

// Opens the payment of an order (status pending). A repeat for the same order answers it as it is.
struct payment_create {
  command_meta meta;
  std::string order_id;
  std::string customer_id;
  std::int64_t amount = 0;
  std::string currency;
  std::string provider;
  std::string token;
};

// Records what the provider answered: authorized (with its reference), captured, failed (with a
// code), voided. A repeat of the current outcome answers the payment as it is.
struct payment_record {
  command_meta meta;
  std::string outcome;
  std::string provider_reference;
  std::string failure_code;
};

struct payment_get {
  command_meta meta;
};

// Records a refund the provider made: refunded_amount grows by `amount` (never past what was
// captured), status refunded or partially_refunded; event RefundIssued. Applied once per refund_id.
// With `intent`, it records the refund as pending before the provider is asked (at most what is
// captured and neither refunded nor pending); without, it records the provider's refund and drops
// the pending entry of the same id.
struct payment_refund {
  command_meta meta;
  std::string refund_id;
  std::int64_t amount = 0;
  std::string reason;
  std::string order_number;  // for the refund notice
  bool intent = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, order_shipment& x) {
  return f(caf::meta::type_name("order_shipment"), x.id, x.carrier, x.tracking_number, x.label_url, x.shipped_at);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, order_return_line& x) {
  return f(caf::meta::type_name("order_return_line"), x.product_id, x.quantity);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, order_return& x) {
  return f(caf::meta::type_name("order_return"), x.id, x.items, x.reason, x.status, x.refund_amount, x.requested_at,
           x.received_at);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, order_line& x) {
  return f(caf::meta::type_name("order_line"), x.product_id, x.sku, x.name, x.vendor_id, x.quantity, x.unit_price);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, order_history_entry& x) {
  return f(caf::meta::type_name("order_history_entry"), x.status, x.at);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, order_view& x) {
  return f(caf::meta::type_name("order_view"), x.id, x.version, x.order_number, x.customer_id, x.cart_id, x.status,
           x.currency, x.items, x.subtotal, x.tax, x.shipping, x.discount, x.total, x.shipping_address,
           x.billing_address, x.payment_id, x.payment_status, x.history, x.failure_code, x.failure_detail,
           x.created_at, x.updated_at, x.payment_token, x.shipments, x.returns, x.refunded, x.operation,
           x.operation_return_id, x.capturing);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, order_create& x) {
  return f(caf::meta::type_name("order_create"), x.meta, x.customer_id, x.cart_id, x.currency, x.items, x.subtotal,
           x.tax, x.shipping, x.discount, x.total, x.shipping_address, x.billing_address, x.payment_token);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, order_transition& x) {
  return f(caf::meta::type_name("order_transition"), x.meta, x.to, x.failure_code, x.failure_detail, x.payment_id,
           x.payment_status, x.shipment, x.return_request, x.refund_amount);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, order_get& x) {
  return f(caf::meta::type_name("order_get"), x.meta);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, order_begin& x) {
  return f(caf::meta::type_name("order_begin"), x.meta, x.operation, x.return_id);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, payment_pending_refund& x) {
  return f(caf::meta::type_name("payment_pending_refund"), x.refund_id, x.amount, x.reason, x.order_number,
           x.started_at);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, payment_view& x) {
  return f(caf::meta::type_name("payment_view"), x.id, x.version, x.order_id, x.customer_id, x.status, x.amount,
           x.refunded_amount, x.currency, x.provider, x.provider_reference, x.token, x.failure_code, x.created_at,
           x.updated_at, x.refund_ids, x.pending_refunds);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, payment_create& x) {
  return f(caf::meta::type_name("payment_create"), x.meta, x.order_id, x.customer_id, x.amount, x.currency,
           x.provider, x.token);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, payment_record& x) {
  return f(caf::meta::type_name("payment_record"), x.meta, x.outcome, x.provider_reference, x.failure_code);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, payment_refund& x) {
  return f(caf::meta::type_name("payment_refund"), x.meta, x.refund_id, x.amount, x.reason, x.order_number,
           x.intent);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, payment_get& x) {
  return f(caf::meta::type_name("payment_get"), x.meta);
}

}  // namespace mercato::protocol
