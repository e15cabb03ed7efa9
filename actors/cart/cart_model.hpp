#pragma once
// The cart entity: lines of products a shopper intends to buy. Carts hold no stock (stock is
// reserved at checkout), so a cart change touches only the cart.

#include <cstdint>
#include <string>
#include <vector>

#include <boost/json/value.hpp>
#include <caf/message.hpp>

#include "actors/protocol/cart_messages.hpp"
#include "actors/protocol/entity_context.hpp"
#include "actors/protocol/entity_records.hpp"

namespace mercato::actors {

struct cart_model {
  static constexpr const char* kind = "cart";
  static constexpr int schema_version = 2;
  static constexpr int max_lines = 100;
  static constexpr std::int32_t max_quantity = 999;
  static constexpr std::size_t merged_from_kept = 50;  // source carts remembered against a repeated merge

  struct state {
    std::string owner_user_id;
    std::string token_hash;
    std::string currency = "USD";
    std::string status = "open";  // open, merging, merged (see cart_hand_over), checked_out
    std::vector<protocol::cart_line> items;
    std::string updated_at;
    std::string merged_into;               // merging/merged: where the lines went
    std::vector<std::string> merged_from;  // guest carts merged into this one (the last merged_from_kept)
    std::string last_order_id;             // the last order checked out of it (cart_checked_out applied once)
  };

  static state empty(const std::string& id);
  static state decode(const boost::json::value& v);
  // The snapshot's text, written without a tree (every add-to-cart stores one, and a parking cart another).
  static std::string encode_text(const state& s);
  // The `carts` query table row.
  static std::vector<protocol::projection_row> project(const std::string& id, const state& s, std::int64_t version);
  static bool handle(protocol::entity_context<state>& ctx, const caf::message& msg);
  static const protocol::command_meta* meta_of(const caf::message& msg);
  static caf::message current(const std::string& id, const state& s, std::int64_t version);
  // Only the owner (user id), the holder of the guest cart's token, or (to read) an admin: anyone else
  // is told the cart does not exist.
  static caf::error admit(const state& s, std::int64_t version, const caf::message& msg,
                          const protocol::command_meta& meta);

  static protocol::cart_view view(const std::string& id, const state& s, std::int64_t version);
};

}  // namespace mercato::actors
