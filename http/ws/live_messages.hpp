#pragma once
// The live-updates protocol (API.md, "Live updates"): client messages parsed and checked, server
// messages serialised, and committed domain events turned into the updates clients see.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http/ws/live_item.hpp"

namespace mercato::persistence {
struct outbox_event;
}

namespace mercato::http::ws {

// {"op": "subscribe"|"unsubscribe", "topic": ..., "product_ids": [...]} or {"op": "ping"}.
struct client_message {
  enum class op_kind { subscribe, unsubscribe, ping } op = op_kind::ping;
  ws::topic topic = ws::topic::stock;
  std::vector<live_item> items;  // stock and price: the products, without repeats; empty for orders
};

// Why a client message is refused: {"type": "error", "code", "detail"}.
struct message_error {
  std::string code;
  std::string detail;
};

// Either the message or why it is refused. `max_items`: product ids one message may name.
struct parsed_message {
  std::optional<client_message> message;
  message_error error;
};
parsed_message parse_client_message(std::string_view text, std::size_t max_items);

std::string stock_message(std::string_view product_id, std::int64_t available, std::string_view status,
                          std::int64_t version);
std::string price_message(std::string_view product_id, std::int64_t amount, std::string_view currency,
                          std::int64_t version);
std::string order_message(std::string_view order_id, std::string_view status, std::int64_t version);
std::string error_message(std::string_view code, std::string_view detail);
std::string pong_message();

// in_stock, low_stock or out_of_stock (as the catalog says it).
const char* stock_status(std::int64_t available, std::int64_t low_stock_threshold);

// One committed change as clients see it.
struct live_update {
  live_item item;
  item_position at;
  std::string message;      // serialised
  std::string customer_id;  // orders: whose order it is (who may see it)
};

// The update an outbox event carries, if any: StockChanged and LowStockThresholdChanged (stock),
// ProductUpdated with a price change (price), OrderStatusChanged (orders). Events
// without the version of their write (older rows) give none.
std::optional<live_update> update_from_event(const persistence::outbox_event& e);

// The events update_from_event looks at (for the outbox filter).
std::vector<std::string> live_event_types();

}  // namespace mercato::http::ws
