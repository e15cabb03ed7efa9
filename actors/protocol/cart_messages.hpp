#pragma once
// Cart commands and the cart view replies carry. Registered in the type-ID block: they cross nodes.

#include <cstdint>
#include <string>
#include <vector>

#include <caf/meta/type_name.hpp>

#include "actors/protocol/meta.hpp"

namespace mercato::protocol {

struct cart_line {
  std::string product_id;
  std::string sku;
  std::string name;
  std::int32_t quantity = 0;
  std::int64_t unit_price = 0;  // minor units: the price the cart charges (refreshed from the catalog on read)
  // The line's price before the catalog changed it (cart_reprice, or an add at a new price); 0 when
  // the price is the one the shopper saw when last changing the line. Cleared by the next change.
  std::int64_t previous_unit_price = 0;
};

// A line of a merge (cart_merge) that could not take the summed quantity.
struct cart_adjustment {
  std::string product_id;
  std::int32_t requested = 0;  // the summed quantity
  std::int32_t quantity = 0;   // what the line holds now (0: not added)
  std::string reason;          // insufficient_stock, unavailable (no longer sold), line_limit, cart_full
};

struct cart_view {
  std::string id;
  std::int64_t version = 0;
  std::string owner_user_id;  // empty for a guest cart
  std::string currency;
  std::vector<cart_line> items;
  std::int64_t subtotal = 0;
  std::string status;      // open, merging, merged (claimed into another cart), checked_out
  std::string updated_at;  // RFC 3339
  std::string merged_into;  // merging/merged: the cart its lines went to
  std::vector<cart_adjustment> adjustments;  // only in the answer to cart_merge
};

// Opens the cart for an owner (user id, or the hash of a guest cart token). Fails with conflict
// when the cart exists already. Every other command is refused as not_found unless its meta names the
// owner (user_id), carries the guest token's hash (credential_hash), or (cart_get only) comes from an
// admin.
struct cart_open {
  command_meta meta;
  std::string owner_user_id;
  std::string token_hash;
  std::string currency = "USD";
};

struct cart_get {
  command_meta meta;
};

// Adds a line, or increases its quantity. The caller supplies the product details it read.
struct cart_add_item {
  command_meta meta;
  cart_line line;
  std::int32_t available = -1;  // units of the product available now (-1: not checked): the line may not exceed it
};

// Sets a line's quantity; 0 removes it.
struct cart_set_quantity {
  command_meta meta;
  std::string product_id;
  std::int32_t quantity = 0;
  std::int32_t available = -1;  // as for cart_add_item
};

struct cart_remove_item {
  command_meta meta;
  std::string product_id;
};

// Brings line prices to the catalog's (the edge sends it when a read shows a line whose price changed).
// Lines whose price differs take the new price and remember the old one (previous_unit_price); lines
// not named, and carts that are not open, are left as they are. No difference: no change, no version.
struct cart_reprice {
  command_meta meta;
  std::vector<cart_line> prices;  // product_id, unit_price (and the current sku and name)
};

// Claim, when the user has no open cart: the guest cart becomes the user's (its token stops working).
struct cart_claim {
  command_meta meta;
  std::string owner_user_id;
};

// Claim into the user's open cart, step 1 on the guest cart: open -> merging (no more changes), its
// lines answered. Repeating it answers the same (merged_into stays the first target).
struct cart_hand_over {
  command_meta meta;
  std::string into_cart_id;
};

// Step 2 on the user's cart: adds the guest cart's lines, quantities summed and capped at what is
// available (the answer's adjustments say where). Applied once per source cart: a repeat (a claim
// retried after a crash) changes nothing.
struct cart_merge {
  command_meta meta;
  std::string source_cart_id;
  std::vector<cart_line> lines;         // at the catalog's current prices
  std::vector<std::int32_t> available;  // per line: units available now; -1: no longer sold
};

// Step 3 on the guest cart: merging -> merged (closed for good). Idempotent.
struct cart_close_merged {
  command_meta meta;
};

// Checkout finished (order paid): the ordered quantities leave the cart (lines added meanwhile stay).
// Applied once per order.
struct cart_checked_out {
  command_meta meta;
  std::string order_id;
  std::vector<cart_line> ordered;  // product_id and quantity
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cart_checked_out& x) {
  return f(caf::meta::type_name("cart_checked_out"), x.meta, x.order_id, x.ordered);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cart_line& x) {
  return f(caf::meta::type_name("cart_line"), x.product_id, x.sku, x.name, x.quantity, x.unit_price,
           x.previous_unit_price);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cart_adjustment& x) {
  return f(caf::meta::type_name("cart_adjustment"), x.product_id, x.requested, x.quantity, x.reason);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cart_view& x) {
  return f(caf::meta::type_name("cart_view"), x.id, x.version, x.owner_user_id, x.currency, x.items, x.subtotal,
           x.status, x.updated_at, x.merged_into, x.adjustments);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cart_reprice& x) {
  return f(caf::meta::type_name("cart_reprice"), x.meta, x.prices);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cart_claim& x) {
  return f(caf::meta::type_name("cart_claim"), x.meta, x.owner_user_id);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cart_hand_over& x) {
  return f(caf::meta::type_name("cart_hand_over"), x.meta, x.into_cart_id);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cart_merge& x) {
  return f(caf::meta::type_name("cart_merge"), x.meta, x.source_cart_id, x.lines, x.available);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cart_close_merged& x) {
  return f(caf::meta::type_name("cart_close_merged"), x.meta);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cart_open& x) {
  return f(caf::meta::type_name("cart_open"), x.meta, x.owner_user_id, x.token_hash, x.currency);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cart_get& x) {
  return f(caf::meta::type_name("cart_get"), x.meta);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cart_add_item& x) {
  return f(caf::meta::type_name("cart_add_item"), x.meta, x.line, x.available);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cart_set_quantity& x) {
  return f(caf::meta::type_name("cart_set_quantity"), x.meta, x.product_id, x.quantity, x.available);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cart_remove_item& x) {
  return f(caf::meta::type_name("cart_remove_item"), x.meta, x.product_id);
}

}  // namespace mercato::protocol
