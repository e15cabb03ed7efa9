// The notification handlers (notifications/order_notifications) with the default notifier (pg_notifier) on a
// real PostgreSQL: what each event creates for whom, that a redelivered event (same id) notifies nobody twice,
// vendor grouping (each vendor's users see only that vendor's items), events that do not follow the contract,
// and the whole path from an outbox row through the dispatcher, including a notifier that keeps failing.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>
#include <pqxx/pqxx>

#include "notifications/order_notifications.hpp"
#include "notifications/pg_notifier.hpp"
#include "persistence/migrations.hpp"
#include "persistence/outbox_dispatcher.hpp"
#include "support/scratch_database.hpp"
#include "telemetry/metrics.hpp"

using namespace mercato;
using persistence::outbox_event;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

using steady = std::chrono::steady_clock;

bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds timeout = 30s) {
  const auto until = steady::now() + timeout;
  while (!cond()) {
    if (steady::now() >= until) {
      return false;
    }
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

struct stored {
  std::string user_id, kind, title, body, source_event_id;
  json::object data;
};

struct fixture {
  test::scratch_database db;
  pqxx::connection conn{db.dsn()};
  std::shared_ptr<notifications::pg_notifier> notifier;
  std::map<std::string, persistence::outbox_dispatcher::handler> handlers;  // by subscriber name
  std::map<std::string, persistence::outbox_filter> filters;

  std::string alice, bob;                  // customers
  std::string vendor_a, vendor_b, vendor_c;  // A has two users, B one, C none
  std::string a1, a2, b1;
  std::string a_disabled;                  // a disabled user of vendor A: not told

  fixture() {
    persistence::apply_migrations(conn, persistence::bundled_migrations());
    vendor_a = vendor("Vendor A");
    vendor_b = vendor("Vendor B");
    vendor_c = vendor("Vendor C");
    alice = user("alice", "customer");
    bob = user("bob", "customer");
    a1 = user("a1", "vendor", vendor_a);
    a2 = user("a2", "vendor", vendor_a);
    b1 = user("b1", "vendor", vendor_b);
    a_disabled = user("a3", "vendor", vendor_a, "disabled");
    notifier = std::make_shared<notifications::pg_notifier>(db.dsn());
    for (auto& s : notifications::outbox_subscriptions(
             notifier, [n = notifier](const std::vector<std::string>& ids) { return n->vendor_users(ids); })) {
      handlers[s.name] = s.handler;
      filters[s.name] = s.filter;
    }
  }

  std::string vendor(const std::string& name) {
    pqxx::work tx{conn};
    auto id = tx.exec_params1("INSERT INTO vendors (name) VALUES ($1) RETURNING id::text", name)[0].as<std::string>();
    tx.commit();
    return id;
  }

  std::string user(const std::string& name, const std::string& role, const std::string& vendor_id = {},
                   const std::string& status = "active") {
    pqxx::work tx{conn};
    auto id = tx.exec_params1("INSERT INTO users (email, name, password_hash, roles, vendor_id, status) "
                              "VALUES ($1, $2, 'x', ARRAY[$3], NULLIF($4, '')::uuid, $5) RETURNING id::text",
                              name + "@example.com", name, role, vendor_id, status)[0]
                  .as<std::string>();
    tx.commit();
    return id;
  }

  std::vector<stored> notifications_of(const std::string& user_id) {
    pqxx::nontransaction tx{conn};
    std::vector<stored> out;
    for (const auto& r : tx.exec_params("SELECT user_id::text, kind, title, body, source_event_id::text, data::text "
                                        "FROM notifications WHERE user_id = $1::uuid ORDER BY kind, created_at, id",
                                        user_id)) {
      out.push_back({r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::string>(), r[3].as<std::string>(),
                     r[4].as<std::string>(), json::parse(r[5].as<std::string>()).as_object()});
    }
    return out;
  }

  std::int64_t total() {
    pqxx::nontransaction tx{conn};
    return tx.exec("SELECT count(*) FROM notifications")[0][0].as<std::int64_t>();
  }

  // Hands `batch` to every subscriber whose filter matches, as the dispatcher would.
  void deliver(const std::vector<outbox_event>& batch) {
    for (auto& [name, fn] : handlers) {
      std::vector<outbox_event> subset;
      for (const auto& e : batch) {
        if (filters[name].matches(e)) {
          subset.push_back(e);
        }
      }
      if (!subset.empty()) {
        fn(subset);
      }
    }
  }
};

std::string new_uuid(pqxx::connection& c) {
  pqxx::nontransaction tx{c};
  return tx.exec("SELECT gen_random_uuid()::text")[0][0].as<std::string>();
}

json::object item(const std::string& product, const std::string& vendor, std::int64_t quantity,
                  std::int64_t unit_price) {
  return {{"product_id", product},   {"product_sku", "SKU-" + product.substr(0, 4)},
          {"product_name", "Thing " + product.substr(0, 4)}, {"quantity", quantity},
          {"unit_price", unit_price}, {"total_price", quantity * unit_price},
          {"vendor_id", vendor}};
}

outbox_event event(const std::string& id, const std::string& kind, const std::string& aggregate_id,
                   const std::string& type, const json::object& data) {
  outbox_event e;
  e.id = id;
  e.aggregate_kind = kind;
  e.aggregate_id = aggregate_id;
  e.event_type = type;
  e.event_version = "1";
  e.data_json = json::serialize(data);
  e.metadata_json = "{}";
  return e;
}

std::set<std::string> product_ids(const json::object& data) {
  std::set<std::string> out;
  for (const auto& i : data.at("items").as_array()) {
    out.insert(std::string(i.at("product_id").as_string()));
    CHECK(i.as_object().count("vendor_id") == 0);
  }
  return out;
}

}  // namespace

TEST_CASE("OrderPlaced: a confirmation to the customer, and each vendor's users get only that vendor's items") {
  fixture f;
  const auto order_id = new_uuid(f.conn);
  const auto event_id = new_uuid(f.conn);
  const std::string pa1 = new_uuid(f.conn), pa2 = new_uuid(f.conn), pb1 = new_uuid(f.conn), pc1 = new_uuid(f.conn);
  const json::object data{
      {"order_id", order_id},
      {"order_number", "ORD-1001"},
      {"customer_id", f.alice},
      {"currency", "USD"},
      {"total_amount", 12345},
      {"items", json::array{item(pa1, f.vendor_a, 2, 1000), item(pb1, f.vendor_b, 1, 4999), item(pa2, f.vendor_a, 1, 250),
                            item(pc1, f.vendor_c, 3, 100)}},
      {"shipping_address", json::object{{"name", "Alice"}, {"line1", "1 Main St"}, {"city", "Springfield"},
                                        {"postal_code", "12345"}, {"country", "US"}}}};
  const auto e = event(event_id, "order", order_id, "OrderPlaced", data);
  f.deliver({e});

  const auto mine = f.notifications_of(f.alice);
  REQUIRE(mine.size() == 1);
  CHECK(mine[0].kind == "order_confirmation");
  CHECK(mine[0].title == "Order ORD-1001 confirmed");
  CHECK(mine[0].body == "Thank you for your order ORD-1001: 7 items, total 123.45 USD.");
  CHECK(mine[0].source_event_id == event_id);
  CHECK(mine[0].data.at("order_id") == order_id.c_str());
  CHECK(mine[0].data.at("total_amount") == 12345);
  CHECK(mine[0].data.at("currency") == "USD");
  CHECK(mine[0].data.at("item_count") == 7);
  CHECK(mine[0].data.count("shipping_address") == 0);

  for (const auto& user : {f.a1, f.a2}) {
    CAPTURE(user);
    const auto got = f.notifications_of(user);
    REQUIRE(got.size() == 1);
    CHECK(got[0].kind == "vendor_new_order");
    CHECK(got[0].title == "New order ORD-1001: 3 items");
    CHECK(product_ids(got[0].data) == std::set<std::string>{pa1, pa2});
    CHECK(got[0].data.at("vendor_id") == f.vendor_a.c_str());
    CHECK(got[0].data.at("items_total") == 2250);
    CHECK(got[0].body.find(pb1.substr(0, 4)) == std::string::npos);  // nothing of vendor B's
    CHECK(got[0].body == "2 x Thing " + pa1.substr(0, 4) + " (SKU-" + pa1.substr(0, 4) + "): 20.00 USD\n1 x Thing " +
                             pa2.substr(0, 4) + " (SKU-" + pa2.substr(0, 4) + "): 2.50 USD");
  }
  const auto b = f.notifications_of(f.b1);
  REQUIRE(b.size() == 1);
  CHECK(b[0].kind == "vendor_new_order");
  CHECK(product_ids(b[0].data) == std::set<std::string>{pb1});
  CHECK(b[0].data.at("items_total") == 4999);
  CHECK(b[0].title == "New order ORD-1001: 1 item");

  CHECK(f.notifications_of(f.bob).empty());         // another customer: nothing
  CHECK(f.notifications_of(f.a_disabled).empty());  // a disabled vendor user: nothing
  CHECK(f.total() == 4);                            // alice, a1, a2, b1 (vendor C has nobody to tell)
}

TEST_CASE("a redelivered event (same id) creates no notification twice; another event does") {
  fixture f;
  const auto order_id = new_uuid(f.conn);
  const auto event_id = new_uuid(f.conn);
  const json::object placed{{"order_id", order_id},
                            {"order_number", "ORD-2"},
                            {"customer_id", f.alice},
                            {"currency", "EUR"},
                            {"total_amount", 500},
                            {"items", json::array{item(new_uuid(f.conn), f.vendor_a, 1, 500)}}};
  const auto e = event(event_id, "order", order_id, "OrderPlaced", placed);
  const auto shipped = event(new_uuid(f.conn), "order", order_id, "OrderShipped",
                             {{"order_id", order_id},
                              {"order_number", "ORD-2"},
                              {"customer_id", f.alice},
                              {"shipment", json::object{{"carrier", "DHL"}, {"tracking_number", "JD0001"}}}});
  f.deliver({e, shipped});
  CHECK(f.total() == 4);  // confirmation, shipping notice, a1, a2
  f.deliver({e, shipped});
  f.deliver({e});
  f.deliver({shipped, e});
  CHECK(f.total() == 4);
  CHECK(f.notifications_of(f.alice).size() == 2);
  CHECK(f.notifications_of(f.a1).size() == 1);

  // The same order placed again would be a new event: it is a new notification.
  f.deliver({event(new_uuid(f.conn), "order", order_id, "OrderPlaced", placed)});
  CHECK(f.total() == 7);
}

TEST_CASE("OrderShipped and RefundIssued notify the customer with the shipment and the refund") {
  fixture f;
  const auto order_id = new_uuid(f.conn);
  const auto payment_id = new_uuid(f.conn);
  const auto shipped_id = new_uuid(f.conn);
  const auto refund_id = new_uuid(f.conn);
  f.deliver({event(shipped_id, "order", order_id, "OrderShipped",
                   {{"order_id", order_id},
                    {"order_number", "ORD-77"},
                    {"customer_id", f.bob},
                    {"shipment", json::object{{"carrier", "UPS"},
                                              {"tracking_number", "1Z999AA10123456784"},
                                              {"label_url", "https://labels.example.com/x.pdf"}}}}),
             event(refund_id, "payment", payment_id, "RefundIssued",
                   {{"payment_id", payment_id},
                    {"order_id", order_id},
                    {"order_number", "ORD-77"},
                    {"customer_id", f.bob},
                    {"amount", 1999},
                    {"currency", "USD"},
                    {"refunded_amount", 2999}})});
  const auto got = f.notifications_of(f.bob);
  REQUIRE(got.size() == 2);
  CHECK(got[0].kind == "order_shipped");
  CHECK(got[0].source_event_id == shipped_id);
  CHECK(got[0].title == "Order ORD-77 has shipped");
  CHECK(got[0].body == "Your order ORD-77 is on its way with UPS, tracking number 1Z999AA10123456784.");
  CHECK(got[0].data.at("carrier") == "UPS");
  CHECK(got[0].data.at("tracking_number") == "1Z999AA10123456784");
  CHECK(got[0].data.at("order_id") == order_id.c_str());
  CHECK(got[0].data.count("label_url") == 0);
  CHECK(got[1].kind == "refund_issued");
  CHECK(got[1].source_event_id == refund_id);
  CHECK(got[1].title == "Refund for order ORD-77");
  CHECK(got[1].body == "We refunded 19.99 USD for your order ORD-77 to your original payment method.");
  CHECK(got[1].data.at("amount") == 1999);
  CHECK(got[1].data.at("refunded_amount") == 2999);
  CHECK(got[1].data.at("payment_id") == payment_id.c_str());
  CHECK(f.total() == 2);

  // The pairs are exact: a RefundIssued of another aggregate kind is not ours.
  f.deliver({event(new_uuid(f.conn), "order", order_id, "RefundIssued",
                   {{"order_id", order_id}, {"customer_id", f.bob}, {"amount", 1}, {"currency", "USD"}})});
  CHECK(f.total() == 2);
}

TEST_CASE("an event that breaks the contract is skipped; the good events of its batch are stored") {
  fixture f;
  const auto order_id = new_uuid(f.conn);
  const auto good = event(new_uuid(f.conn), "order", order_id, "OrderShipped",
                          {{"order_id", order_id},
                           {"customer_id", f.alice},
                           {"shipment", json::object{{"carrier", "UPS"}, {"tracking_number", "T1"}}}});
  auto not_json = good;
  not_json.id = new_uuid(f.conn);
  not_json.data_json = "not json";
  const auto no_shipment = event(new_uuid(f.conn), "order", order_id, "OrderShipped",
                                 {{"order_id", order_id}, {"customer_id", f.alice}});
  const auto unknown_customer = event(new_uuid(f.conn), "order", order_id, "OrderShipped",
                                      {{"order_id", order_id},
                                       {"customer_id", new_uuid(f.conn)},
                                       {"shipment", json::object{{"carrier", "UPS"}, {"tracking_number", "T2"}}}});
  const auto bad_amount = event(new_uuid(f.conn), "order", order_id, "OrderPlaced",
                                {{"order_id", order_id},
                                 {"customer_id", f.alice},
                                 {"currency", "USD"},
                                 {"total_amount", "12.50"},
                                 {"items", json::array{}}});
  f.deliver({not_json, no_shipment, good, unknown_customer, bad_amount});
  const auto got = f.notifications_of(f.alice);
  REQUIRE(got.size() == 1);
  CHECK(got[0].source_event_id == good.id);
  CHECK(got[0].data.at("order_number") == order_id.c_str());  // no order_number: the order id stands in
  CHECK(f.total() == 1);
}

TEST_CASE("format_money: minor units in the currency's decimals") {
  CHECK(notifications::format_money(12345, "USD") == "123.45 USD");
  CHECK(notifications::format_money(5, "EUR") == "0.05 EUR");
  CHECK(notifications::format_money(100, "EUR") == "1.00 EUR");
  CHECK(notifications::format_money(1500, "JPY") == "1500 JPY");
  CHECK(notifications::format_money(-250, "USD") == "-2.50 USD");
}

TEST_CASE("through the dispatcher: outbox rows become notifications; a failing notifier is retried, then parked") {
  fixture f;
  const auto order_id = new_uuid(f.conn);
  const auto insert = [&](const std::string& type, const std::string& kind, const json::object& data) {
    pqxx::work tx{f.conn};
    auto id = tx.exec_params1("INSERT INTO outbox (id, aggregate_kind, aggregate_id, event_type, data, metadata) "
                              "VALUES (gen_random_uuid(), $1, $2, $3, $4::jsonb, '{}') RETURNING id::text",
                              kind, order_id, type, json::serialize(data))[0]
                  .as<std::string>();
    tx.commit();
    return id;
  };
  const json::object placed{{"order_id", order_id},
                            {"order_number", "ORD-9"},
                            {"customer_id", f.alice},
                            {"currency", "USD"},
                            {"total_amount", 300},
                            {"items", json::array{item(new_uuid(f.conn), f.vendor_b, 3, 100)}}};

  persistence::outbox_dispatcher_options o;
  o.dsn = f.db.dsn();
  o.poll_interval = 20ms;
  o.retry_backoff = 20ms;
  o.max_retry_backoff = 100ms;
  o.max_attempts = 3;

  SUBCASE("the node's wiring: stored once per recipient") {
    persistence::outbox_dispatcher d{o, nullptr};
    for (auto& s : notifications::outbox_subscriptions(
             f.notifier, [n = f.notifier](const std::vector<std::string>& ids) { return n->vendor_users(ids); })) {
      d.subscribe(s.name, s.handler, s.filter);
    }
    d.start();
    const auto id = insert("OrderPlaced", "order", placed);
    d.notify();
    REQUIRE(eventually([&] { return f.total() == 2; }));
    // Redelivered (the mark undone, as after a crash between delivery and mark): nothing new.
    {
      pqxx::work tx{f.conn};
      tx.exec_params("UPDATE outbox_cursor SET (tx, seq) = (SELECT tx, seq - 1 FROM outbox WHERE id = $1::uuid)", id);
      tx.commit();
    }
    d.notify();
    REQUIRE(eventually([&] {
      pqxx::nontransaction tx{f.conn};
      return tx.exec("SELECT count(*) FROM outbox_undispatched")[0][0].as<int>() == 0;
    }));
    d.stop();
    CHECK(f.total() == 2);
    CHECK(f.notifications_of(f.alice).size() == 1);
    CHECK(f.notifications_of(f.b1).size() == 1);
  }

  SUBCASE("a notifier whose database is gone: the events end parked for its subscriber, others go on") {
    // Nothing listens on port 1: every notify() throws.
    auto dead = std::make_shared<notifications::pg_notifier>("postgresql://mercato@127.0.0.1:1/mercato",
                                                             std::chrono::milliseconds(200));
    telemetry::metrics m;
    persistence::outbox_dispatcher d{o, &m};
    for (auto& s : notifications::outbox_subscriptions(dead, [](const std::vector<std::string>&) {
           return notifications::vendor_users_map{};
         })) {
      d.subscribe(s.name, s.handler, s.filter);
    }
    std::atomic<int> others{0};
    d.subscribe("other", [&](const std::vector<outbox_event>& batch) { others += static_cast<int>(batch.size()); });
    d.start();
    const auto id = insert("OrderPlaced", "order", placed);
    d.notify();
    REQUIRE(eventually([&] {
      pqxx::nontransaction tx{f.conn};
      return tx.exec("SELECT count(*) FROM outbox_undispatched")[0][0].as<int>() == 0;
    }));
    d.stop();
    CHECK(others.load() == 1);
    CHECK(f.total() == 0);
    pqxx::nontransaction tx{f.conn};
    const auto rows = tx.exec("SELECT subscriber, event_id::text, attempts, last_error FROM outbox_parked");
    REQUIRE(rows.size() == 1);
    CHECK(rows[0][0].as<std::string>() == "notify-order-placed");
    CHECK(rows[0][1].as<std::string>() == id);
    CHECK(rows[0][2].as<int>() == 3);
    CHECK(rows[0][3].as<std::string>().find("127.0.0.1") != std::string::npos);  // the connection error
    CHECK(m.outbox_parked("notify-order-placed").Value() == 1);
  }
}
