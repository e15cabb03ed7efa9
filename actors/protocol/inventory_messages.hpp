#pragma once
// Inventory commands and the view their replies carry. One inventory entity per product (entity id =
// the product's UUID); registered in the type-ID block: they cross nodes.
//
// Every command first drops the reservations whose TTL has passed (written with the command's change
// as ReservationExpired events). Every answer is the entity's inventory_view once the change (if any)
// is committed. Errors: not_found (no inventory for this product, or an unknown reservation on
// commit), invalid (a malformed command), conflict (the change would break an invariant, or the
// reservation is in a state that forbids it), insufficient_stock (a reservation larger than what is
// available, or an adjustment that would take on_hand below what is reserved). A rejected command changes nothing (expired reservations are then dropped by the next
// accepted command or by inventory_expire).

#include <cstdint>
#include <string>

#include <caf/meta/type_name.hpp>

#include "actors/protocol/meta.hpp"

namespace mercato::protocol {

// The stock of one product. available = on_hand - reserved >= 0, always.
struct inventory_view {
  std::string product_id;
  std::int64_t on_hand = 0;   // units in the warehouse, reserved ones included
  std::int64_t reserved = 0;  // units held by open reservations
  std::int64_t available = 0; // on_hand - reserved: what can still be reserved
  std::int64_t low_stock_threshold = 0;
  std::int64_t version = 0;   // the committed version this view shows
};

// Reads the stock (drops expired reservations first, which is then a change).
struct inventory_get {
  command_meta meta;
};

// Receives (delta > 0) or removes (delta < 0) units: a delivery, a count correction, a write-off.
// delta = 0 or an empty reason is invalid; a delta that would take on_hand below what is reserved
// (or below 0) is insufficient_stock. The StockChanged event records the reason, meta.user_id and the time.
struct inventory_adjust {
  command_meta meta;
  std::int32_t delta = 0;
  std::string reason;  // 1..200 characters, e.g. "delivery PO-1234", "stock count"
};

// Sets the low-stock threshold (>= 0). Setting the current value changes nothing.
struct inventory_set_threshold {
  command_meta meta;
  std::int32_t threshold = 0;
};

// Holds `quantity` units for a checkout until it commits or releases them, at most `ttl_ms`.
// Idempotent per reservation_id: while the reservation is open (or after it was committed) a repeat
// with the same quantity answers the current view and reserves nothing more; a repeat with another
// quantity is a conflict, and so is reusing the id of a reservation that was released or expired
// (a new attempt takes a new id). More than available: insufficient_stock.
struct inventory_reserve {
  command_meta meta;
  std::string reservation_id;  // the checkout id: 1..64 printable ASCII characters, no spaces
  std::int32_t quantity = 0;   // 1..1'000'000
  std::int64_t ttl_ms = 0;     // 1 ms .. 24 h
};

// Turns the reservation into a sale: removes it and takes its units off on_hand (available is
// unchanged). Repeating a commit that succeeded is harmless (answers the current view) while the
// entity remembers the id (the last 128 settled reservations of the product); a reservation that was
// released or expired is a conflict (its units are no longer held); an id never seen: not_found.
struct inventory_commit {
  command_meta meta;
  std::string reservation_id;
};

// Gives the reserved units back. Idempotent: releasing a released, expired or unknown reservation
// answers the current view (a checkout may compensate a reserve that never happened); releasing a
// committed one is a conflict (the units are sold).
struct inventory_release {
  command_meta meta;
  std::string reservation_id;
};

// Drops the reservations whose TTL has passed, without other traffic: what a periodic sweep sends.
// Answers the current view (a change only if something expired).
struct inventory_expire {
  command_meta meta;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, inventory_view& x) {
  return f(caf::meta::type_name("inventory_view"), x.product_id, x.on_hand, x.reserved, x.available,
           x.low_stock_threshold, x.version);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, inventory_get& x) {
  return f(caf::meta::type_name("inventory_get"), x.meta);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, inventory_adjust& x) {
  return f(caf::meta::type_name("inventory_adjust"), x.meta, x.delta, x.reason);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, inventory_set_threshold& x) {
  return f(caf::meta::type_name("inventory_set_threshold"), x.meta, x.threshold);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, inventory_reserve& x) {
  return f(caf::meta::type_name("inventory_reserve"), x.meta, x.reservation_id, x.quantity, x.ttl_ms);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, inventory_commit& x) {
  return f(caf::meta::type_name("inventory_commit"), x.meta, x.reservation_id);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, inventory_release& x) {
  return f(caf::meta::type_name("inventory_release"), x.meta, x.reservation_id);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, inventory_expire& x) {
  return f(caf::meta::type_name("inventory_expire"), x.meta);
}

}  // namespace mercato::protocol
