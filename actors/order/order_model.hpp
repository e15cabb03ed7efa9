#pragma once
// The order entity: what a customer bought, at which prices, and where its checkout stands. Created
// and moved along by the checkout saga (actors/order/checkout_saga); its snapshot is the saga's log.
// Projections: `orders` and `order_items` (once the order exists for the customer, i.e. from
// pending_payment on) and `order_sagas` (every order, with its step, so unfinished checkouts are found).

#include <cstdint>
#include <string>
#include <vector>

#include <boost/json/value.hpp>
#include <caf/message.hpp>

#include "actors/protocol/entity_context.hpp"
#include "actors/protocol/entity_records.hpp"
#include "actors/protocol/order_messages.hpp"

namespace mercato::actors {

struct order_model {
  static constexpr const char* kind = "order";
  static constexpr int schema_version = 1;

  struct state {
    protocol::order_view order;  // id and version are filled in by view()
    std::string payment_token;
  };

  static state empty(const std::string& id);
  static state decode(const boost::json::value& v);
  static boost::json::value encode(const state& s);
  static std::vector<protocol::projection_row> project(const std::string& id, const state& s, std::int64_t version);
  static bool handle(protocol::entity_context<state>& ctx, const caf::message& msg);
  static const protocol::command_meta* meta_of(const caf::message& msg);
  static caf::message current(const std::string& id, const state& s, std::int64_t version);
  // The customer reads their own order; admin and support (meta.admin) any; the saga (source "saga")
  // drives any. Anyone else: not_found.
  static caf::error admit(const state& s, std::int64_t version, const caf::message& msg,
                          const protocol::command_meta& meta);

  // The order's row in order_sagas: its status, or canceling / receiving while such an operation is
  // under way (housekeeping finishes those after a crash).
  static std::string step_of(const protocol::order_view& o);
  static protocol::order_view view(const std::string& id, const state& s, std::int64_t version);
  // A human-readable order number derived from the order id: MC-YYMMDD-XXXXXXXXXX.
  static std::string order_number(const std::string& id, const std::string& created_at);
};

}  // namespace mercato::actors
