#pragma once
// The outbox handlers that tell people about their orders (seed "OrderPlacedHandler"):
//   OrderPlaced  (order)   -> an order confirmation to the customer, and to every user of each vendor with
//                             items in the order a new-order notification listing that vendor's items only;
//   OrderShipped (order)   -> a shipping notice to the customer (carrier, tracking number);
//   RefundIssued (payment) -> a refund notice to the customer.
// Event data (JSON object text, amounts in integer minor units):
//   OrderPlaced  {order_id, order_number, customer_id, currency, total_amount,
//                 items: [{product_id, product_sku, product_name, quantity, unit_price, total_price, vendor_id}],
//                 shipping_address}
//   OrderShipped {order_id, order_number, customer_id, shipment: {carrier, tracking_number, label_url}}
//   RefundIssued {payment_id, order_id, order_number, customer_id, amount, currency, refunded_amount}
//
// Each kind is its own subscriber, so a failure in one (say the vendor lookup) is retried and parked for that
// kind alone, under its own metric label. A handler runs on the dispatcher thread and does at most two round
// trips per batch (the vendors' users for all OrderPlaced events of the batch, then one INSERT of all its
// notifications): the batch is what makes it cheap, and running inline means a failure throws back to the
// dispatcher, which retries and finally parks, so nothing is lost in a queue of ours. Idempotent by event
// id: the notifier stores (user, event, kind) once. An event whose data does not follow the contract is
// logged and skipped (retrying would not fix it, and parking it would park the good events of its batch too).

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "notifications/notifier.hpp"
#include "persistence/outbox_dispatcher.hpp"

namespace mercato::notifications {

// vendor id -> its users' ids (who is told about a vendor's new orders).
using vendor_users_map = std::map<std::string, std::vector<std::string>>;
using vendor_lookup = std::function<vendor_users_map(const std::vector<std::string>& vendor_ids)>;

struct subscription {
  std::string name;  // the subscriber's name in logs, metrics and outbox_parked
  persistence::outbox_filter filter;
  persistence::outbox_dispatcher::handler handler;
};

// The three subscribers (notify-order-placed, notify-order-shipped, notify-refund-issued); subscribe each to
// the outbox. `out` and `vendors` are called on the dispatcher thread and may throw (the batch is retried).
std::vector<subscription> outbox_subscriptions(std::shared_ptr<notifier> out, vendor_lookup vendors);

// What one event asks for, without I/O (the handlers and the tests use them). They throw
// std::invalid_argument when the event's data does not follow the contract above.
std::vector<std::string> order_placed_vendors(const persistence::outbox_event& e);
std::vector<notification> order_placed_notifications(const persistence::outbox_event& e,
                                                     const vendor_users_map& vendor_users);
std::vector<notification> order_shipped_notifications(const persistence::outbox_event& e);
std::vector<notification> refund_issued_notifications(const persistence::outbox_event& e);

// 1234 USD -> "12.34 USD" (0 decimals for JPY, KRW and the other zero-decimal currencies).
std::string format_money(std::int64_t minor_units, const std::string& currency);

}  // namespace mercato::notifications
