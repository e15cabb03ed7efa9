#pragma once
// The first state of a product's inventory entity, written in the transaction that creates the
// product (the entity cannot be live yet: the product id is new). Version 1 of the `inventory`
// entity, in the state format of actors/inventory (schema 1), and its `inventory` projection row.

#include <cstdint>
#include <string>

#include <pqxx/transaction>

namespace mercato::persistence {

// The inventory entity's schema-1 state: {"schema":1,"on_hand":N,"reserved":0,"low_stock_threshold":T,
// "reservations":[],"low":bool}.
std::string initial_inventory_state(std::int64_t on_hand, std::int64_t low_stock_threshold);

// Inserts snapshot version 1 (owner_epoch 0: any later write is fenced by its own lease as usual)
// and the projection row. Throws on a duplicate (the product already has an inventory).
void seed_inventory(pqxx::work& tx, const std::string& product_id, std::int64_t on_hand,
                    std::int64_t low_stock_threshold);

}  // namespace mercato::persistence
