// Live updates (WebSocket) messages. Frames themselves are Beast's (fuzzed upstream); what mercato reads
// from them is the client message, and what it sends is built from those and from committed outbox rows.
// The first byte picks:
// - even: the rest is a client text message, through parse_client_message (as ws_session does with at most
//   max_subscriptions = 100 ids). Rules: an accepted subscribe names 1..100 distinct products (none for
//   orders); a refusal has a code; the error message sent back is valid UTF-8 JSON (a text frame that is
//   not UTF-8 makes the client fail the connection, RFC 6455 §8.1).
// - odd: the rest is "<data JSON>\n<metadata JSON>" of an outbox event of the type picked by the second
//   byte (a row read back from the database): update_from_event's message is valid UTF-8 JSON.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <boost/json/parse.hpp>
#include <simdjson.h>

#include "fuzz_check.hpp"
#include "http/ws/live_messages.hpp"
#include "persistence/outbox_dispatcher.hpp"

namespace {

using mercato::fuzz::require;
namespace ws = mercato::http::ws;

void require_text_json(const std::string& msg, const char* rule, std::string_view input) {
  require(simdjson::validate_utf8(msg.data(), msg.size()), rule, std::string(input) + " -> " + msg);
  boost::system::error_code ec;
  const auto v = boost::json::parse(msg, ec);
  require(!ec && v.is_object(), rule, std::string(input) + " -> " + msg);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) {
    return 0;
  }
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    const auto parsed = ws::parse_client_message(rest, 100);
    if (!parsed.message) {
      require(!parsed.error.code.empty(), "a refused message has a code", rest);
      require_text_json(ws::error_message(parsed.error.code, parsed.error.detail),
                        "the error sent back is a UTF-8 JSON text message", rest);
      return 0;
    }
    const auto& m = *parsed.message;
    if (m.op == ws::client_message::op_kind::ping) {
      require(m.items.empty(), "a ping names nothing", rest);
      return 0;
    }
    if (m.topic == ws::topic::orders) {
      require(m.items.empty(), "an orders subscription names no products", rest);
      return 0;
    }
    require(!m.items.empty() && m.items.size() <= 100, "a subscription names 1 to max_subscriptions products", rest);
    for (std::size_t i = 0; i < m.items.size(); ++i) {
      require(m.items[i].kind == m.topic, "every item has the message's topic", rest);
      require(ws::live_item::from_uuid(m.topic, m.items[i].uuid()) == m.items[i], "an item's UUID reads back", rest);
      for (std::size_t j = 0; j < i; ++j) {
        require(m.items[i] != m.items[j], "a subscription names each product once", rest);
      }
    }
    return 0;
  }
  static const auto types = ws::live_event_types();
  rest.remove_prefix(1);
  mercato::persistence::outbox_event e;
  e.seq = 7;
  e.id = "0f0f0f0f-0000-4000-8000-0000000000e1";
  e.event_type = types[data[1] % types.size()];
  e.aggregate_kind = e.event_type == "OrderStatusChanged" ? "order"
                     : e.event_type == "ProductUpdated"   ? "product"
                                                          : "inventory";
  e.aggregate_id = "0f0f0f0f-0000-4000-8000-000000000001";
  e.event_version = "1";
  e.occurred_at = "2026-09-21T12:00:00.000000Z";
  const auto nl = rest.find('\n');
  e.data_json = std::string(rest.substr(0, nl));
  e.metadata_json = nl == std::string_view::npos ? std::string("{}") : std::string(rest.substr(nl + 1));
  if (auto u = ws::update_from_event(e)) {
    require_text_json(u->message, "a live update is a UTF-8 JSON text message", rest);
    require(u->item.uuid() == e.aggregate_id, "a live update is about the event's aggregate", rest);
  }
  return 0;
}
