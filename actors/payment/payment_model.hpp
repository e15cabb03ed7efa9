#pragma once
// The payment entity: one per order, the record of what the payment provider was asked and answered.
// The provider calls themselves are made by the checkout saga (never inside an entity handler: they
// wait on the network); the payment entity derives the idempotency key of each call, so a call
// repeated after a crash is the same call to the provider and never a second charge.
// Projection: `payments`. Only the provider's card token is kept, never a card number.

#include <cstdint>
#include <string>
#include <vector>

#include <boost/json/value.hpp>
#include <caf/message.hpp>

#include "actors/protocol/entity_context.hpp"
#include "actors/protocol/entity_records.hpp"
#include "actors/protocol/order_messages.hpp"

namespace mercato::actors {

struct payment_model {
  static constexpr const char* kind = "payment";
  static constexpr int schema_version = 1;

  struct state {
    protocol::payment_view payment;
  };

  static state empty(const std::string& id);
  static state decode(const boost::json::value& v);
  static boost::json::value encode(const state& s);
  static std::vector<protocol::projection_row> project(const std::string& id, const state& s, std::int64_t version);
  static bool handle(protocol::entity_context<state>& ctx, const caf::message& msg);
  static const protocol::command_meta* meta_of(const caf::message& msg);
  static caf::message current(const std::string& id, const state& s, std::int64_t version);
  static caf::error admit(const state& s, std::int64_t version, const caf::message& msg,
                          const protocol::command_meta& meta);
  static protocol::payment_view view(const std::string& id, const state& s, std::int64_t version);

  // What can still be refunded: captured, less refunded, less refunds pending at the provider.
  static std::int64_t refundable(const protocol::payment_view& p);
  // The payment of an order: a UUID derived from the order's (its first 32 bits inverted).
  static std::string id_for_order(const std::string& order_id);
  // The provider idempotency key of an operation (authorize, capture, void, refund-N) on a payment.
  static std::string provider_key(const std::string& payment_id, const std::string& operation);
};

}  // namespace mercato::actors
