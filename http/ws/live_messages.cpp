#include "http/ws/live_messages.hpp"

#include <algorithm>

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <simdjson.h>

#include "http/json_body.hpp"
#include "persistence/outbox_dispatcher.hpp"

namespace mercato::http::ws {
namespace {

namespace dom = simdjson::dom;

dom::parser& parser() {
  // One per thread: a parser keeps buffers sized for the largest document it saw, so one per connection
  // would cost memory per connection.
  thread_local dom::parser p;
  return p;
}

// At most `max` bytes of `s` (valid UTF-8: simdjson checked it), never cut inside a character: the error
// quoting it goes out in a text frame, which must be UTF-8 (a client fails the connection otherwise).
std::string quoted_prefix(std::string_view s, std::size_t max) {
  if (s.size() <= max) {
    return std::string(s);
  }
  std::size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) {
    --n;  // s[n] continues the character that starts before it
  }
  return std::string(s.substr(0, n));
}

parsed_message refuse(std::string code, std::string detail) {
  return parsed_message{std::nullopt, message_error{std::move(code), std::move(detail)}};
}

std::optional<std::int64_t> int_at(dom::element obj, std::string_view key) {
  std::int64_t v = 0;
  if (obj[key].get_int64().get(v) != simdjson::SUCCESS) {
    return std::nullopt;
  }
  return v;
}

std::optional<std::string_view> text_at(dom::element obj, std::string_view key) {
  std::string_view v;
  if (obj[key].get_string().get(v) != simdjson::SUCCESS) {
    return std::nullopt;
  }
  return v;
}

}  // namespace

const char* to_string(topic t) {
  switch (t) {
    case topic::stock:
      return "stock";
    case topic::price:
      return "price";
    case topic::orders:
      return "orders";
  }
  return "stock";
}

std::optional<topic> topic_from(std::string_view name) {
  if (name == "stock") {
    return topic::stock;
  }
  if (name == "price") {
    return topic::price;
  }
  if (name == "orders") {
    return topic::orders;
  }
  return std::nullopt;
}

namespace {
int hex_value(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}
}  // namespace

std::optional<live_item> live_item::from_uuid(topic kind, std::string_view uuid) {
  if (uuid.size() != 36 || uuid[8] != '-' || uuid[13] != '-' || uuid[18] != '-' || uuid[23] != '-') {
    return std::nullopt;
  }
  live_item item;
  item.kind = kind;
  int nibbles = 0;
  for (std::size_t i = 0; i < uuid.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      continue;
    }
    const int v = hex_value(uuid[i]);
    if (v < 0) {
      return std::nullopt;
    }
    auto& half = nibbles < 16 ? item.hi : item.lo;
    half = (half << 4) | static_cast<std::uint64_t>(v);
    ++nibbles;
  }
  return item;
}

std::string live_item::uuid() const {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(36, '-');
  std::size_t at = 0;
  for (int n = 0; n < 32; ++n) {
    if (at == 8 || at == 13 || at == 18 || at == 23) {
      ++at;
    }
    const auto half = n < 16 ? hi : lo;
    const int shift = (15 - (n % 16)) * 4;
    out[at++] = digits[(half >> shift) & 0xF];
  }
  return out;
}

parsed_message parse_client_message(std::string_view text, std::size_t max_items) {
  dom::element root;
  if (parser().parse(text.data(), text.size()).get(root) != simdjson::SUCCESS) {
    return refuse("invalid_message", "the message is not valid JSON: " + locate_json_error(text).describe());
  }
  if (!root.is_object()) {
    return refuse("invalid_message", "a message is a JSON object with an \"op\"");
  }
  const auto op = text_at(root, "op");
  if (!op) {
    return refuse("invalid_message", "a message needs \"op\": subscribe, unsubscribe or ping");
  }
  client_message m;
  if (*op == "ping") {
    m.op = client_message::op_kind::ping;
    return parsed_message{std::move(m), {}};
  }
  if (*op == "subscribe") {
    m.op = client_message::op_kind::subscribe;
  } else if (*op == "unsubscribe") {
    m.op = client_message::op_kind::unsubscribe;
  } else {
    return refuse("unknown_op", "unknown op \"" + quoted_prefix(*op, 40) +
                                    "\"; expected subscribe, unsubscribe or ping");
  }
  const auto topic_name = text_at(root, "topic");
  if (!topic_name) {
    return refuse("invalid_message", std::string(*op) + " needs \"topic\": stock, price or orders");
  }
  const auto t = topic_from(*topic_name);
  if (!t) {
    return refuse("unknown_topic", "unknown topic \"" + quoted_prefix(*topic_name, 40) +
                                       "\"; expected stock, price or orders");
  }
  m.topic = *t;
  if (m.topic == topic::orders) {
    return parsed_message{std::move(m), {}};
  }
  dom::array ids;
  if (root["product_ids"].get_array().get(ids) != simdjson::SUCCESS) {
    return refuse("invalid_message", std::string(*op) + " " + std::string(*topic_name) +
                                         " needs \"product_ids\": an array of product UUIDs");
  }
  if (ids.size() == 0 || ids.size() > max_items) {
    return refuse("invalid_message", "\"product_ids\" needs 1 to " + std::to_string(max_items) + " product ids");
  }
  for (auto id : ids) {
    std::string_view s;
    std::optional<live_item> item;
    if (id.get_string().get(s) == simdjson::SUCCESS) {
      item = live_item::from_uuid(m.topic, s);
    }
    if (!item) {
      return refuse("invalid_product_id", "every entry of \"product_ids\" must be a product UUID");
    }
    if (std::find(m.items.begin(), m.items.end(), *item) == m.items.end()) {
      m.items.push_back(*item);
    }
  }
  return parsed_message{std::move(m), {}};
}

