// Live updates, the pure parts: the per-connection coalescing queue (latest value per item, never an
// older version after a newer one, bounded), client message parsing, and events turned into messages.
#include <doctest/doctest.h>

#include <string>

#include <boost/json.hpp>

#include "http/ws/coalescing_queue.hpp"
#include "http/ws/hub.hpp"
#include "http/ws/live_messages.hpp"
#include "persistence/outbox_dispatcher.hpp"

using namespace mercato::http::ws;
using push = coalescing_queue::push_result;

namespace {

live_item item(topic t, int n) {
  char text[40];
  std::snprintf(text, sizeof text, "00000000-0000-4000-8000-%012d", n);
  return *live_item::from_uuid(t, text);
}

shared_message msg(const std::string& s) { return std::make_shared<const std::string>(s); }

std::string next(coalescing_queue& q) {
  auto m = q.pop();
  return m ? *m : std::string("<none>");
}

}  // namespace

TEST_CASE("a slow client gets only the latest value per item, in the place the item first queued") {
  coalescing_queue q{8, 4};
  const auto a = item(topic::stock, 1);
  const auto b = item(topic::stock, 2);
  CHECK(q.push(a, {1, 10}, msg("a1")) == push::queued);
  CHECK(q.push(b, {1, 11}, msg("b1")) == push::queued);
  CHECK(q.push(a, {2, 12}, msg("a2")) == push::coalesced);
  CHECK(q.push(a, {3, 13}, msg("a3")) == push::coalesced);
  CHECK(q.size() == 2);
  CHECK(next(q) == "a3");
  CHECK(next(q) == "b1");
  CHECK(next(q) == "<none>");
}

TEST_CASE("an item's version never goes backwards, waiting or already sent") {
  coalescing_queue q{8, 4};
  const auto a = item(topic::price, 1);
  CHECK(q.push(a, {5, 0}, msg("a5")) == push::queued);      // the current value, read from the table
  CHECK(q.push(a, {5, 40}, msg("a5 again")) == push::stale);  // its own event, dispatched later
  CHECK(q.push(a, {4, 39}, msg("a4")) == push::stale);
  CHECK(next(q) == "a5");
  CHECK(q.push(a, {3, 30}, msg("a3")) == push::stale);  // after it was sent, too
  CHECK(q.push(a, {6, 41}, msg("a6")) == push::queued);
  CHECK(q.push(a, {6, 42}, msg("a6 final")) == push::coalesced);  // a later event of the same write
  CHECK(q.push(a, {6, 41}, msg("a6 again")) == push::stale);      // a redelivery
  CHECK(next(q) == "a6 final");
  CHECK(q.empty());
}

TEST_CASE("the queue is bounded: a new item beyond the limit overflows, a waiting one still coalesces") {
  coalescing_queue q{2, 1};
  CHECK(q.push(item(topic::stock, 1), {1, 1}, msg("1")) == push::queued);
  CHECK(q.push(item(topic::stock, 2), {1, 2}, msg("2")) == push::queued);
  CHECK(q.push(item(topic::stock, 3), {1, 3}, msg("3")) == push::overflow);
  CHECK(q.push(item(topic::stock, 2), {2, 4}, msg("2b")) == push::coalesced);
  CHECK(q.push_control(msg("pong")) == push::queued);
  CHECK(q.push_control(msg("pong")) == push::overflow);
  CHECK(q.size() == 3);
  CHECK(next(q) == "1");
  CHECK(q.push(item(topic::stock, 3), {1, 3}, msg("3")) == push::queued);  // room again
  CHECK(next(q) == "2b");
  CHECK(next(q) == "pong");
  CHECK(next(q) == "3");
}

TEST_CASE("control messages keep their order among item messages") {
  coalescing_queue q{4, 4};
  CHECK(q.push_control(msg("e1")) == push::queued);
  CHECK(q.push(item(topic::stock, 1), {1, 1}, msg("s1")) == push::queued);
  CHECK(q.push_control(msg("pong")) == push::queued);
  CHECK(next(q) == "e1");
  CHECK(next(q) == "s1");
  CHECK(next(q) == "pong");
}

TEST_CASE("forget drops what waits for an item and its version mark") {
  coalescing_queue q{4, 4};
  const auto a = item(topic::stock, 1);
  CHECK(q.push(a, {7, 1}, msg("a7")) == push::queued);
  q.forget(a);
  CHECK(q.empty());
  CHECK(q.push(a, {3, 0}, msg("a3")) == push::queued);  // a new subscription starts afresh
  CHECK(next(q) == "a3");
}

TEST_CASE("order marks are bounded: old ones with nothing waiting are forgotten") {
  coalescing_queue q{1000, 4, 10};
  for (int i = 0; i < 50; ++i) {
    CHECK(q.push(item(topic::orders, i), {1, i + 1}, msg("o")) == push::queued);
    q.pop();
  }
  CHECK(q.marks() <= 10);
}

