#pragma once
// The one type-ID block of mercato. Names travel on the wire: renaming or reordering is a wire break
// between nodes of different versions, so only append.

#include <vector>

#include <caf/type_id.hpp>

#include "actors/protocol/cart_messages.hpp"
#include "actors/protocol/inventory_messages.hpp"
#include "actors/protocol/meta.hpp"
#include "actors/protocol/order_messages.hpp"

CAF_BEGIN_TYPE_ID_BLOCK(mercato, caf::first_custom_type_id)
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::command_meta))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::cart_line))
  CAF_ADD_TYPE_ID(mercato, (std::vector<mercato::protocol::cart_line>))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::cart_view))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::cart_open))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::cart_get))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::cart_add_item))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::cart_set_quantity))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::cart_remove_item))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::inventory_view))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::inventory_get))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::inventory_adjust))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::inventory_set_threshold))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::inventory_reserve))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::inventory_commit))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::inventory_release))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::inventory_expire))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::cart_adjustment))
  CAF_ADD_TYPE_ID(mercato, (std::vector<mercato::protocol::cart_adjustment>))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::cart_reprice))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::cart_claim))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::cart_hand_over))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::cart_merge))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::cart_close_merged))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::order_line))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::order_view))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::order_create))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::order_transition))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::order_get))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::payment_view))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::payment_create))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::payment_record))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::payment_get))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::cart_checked_out))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::payment_refund))
  CAF_ADD_TYPE_ID(mercato, (mercato::protocol::order_begin))
CAF_END_TYPE_ID_BLOCK(mercato)
