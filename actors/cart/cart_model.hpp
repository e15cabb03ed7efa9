#pragma once
// The cart entity: lines of products a shopper intends to buy. Carts hold no stock (stock is
// reserved at checkout), so a cart change touches only the cart.

#include <cstdint>
#include <string>
#include <vector>

#include <boost/json/value.hpp>
#include <caf/message.hpp>

#include "actors/protocol/cart_messages.hpp"
#include "persistence/snapshot_writer.hpp"
#include "supervisors/entity.hpp"

namespace mercato::actors {

struct cart_model {
  static constexpr const char* kind = "cart";
  static constexpr int schema_version = 2;
  static constexpr int max_lines = 100;
  static constexpr std::int32_t max_quantity = 999;

  struct state {
    std::string owner_user_id;
    std::string token_hash;
    std::string currency = "USD";
    std::string status = "open";
    std::vector<protocol::cart_line> items;
    std::string updated_at;
  };

  static state empty(const std::string& id);
  static state decode(const boost::json::value& v);
  static boost::json::value encode(const state& s);
  static std::vector<persistence::projection_write> project(const std::string& id, const state& s,
                                                            std::int64_t version);
  static bool handle(supervisors::entity_context<cart_model>& ctx, const caf::message& msg);

  static protocol::cart_view view(const std::string& id, const state& s, std::int64_t version);
};

}  // namespace mercato::actors
