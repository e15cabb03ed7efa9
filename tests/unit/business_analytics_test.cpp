// Business analytics (actors/analytics): parsing the outbox rows, per-minute windows, deduplication by
// event id, rates with zero denominators, and the actor that serves them.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <vector>

#include <caf/all.hpp>

#include "actors/analytics/analytics_actor.hpp"
#include "actors/analytics/business_window.hpp"

using namespace mercato::actors;

namespace {

constexpr std::int64_t t0 = 1'714'564'800;  // 2024-05-01T12:00:00Z, a minute boundary

business_event order(std::string id, std::int64_t at, std::int64_t amount, std::string currency = "USD") {
  business_event e;
  e.id = std::move(id);
  e.kind = business_event_kind::order_placed;
  e.subject = "order-" + e.id;
  e.currency = std::move(currency);
  e.amount = amount;
  e.occurred_s = at;
  return e;
}

business_event simple(std::string id, business_event_kind k, std::string subject, std::int64_t at) {
  business_event e;
  e.id = std::move(id);
  e.kind = k;
  e.subject = std::move(subject);
  e.occurred_s = at;
  return e;
}

}  // namespace

TEST_CASE("outbox rows: the business events are parsed, everything else and bad data are skipped") {
  const std::string placed =
      R"({"order_id":"o1","customer_id":"c1","currency":"EUR","total_amount":12345,"items":[],"payment_id":"p1"})";
  auto e = parse_business_event("e1", "order", "o1", "OrderPlaced", "2024-05-01T12:00:30.123456Z", placed, 0);
  REQUIRE(e);
  CHECK(e->kind == business_event_kind::order_placed);
  CHECK(e->currency == "EUR");
  CHECK(e->amount == 12345);
  CHECK(e->occurred_s == t0 + 30);
  CHECK(e->subject == "o1");

  auto failed = parse_business_event("e2", "payment", "p1", "PaymentFailed", "2024-05-01T12:00:00Z", "{}", 0);
  REQUIRE(failed);
  CHECK(failed->kind == business_event_kind::payment_failed);
  auto added = parse_business_event("e3", "cart", "c9", "CartItemAdded", "bad time", "{}", 77);
  REQUIRE(added);
  CHECK(added->kind == business_event_kind::cart_item_added);
  CHECK(added->subject == "c9");
  CHECK(added->occurred_s == 77);  // the fallback for an occurred_at that does not parse

  // Not a business event, or the type under another aggregate kind.
  CHECK_FALSE(parse_business_event("e4", "order", "o1", "OrderCreated", "2024-05-01T12:00:00Z", placed, 0));
  CHECK_FALSE(parse_business_event("e5", "cart", "o1", "OrderPlaced", "2024-05-01T12:00:00Z", placed, 0));
  // OrderPlaced without a usable amount or currency, or with a body that is not JSON.
  CHECK_FALSE(parse_business_event("e6", "order", "o1", "OrderPlaced", "", R"({"currency":"USD"})", 0));
  CHECK_FALSE(parse_business_event("e7", "order", "o1", "OrderPlaced", "",
                                   R"({"currency":"usd","total_amount":1})", 0));
  CHECK_FALSE(parse_business_event("e8", "order", "o1", "OrderPlaced", "",
                                   R"({"currency":"USD","total_amount":-1})", 0));
  CHECK_FALSE(parse_business_event("e9", "order", "o1", "OrderPlaced", "", "not json", 0));
  CHECK_FALSE(parse_business_event("", "payment", "p1", "PaymentFailed", "", "{}", 0));
}