TEST_CASE("item keys: UUIDs round-trip, anything else is refused") {
  auto i = live_item::from_uuid(topic::stock, "0A1b2C3d-4e5F-4a7b-8c9d-0e1f2a3b4c5d");
  REQUIRE(i);
  CHECK(i->uuid() == "0a1b2c3d-4e5f-4a7b-8c9d-0e1f2a3b4c5d");
  CHECK_FALSE(live_item::from_uuid(topic::stock, "0a1b2c3d4e5f4a7b8c9d0e1f2a3b4c5d"));
  CHECK_FALSE(live_item::from_uuid(topic::stock, "0a1b2c3d-4e5f-4a7b-8c9d-0e1f2a3b4c5g"));
  CHECK(*live_item::from_uuid(topic::stock, i->uuid()) != *live_item::from_uuid(topic::price, i->uuid()));
}

TEST_CASE("client messages: subscribe, unsubscribe, ping; everything else gets an error code") {
  const std::string p1 = "00000000-0000-4000-8000-000000000001";
  auto ok = parse_client_message(R"({"op":"subscribe","topic":"stock","product_ids":[")" + p1 + R"(",")" + p1 + "\"]}", 10);
  REQUIRE(ok.message);
  CHECK(ok.message->op == client_message::op_kind::subscribe);
  CHECK(ok.message->topic == topic::stock);
  CHECK(ok.message->items.size() == 1);  // repeats collapse
  CHECK(parse_client_message(R"({"op":"ping"})", 10).message);
  auto orders = parse_client_message(R"({"op":"unsubscribe","topic":"orders"})", 10);
  REQUIRE(orders.message);
  CHECK(orders.message->topic == topic::orders);

  auto code = [](const std::string& text) {
    auto r = parse_client_message(text, 2);
    return r.message ? std::string("accepted") : r.error.code;
  };
  CHECK(code("not json") == "invalid_message");
  CHECK(code("[]") == "invalid_message");
  CHECK(code(R"({"topic":"stock"})") == "invalid_message");
  CHECK(code(R"({"op":"dance"})") == "unknown_op");
  CHECK(code(R"({"op":"subscribe","topic":"weather","product_ids":[]})") == "unknown_topic");
  CHECK(code(R"({"op":"subscribe","topic":"price"})") == "invalid_message");
  CHECK(code(R"({"op":"subscribe","topic":"price","product_ids":[]})") == "invalid_message");
  CHECK(code(R"({"op":"subscribe","topic":"price","product_ids":["x"]})") == "invalid_product_id");
  CHECK(code(R"({"op":"subscribe","topic":"price","product_ids":[1]})") == "invalid_product_id");
  CHECK(code(R"({"op":"subscribe","topic":"price","product_ids":[")" + p1 + "\",\"" + p1 + "\",\"" + p1 + "\"]}") ==
        "invalid_message");  // more than the limit of 2 (counted before repeats collapse)
}

// Found by tests/fuzz (ws_messages): the quoted op was cut at 40 bytes, inside a character, and the error
// went out as a text frame that was not UTF-8.
TEST_CASE("an unknown op or topic is quoted in the error without cutting a character in two") {
  std::string long_op;
  for (int i = 0; i < 30; ++i) {
    long_op += "\xC3\xA9";  // é: 2 bytes, so byte 40 ends a character only if the cut is right
  }
  long_op = "x" + long_op;  // ... and now byte 40 falls inside one
  for (const auto& [text, code] : {std::pair{R"({"op":")" + long_op + "\"}", "unknown_op"},
                                   std::pair{R"({"op":"subscribe","topic":")" + long_op + "\"}", "unknown_topic"}}) {
    auto r = parse_client_message(text, 10);
    REQUIRE_FALSE(r.message);
    CHECK(r.error.code == code);
    const auto sent = error_message(r.error.code, r.error.detail);
    boost::system::error_code ec;
    auto v = boost::json::parse(sent, ec);  // Boost.JSON refuses text that is not UTF-8
    REQUIRE_FALSE(ec);
    const std::string detail(v.at("detail").as_string());
    CHECK(detail.find("x\xC3\xA9\xC3\xA9") != std::string::npos);
    CHECK(detail.find(long_op) == std::string::npos);  // a prefix, not the whole name
  }
}

