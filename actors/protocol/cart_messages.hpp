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
  std::int64_t unit_price = 0;  // minor units
};

struct cart_view {
  std::string id;
  std::int64_t version = 0;
  std::string owner_user_id;  // empty for a guest cart
  std::string currency;
  std::vector<cart_line> items;
  std::int64_t subtotal = 0;
  std::string status;      // open, checked_out
  std::string updated_at;  // RFC 3339
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

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cart_line& x) {
  return f(caf::meta::type_name("cart_line"), x.product_id, x.sku, x.name, x.quantity, x.unit_price);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cart_view& x) {
  return f(caf::meta::type_name("cart_view"), x.id, x.version, x.owner_user_id, x.currency, x.items, x.subtotal,
           x.status, x.updated_at);
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