const char* stock_status(std::int64_t available, std::int64_t low_stock_threshold) {
  if (available <= 0) {
    return "out_of_stock";
  }
  return available <= low_stock_threshold ? "low_stock" : "in_stock";
}

std::string stock_message(std::string_view product_id, std::int64_t available, std::string_view status,
                          std::int64_t version) {
  return boost::json::serialize(boost::json::object{{"type", "stock"},
                                                    {"product_id", product_id},
                                                    {"available", available},
                                                    {"status", status},
                                                    {"version", version}});
}

std::string price_message(std::string_view product_id, std::int64_t amount, std::string_view currency,
                          std::int64_t version) {
  return boost::json::serialize(
      boost::json::object{{"type", "price"},
                          {"product_id", product_id},
                          {"current_price", boost::json::object{{"amount", amount}, {"currency", currency}}},
                          {"version", version}});
}

std::string order_message(std::string_view order_id, std::string_view status, std::int64_t version) {
  return boost::json::serialize(
      boost::json::object{{"type", "order"}, {"order_id", order_id}, {"status", status}, {"version", version}});
}

std::string error_message(std::string_view code, std::string_view detail) {
  return boost::json::serialize(boost::json::object{{"type", "error"}, {"code", code}, {"detail", detail}});
}

std::string pong_message() { return R"({"type":"pong"})"; }

std::vector<std::string> live_event_types() {
  return {"StockChanged", "LowStockThresholdChanged", "ProductUpdated", "OrderStatusChanged"};
}

std::optional<live_update> update_from_event(const persistence::outbox_event& e) {
  const bool stock = e.aggregate_kind == "inventory" &&
                     (e.event_type == "StockChanged" || e.event_type == "LowStockThresholdChanged");
  const bool price = e.aggregate_kind == "product" && e.event_type == "ProductUpdated";
  // An order shows from its first status a client knows (pending_payment, or canceled when no stock could be
  // reserved): OrderCreated is the internal "reserving" step.
  const bool order = e.aggregate_kind == "order" && e.event_type == "OrderStatusChanged";
  if (!stock && !price && !order) {
    return std::nullopt;
  }
  auto& p = parser();
  dom::element data;
  if (p.parse(e.data_json).get(data) != simdjson::SUCCESS || !data.is_object()) {
    return std::nullopt;
  }
  live_update u;
  u.at.seq = e.seq;
  if (price) {
    // Written by SQL in the catalog's transaction: the product's version is in the data.
    bool changed = false;
    if (data["price_changed"].get_bool().get(changed) != simdjson::SUCCESS || !changed) {
      return std::nullopt;
    }
    const auto version = int_at(data, "version");
    dom::element prices;
    if (!version || data["new_prices"].get(prices) != simdjson::SUCCESS) {
      return std::nullopt;
    }
    const auto amount = int_at(prices, "current_price");
    const auto currency = text_at(prices, "currency");
    auto item = live_item::from_uuid(topic::price, e.aggregate_id);
    if (!amount || !currency || !item) {
      return std::nullopt;
    }
    u.item = *item;
    u.at.version = *version;
    u.message = price_message(e.aggregate_id, *amount, *currency, *version);
    return u;
  }
  // Entity events: the version of the write is stamped into the metadata by the snapshot writer. (The
  // data was parsed into the thread's parser, so what is needed of it is read before the metadata.)
  std::optional<std::int64_t> available, threshold;
  std::string status_text, customer;
  if (stock) {
    if (e.event_type == "StockChanged") {
      available = int_at(data, "available_new");
    } else {
      available = int_at(data, "available");
    }
    threshold = e.event_type == "StockChanged" ? int_at(data, "low_stock_threshold") : int_at(data, "new");
    if (!available || !threshold) {
      return std::nullopt;  // an event older than the fields live updates need
    }
  } else {
    auto s = text_at(data, "to");
    auto c = text_at(data, "customer_id");
    if (!c || !s) {
      return std::nullopt;
    }
    status_text = std::string(*s);
    customer = std::string(*c);
  }
  dom::element meta;
  if (p.parse(e.metadata_json).get(meta) != simdjson::SUCCESS || !meta.is_object()) {
    return std::nullopt;
  }
  const auto version = int_at(meta, "aggregate_version");
  if (!version) {
    return std::nullopt;
  }
  u.at.version = *version;
  if (stock) {
    auto item = live_item::from_uuid(topic::stock, e.aggregate_id);
    if (!item) {
      return std::nullopt;
    }
    u.item = *item;
    u.message = stock_message(e.aggregate_id, *available, stock_status(*available, *threshold), *version);
    return u;
  }
  auto item = live_item::from_uuid(topic::orders, e.aggregate_id);
  if (!item) {
    return std::nullopt;
  }
  u.item = *item;
  u.customer_id = std::move(customer);
  u.message = order_message(e.aggregate_id, status_text, *version);
  return u;
}

}  // namespace mercato::http::ws