TEST_CASE("RFC 3339 times and window lengths") {
  CHECK(parse_rfc3339_seconds("2024-05-01T12:00:00Z") == t0);
  CHECK(parse_rfc3339_seconds("2024-05-01T14:00:00.5+02:00") == t0);
  CHECK_FALSE(parse_rfc3339_seconds("2024-05-01T12:00:00"));
  CHECK_FALSE(parse_rfc3339_seconds("2024-13-01T12:00:00Z"));
  CHECK_FALSE(parse_rfc3339_seconds("2024-05-01T12:00:00Zjunk"));

  CHECK(parse_window("5m") == 300);
  CHECK(parse_window("1h") == 3600);
  CHECK(parse_window("24h") == 86400);
  CHECK(parse_window("1d") == 86400);
  CHECK(parse_window("90m") == 5400);
  CHECK_FALSE(parse_window(""));
  CHECK_FALSE(parse_window("h"));
  CHECK_FALSE(parse_window("0m"));
  CHECK_FALSE(parse_window("05m"));
  CHECK_FALSE(parse_window("25h"));   // beyond the 24 h kept
  CHECK_FALSE(parse_window("2d"));
  CHECK_FALSE(parse_window("30s"));   // not a unit: windows are whole minutes
  CHECK_FALSE(parse_window("1.5h"));
  CHECK_FALSE(parse_window("-1h"));
  CHECK_FALSE(parse_window("1H"));
  CHECK_FALSE(parse_window("99999999999999h"));
}

TEST_CASE("an empty window: every figure is 0, no division by zero") {
  business_window w{t0};
  const auto f = w.figures(3600, t0 + 10);
  CHECK(f.orders == 0);
  CHECK(f.orders_per_minute == 0.0);
  CHECK(f.revenue_per_hour == 0.0);
  CHECK(f.average_order_value == 0.0);
  CHECK(f.conversion_rate == 0.0);
  CHECK(f.payment_failure_rate == 0.0);
  CHECK(f.currency.empty());
  CHECK(f.by_currency.empty());
  CHECK(f.window_s == 3600);
  CHECK(f.coverage_s == 10);  // counting started 10 s ago
}

TEST_CASE("each event id counts once, however often it is delivered") {
  business_window w{t0, 4};
  const auto now = t0 + 120;
  CHECK(w.add(order("a", t0 + 5, 1000), now) == business_window::outcome::counted);
  CHECK(w.add(order("a", t0 + 5, 1000), now) == business_window::outcome::duplicate);
  CHECK(w.add(simple("f1", business_event_kind::payment_failed, "p1", t0), now) == business_window::outcome::counted);
  CHECK(w.add(simple("f1", business_event_kind::payment_failed, "p1", t0), now) == business_window::outcome::duplicate);
  auto f = w.figures(300, now);
  CHECK(f.orders == 1);
  CHECK(f.payments_failed == 1);
  CHECK(f.by_currency.at(0).revenue == 1000);

  // The memory is bounded: beyond its capacity the oldest ids are forgotten first.
  for (int i = 0; i < 4; ++i) {
    CHECK(w.add(simple("x" + std::to_string(i), business_event_kind::payment_processed, "p", t0), now) ==
          business_window::outcome::counted);
  }
  CHECK(w.remembered_ids() == 4);
  CHECK(w.add(simple("x3", business_event_kind::payment_processed, "p", t0), now) ==
        business_window::outcome::duplicate);
  CHECK(w.add(order("a", t0 + 5, 1000), now) == business_window::outcome::counted);  // forgotten: counted again
}