TEST_CASE("committed events become messages; events without a version or not about live items give none") {
  mercato::persistence::outbox_event e;
  e.seq = 9;
  e.aggregate_kind = "inventory";
  e.aggregate_id = "00000000-0000-4000-8000-000000000001";
  e.event_type = "StockChanged";
  e.data_json = R"({"available_new": 3, "low_stock_threshold": 5, "cause": "reserve"})";
  e.metadata_json = R"({"aggregate_version": 12, "source": "api"})";
  auto u = update_from_event(e);
  REQUIRE(u);
  CHECK(u->at.version == 12);
  CHECK(u->at.seq == 9);
  CHECK(boost::json::parse(u->message) == boost::json::parse(
                                              R"({"type":"stock","product_id":"00000000-0000-4000-8000-000000000001",
                                                  "available":3,"status":"low_stock","version":12})"));
  e.metadata_json = R"({"source": "api"})";
  CHECK_FALSE(update_from_event(e));  // written before versions were stamped

  e.aggregate_kind = "product";
  e.event_type = "ProductUpdated";
  e.data_json = R"({"version": 4, "price_changed": true, "new_prices": {"base_price": 1000, "current_price": 899, "currency": "EUR"}})";
  e.metadata_json = "{}";
  u = update_from_event(e);
  REQUIRE(u);
  CHECK(u->item.kind == topic::price);
  CHECK(boost::json::parse(u->message) ==
        boost::json::parse(R"({"type":"price","product_id":"00000000-0000-4000-8000-000000000001",
                               "current_price":{"amount":899,"currency":"EUR"},"version":4})"));
  e.data_json = R"({"version": 5, "price_changed": false})";
  CHECK_FALSE(update_from_event(e));  // a name change is not a price update

  e.aggregate_kind = "order";
  e.event_type = "OrderStatusChanged";
  e.data_json = R"({"order_id": "x", "customer_id": "c1", "from": "pending_payment", "to": "paid"})";
  e.metadata_json = R"({"aggregate_version": 3})";
  u = update_from_event(e);
  REQUIRE(u);
  CHECK(u->customer_id == "c1");
  CHECK(boost::json::parse(u->message) == boost::json::parse(
                                              R"({"type":"order","order_id":"00000000-0000-4000-8000-000000000001",
                                                  "status":"paid","version":3})"));
  e.event_type = "OrderShipped";
  CHECK_FALSE(update_from_event(e));
}

namespace {

struct recording_sink : live_sink {
  std::vector<std::string> got;
  std::vector<std::string> refusals;
  void offer(const live_item&, item_position, const shared_message& m) override { got.push_back(*m); }
  void refused(std::vector<live_item>, const std::string& code, const std::string&) override {
    refusals.push_back(code);
  }
  void going_away() override {}
};

live_update stock_update(int product, std::int64_t version, std::int64_t seq, int available) {
  const auto it = item(topic::stock, product);
  return live_update{it, {version, seq}, stock_message(it.uuid(), available, "in_stock", version), {}};
}

}  // namespace

TEST_CASE("hub: the current value first (loaded once for many subscribers), one shared buffer per change") {
  std::vector<std::function<void(load_result)>> pending;
  hub h{{}, [&](topic, std::vector<live_item>, std::string, std::function<void(load_result)> done) {
          pending.push_back(std::move(done));
        },
        nullptr};
  auto a = std::make_shared<recording_sink>();
  auto b = std::make_shared<recording_sink>();
  h.subscribe(a, topic::stock, {item(topic::stock, 1)});
  h.subscribe(b, topic::stock, {item(topic::stock, 1)});
  REQUIRE(pending.size() == 1);  // the second subscriber waits for the same load
  h.publish({stock_update(1, 8, 100, 4)});  // a change committed while the load ran
  pending.front()(load_result{true, {stock_update(1, 7, 0, 5)}, {}});  // older: ignored
  CHECK(a->got.size() == 1);
  CHECK(b->got.size() == 1);
  auto c = std::make_shared<recording_sink>();
  h.subscribe(c, topic::stock, {item(topic::stock, 1)});
  CHECK(c->got == a->got);  // from memory, no load
  CHECK(pending.size() == 1);
  h.publish({stock_update(1, 8, 100, 4)});  // a redelivery
  CHECK(a->got.size() == 1);
  h.unsubscribe(a.get(), {item(topic::stock, 1)});
  h.unsubscribe(b.get(), {item(topic::stock, 1)});
  h.unsubscribe(c.get(), {item(topic::stock, 1)});
  CHECK(h.items() == 0);  // nothing kept for items nobody watches
  h.publish({stock_update(1, 9, 101, 3)});
  CHECK(h.items() == 0);
}

TEST_CASE("hub: a product that does not exist is refused; orders reach their customer and support only") {
  hub h{{}, [&](topic t, std::vector<live_item> items, std::string, std::function<void(load_result)> done) {
          load_result r;
          if (t != topic::orders) {
            r.missing = items;
          }
          done(r);
        },
        nullptr};
  auto a = std::make_shared<recording_sink>();
  h.subscribe(a, topic::price, {item(topic::price, 1)});
  CHECK(a->refusals == std::vector<std::string>{"not_found"});
  CHECK(h.items() == 0);

  auto ada = std::make_shared<recording_sink>();
  auto bob = std::make_shared<recording_sink>();
  auto support = std::make_shared<recording_sink>();
  h.watch_orders(ada, "ada");
  h.watch_orders(bob, "bob");
  h.watch_orders(support, "");
  const auto o = item(topic::orders, 5);
  h.publish({live_update{o, {2, 50}, order_message(o.uuid(), "paid", 2), "ada"}});
  CHECK(ada->got.size() == 1);
  CHECK(bob->got.empty());
  CHECK(support->got.size() == 1);
}