TEST_CASE("windows: an event counts in the minute it occurred; older minutes drop out as time passes") {
  business_window w{t0 - 86400};
  // Orders at 12:00:10 (1000), 12:03:00 (3000), 12:59:59 (2000); now is 13:00:30.
  const auto now = t0 + 3630;
  w.add(order("o1", t0 + 10, 1000), now);
  w.add(order("o2", t0 + 180, 3000), now);
  w.add(order("o3", t0 + 3599, 2000), now);

  // 5m = the minutes 12:56 .. 13:00: only o3.
  auto f5 = w.figures(300, now);
  CHECK(f5.orders == 1);
  CHECK(f5.orders_per_minute == doctest::Approx(1.0 / 5));
  CHECK(f5.revenue_per_hour == doctest::Approx(2000 * 12.0));
  CHECK(f5.average_order_value == doctest::Approx(2000));
  CHECK(f5.from_s == t0 + 3360);
  CHECK(f5.coverage_s == 300);

  // 1h = the minutes 12:01 .. 13:00: o2 and o3 (o1's minute 12:00 has just left it).
  auto f60 = w.figures(3600, now);
  CHECK(f60.orders == 2);
  CHECK(f60.revenue_per_hour == doctest::Approx(5000));
  CHECK(f60.average_order_value == doctest::Approx(2500));
  CHECK(f60.currency == "USD");

  // 24h: all three.
  auto fday = w.figures(86400, now);
  CHECK(fday.orders == 3);
  CHECK(fday.orders_per_minute == doctest::Approx(3.0 / 1440));

  // A day later nothing is left, although the buckets were never cleared explicitly.
  CHECK(w.figures(86400, now + 86400).orders == 0);
  // Events from before the span are not counted (but are remembered as seen).
  CHECK(w.add(order("old", now - 86400 - 60, 500), now) == business_window::outcome::too_old);
  CHECK(w.add(order("old", now - 86400 - 60, 500), now) == business_window::outcome::duplicate);
  // An event stamped ahead of our clock counts now, not in a future minute nobody asks for.
  w.add(order("ahead", now + 600, 700), now);
  CHECK(w.figures(60, now).orders == 1);
}

TEST_CASE("conversion over many carts (past the exact limit): estimated within a few percent") {
  business_window w{t0};
  const auto now = t0 + 600;
  // 3,000 carts over ten minutes, each with items in two minutes; every third one checked out.
  int n = 0;
  for (int c = 0; c < 3'000; ++c) {
    const auto id = "cart-" + std::to_string(c);
    const auto at = t0 + (c % 10) * 60;
    w.add(simple("add-a-" + std::to_string(++n), business_event_kind::cart_item_added, id, at), now);
    w.add(simple("add-b-" + std::to_string(++n), business_event_kind::cart_item_added, id, at + 60 > now ? at : at + 60),
          now);
    if (c % 3 == 0) {
      w.add(simple("out-" + std::to_string(c), business_event_kind::cart_checked_out, id, at), now);
    }
  }
  auto f = w.figures(3600, now);
  CHECK(f.carts_with_items == doctest::Approx(3'000).epsilon(0.10));
  CHECK(f.carts_checked_out == doctest::Approx(1'000).epsilon(0.10));
  CHECK(f.conversion_rate == doctest::Approx(1.0 / 3).epsilon(0.15));
}

TEST_CASE("rates: payment failure rate, conversion over distinct carts, the main currency") {
  business_window w{t0};
  const auto now = t0 + 60;
  // 1 failed, 3 processed -> 25 %.
  w.add(simple("pf", business_event_kind::payment_failed, "p0", t0), now);
  for (int i = 1; i <= 3; ++i) {
    w.add(simple("pp" + std::to_string(i), business_event_kind::payment_processed, "p" + std::to_string(i), t0), now);
  }
  // Four carts had items added (cart a twice), two of them checked out, one cart checked out that had its
  // items added before the window: 3 converted of 5 carts.
  w.add(simple("a1", business_event_kind::cart_item_added, "a", t0), now);
  w.add(simple("a2", business_event_kind::cart_item_added, "a", t0 + 1), now);
  w.add(simple("b1", business_event_kind::cart_item_added, "b", t0), now);
  w.add(simple("c1", business_event_kind::cart_item_added, "c", t0), now);
  w.add(simple("d1", business_event_kind::cart_item_added, "d", t0), now);
  w.add(simple("ax", business_event_kind::cart_checked_out, "a", t0 + 2), now);
  w.add(simple("bx", business_event_kind::cart_checked_out, "b", t0 + 2), now);
  w.add(simple("ex", business_event_kind::cart_checked_out, "e", t0 + 2), now);
  // Orders in two currencies: EUR has more orders, so it is the main one.
  w.add(order("u1", t0, 1000, "USD"), now);
  w.add(order("e1", t0, 2000, "EUR"), now);
  w.add(order("e2", t0, 4000, "EUR"), now);

  auto f = w.figures(120, now);
  CHECK(f.payments_failed == 1);
  CHECK(f.payments_processed == 3);
  CHECK(f.payment_failure_rate == doctest::Approx(0.25));
  CHECK(f.carts_with_items == 5);
  CHECK(f.carts_checked_out == 3);
  CHECK(f.conversion_rate == doctest::Approx(0.6));
  CHECK(f.orders == 3);
  CHECK(f.currency == "EUR");
  CHECK(f.average_order_value == doctest::Approx(3000));
  CHECK(f.revenue_per_hour == doctest::Approx(6000 * 30.0));  // 2 minutes
  REQUIRE(f.by_currency.size() == 2);
  CHECK(f.by_currency[0].currency == "EUR");
  CHECK(f.by_currency[1].currency == "USD");
  CHECK(f.by_currency[1].average_order_value == doctest::Approx(1000));

  // Only failures: 100 %; only carts, no checkout: conversion 0.
  business_window only{t0};
  only.add(simple("f", business_event_kind::payment_failed, "p", t0), now);
  only.add(simple("c", business_event_kind::cart_item_added, "c", t0), now);
  auto g = only.figures(120, now);
  CHECK(g.carts_with_items == 1);
  CHECK(g.payment_failure_rate == doctest::Approx(1.0));
  CHECK(g.conversion_rate == 0.0);
}

TEST_CASE("the analytics actor: batches with repeats count once, queries answer, gauges are pushed") {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto now = std::make_shared<std::atomic<std::int64_t>>(t0 + 30);
  auto seen = std::make_shared<std::mutex>();
  auto counted = std::make_shared<std::vector<std::string>>();
  auto gauges = std::make_shared<std::vector<business_figures>>();

  analytics_options opts;
  opts.refresh = std::chrono::hours(1);  // pushes come from batches and explicit refreshes here
  opts.clock = [now] { return now->load(); };
  opts.cart_abandonment = [] { return 0.4; };
  opts.counted = [seen, counted](const business_event& e) {
    std::lock_guard<std::mutex> lk(*seen);
    counted->push_back(e.id);
  };
  opts.gauges = [seen, gauges](const business_figures& f) {
    std::lock_guard<std::mutex> lk(*seen);
    gauges->push_back(f);
  };
  auto a = spawn_analytics(sys, opts);

  business_batch first;
  first.events = {order("o1", t0, 1500), simple("pf", business_event_kind::payment_failed, "p", t0)};
  business_batch again = first;  // a redelivery of the same batch
  again.events.push_back(simple("pp", business_event_kind::payment_processed, "q", t0));
  caf::anon_send(a, first);
  caf::anon_send(a, again);

  caf::scoped_actor self{sys};
  business_figures f;
  bool answered = false;
  self->request(a, std::chrono::seconds(5), analytics_query_atom::value, std::int64_t{300})
      .receive(
          [&](business_figures& r) {
            f = r;
            answered = true;
          },
          [&](caf::error& e) { FAIL("query failed: " << sys.render(e)); });
  REQUIRE(answered);
  CHECK(f.orders == 1);
  CHECK(f.payments_failed == 1);
  CHECK(f.payments_processed == 1);
  CHECK(f.payment_failure_rate == doctest::Approx(0.5));
  CHECK(f.cart_abandonment_rate == doctest::Approx(0.4));
  CHECK(f.window_s == 300);
  {
    std::lock_guard<std::mutex> lk(*seen);
    CHECK(*counted == std::vector<std::string>{"o1", "pf", "pp"});
    REQUIRE_FALSE(gauges->empty());
  }

  // A refresh after the clock moved two hours on: the gauge window (1 h) is empty again.
  now->store(t0 + 30 + 7200);
  self->send(a, analytics_refresh_atom::value);
  self->request(a, std::chrono::seconds(5), analytics_query_atom::value, std::int64_t{3600})
      .receive([&](business_figures& r) { CHECK(r.orders == 0); },
               [&](caf::error& e) { FAIL("query failed: " << sys.render(e)); });
  {
    std::lock_guard<std::mutex> lk(*seen);
    CHECK(gauges->back().orders == 0);
    CHECK(gauges->back().window_s == 3600);
  }
  caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
}
