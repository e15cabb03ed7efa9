// The inventory entity (one per product) through the entity runtime on a real PostgreSQL: adjustments
// are durable before they are acknowledged (snapshot, projection row and events), on_hand never goes
// below what is reserved, the reservation protocol checkout uses (reserve idempotent per reservation
// id, commit, release, expiry after the TTL), LowStock once per crossing, and a burst of concurrent
// adjustments that never takes the stock negative.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <boost/json/parse.hpp>
#include <pqxx/pqxx>

#include "actors/inventory/inventory_model.hpp"
#include "actors/protocol/atoms.hpp"
#include "actors/protocol/errors.hpp"
#include "actors/protocol/inventory_messages.hpp"
#include "persistence/inventory_seed.hpp"
#include "support/cart_runtime.hpp"

using namespace mercato;
using namespace mercato::test;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;
using protocol::inventory_view;

namespace {

template <class Command>
Command with_meta(Command c, std::string user = "") {
  c.meta.request_id = "req-inventory";
  c.meta.command_id = fresh_command_id();
  c.meta.user_id = std::move(user);
  return c;
}

protocol::inventory_get get_cmd() { return with_meta(protocol::inventory_get{}); }
protocol::inventory_expire expire_cmd() { return with_meta(protocol::inventory_expire{}); }
protocol::inventory_adjust adjust_cmd(std::int32_t delta, std::string reason = "stock count",
                                      std::string user = "7f1a2b3c-0000-4000-8000-0000000000aa") {
  protocol::inventory_adjust c;
  c.delta = delta;
  c.reason = std::move(reason);
  return with_meta(std::move(c), std::move(user));
}
protocol::inventory_reserve reserve_cmd(std::string rid, std::int32_t quantity, std::int64_t ttl_ms = 600'000) {
  protocol::inventory_reserve c;
  c.reservation_id = std::move(rid);
  c.quantity = quantity;
  c.ttl_ms = ttl_ms;
  return with_meta(std::move(c));
}
protocol::inventory_commit commit_cmd(std::string rid) {
  protocol::inventory_commit c;
  c.reservation_id = std::move(rid);
  return with_meta(std::move(c));
}
protocol::inventory_release release_cmd(std::string rid) {
  protocol::inventory_release c;
  c.reservation_id = std::move(rid);
  return with_meta(std::move(c));
}

struct fixture : cart_db_fixture {
  // A product with its inventory entity at version 1, as the catalog creates them.
  std::string new_product(std::int64_t on_hand, std::int64_t threshold) {
    pqxx::connection conn{db.dsn()};
    pqxx::work tx{conn};
    const auto n = ++products;
    auto id = tx.exec_params("INSERT INTO products (sku, name, base_price, current_price) "
                             "VALUES ($1, $2, 10.00, 10.00) RETURNING id::text",
                             "INV-" + std::to_string(n), "Inventory product " + std::to_string(n))[0][0]
                  .as<std::string>();
    persistence::seed_inventory(tx, id, on_hand, threshold);
    tx.commit();
    return id;
  }

  std::int64_t inv_version(const std::string& id) {
    pqxx::connection conn{db.dsn()};
    pqxx::nontransaction tx{conn};
    auto r = tx.exec_params("SELECT version FROM entity_snapshots WHERE kind = 'inventory' AND id = $1", id);
    return r.empty() ? 0 : r[0][0].as<std::int64_t>();
  }
  boost::json::object inv_state(const std::string& id) {
    pqxx::connection conn{db.dsn()};
    pqxx::nontransaction tx{conn};
    auto r = tx.exec_params("SELECT state::text FROM entity_snapshots WHERE kind = 'inventory' AND id = $1", id);
    REQUIRE(r.size() == 1);
    return boost::json::parse(r[0][0].as<std::string>()).as_object();
  }
  // The projection row: on_hand, reserved, low_stock_threshold, version.
  std::vector<std::int64_t> inv_row(const std::string& id) {
    pqxx::connection conn{db.dsn()};
    pqxx::nontransaction tx{conn};
    auto r = tx.exec_params(
        "SELECT on_hand, reserved, low_stock_threshold, version FROM inventory WHERE product_id = $1::uuid", id);
    REQUIRE(r.size() == 1);
    return {r[0][0].as<std::int64_t>(), r[0][1].as<std::int64_t>(), r[0][2].as<std::int64_t>(),
            r[0][3].as<std::int64_t>()};
  }
  int events(const std::string& id, const std::string& type, const std::string& extra = "") {
    return count("SELECT COUNT(*) FROM outbox WHERE aggregate_kind = 'inventory' AND aggregate_id = '" + id +
                 "' AND event_type = '" + type + "'" + extra);
  }

  // What the stored snapshot and the projection row say, next to a view the entity answered.
  void check_stored(const std::string& id, const inventory_view& v) {
    CHECK(inv_version(id) == v.version);
    const auto row = inv_row(id);
    CHECK(row[0] == v.on_hand);
    CHECK(row[1] == v.reserved);
    CHECK(row[2] == v.low_stock_threshold);
    CHECK(row[3] == v.version);
    const auto st = inv_state(id);
    CHECK(st.at("schema").to_number<int>() == 1);
    CHECK(st.at("on_hand").to_number<std::int64_t>() == v.on_hand);
    CHECK(st.at("reserved").to_number<std::int64_t>() == v.reserved);
    CHECK(v.available == v.on_hand - v.reserved);
  }

  int products = 0;
};

// Talks to the inventory router of a runtime.
struct inventory_client {
  cart_runtime& rt;
  template <class Command>
  caf::expected<inventory_view> ask(const std::string& id, Command cmd, std::chrono::milliseconds timeout = 15s) {
    caf::scoped_actor self{rt.system()};
    caf::expected<inventory_view> out{caf::make_error(protocol::errc::timeout)};
    self->request(rt.router_of(actors::inventory_model::kind), timeout, protocol::to_entity_atom::value, id,
                  caf::make_message(std::move(cmd)))
        .receive([&](inventory_view& v) { out = std::move(v); }, [&](caf::error& e) { out = std::move(e); });
    return out;
  }
};

std::string code(const caf::expected<inventory_view>& r) { return r ? std::string("ok") : error_code(r.error()); }

}  // namespace

TEST_CASE_FIXTURE(fixture, "adjust and read: acknowledged only once stored, snapshot and projection row agree") {
  const auto p = new_product(10, 3);
  cart_runtime rt{{db.dsn()}};
  inventory_client inv{rt};

  auto v = inv.ask(p, get_cmd());
  REQUIRE_MESSAGE(v, code(v));
  CHECK(v->product_id == p);
  CHECK(v->version == 1);
  CHECK(v->on_hand == 10);
  CHECK(v->available == 10);
  CHECK(v->low_stock_threshold == 3);

  auto up = inv.ask(p, adjust_cmd(5, "delivery PO-1"));
  REQUIRE_MESSAGE(up, code(up));
  CHECK(up->version == 2);
  CHECK(up->on_hand == 15);
  check_stored(p, *up);
  // The event names who and why, with old and new available.
  CHECK(events(p, "StockChanged",
               " AND data->>'cause' = 'adjust' AND data->>'reason' = 'delivery PO-1'"
               " AND data->>'user_id' = '7f1a2b3c-0000-4000-8000-0000000000aa' AND data->'at' IS NOT NULL"
               " AND (data->>'available_old')::int = 10 AND (data->>'available_new')::int = 15"
               " AND metadata->>'correlation_id' = 'req-inventory'") == 1);

  auto down = inv.ask(p, adjust_cmd(-4));
  REQUIRE(down);
  CHECK(down->version == 3);
  CHECK(down->on_hand == 11);
  check_stored(p, *down);

  // Malformed adjustments change nothing.
  CHECK(code(inv.ask(p, adjust_cmd(0))) == "invalid");
  CHECK(code(inv.ask(p, adjust_cmd(1, ""))) == "invalid");
  CHECK(code(inv.ask(p, adjust_cmd(-12))) == "insufficient_stock");  // below 0
  CHECK(inv_version(p) == 3);
  // A product without an inventory entity.
  CHECK(code(inv.ask("00000000-0000-4000-8000-00000000dead", get_cmd())) == "not_found");
  CHECK(code(inv.ask("00000000-0000-4000-8000-00000000dead", adjust_cmd(1))) == "not_found");

  // A retry of an applied command (same command id) is not applied again.
  auto once = adjust_cmd(2);
  REQUIRE(inv.ask(p, once));
  auto again = inv.ask(p, once);
  REQUIRE(again);
  CHECK(again->on_hand == 13);
  CHECK(again->version == 4);

  // A fresh node reads what was stored.
  rt.stop();
  cart_runtime rt2{{db.dsn()}};
  inventory_client inv2{rt2};
  auto reread = inv2.ask(p, get_cmd());
  REQUIRE(reread);
  CHECK(reread->version == 4);
  CHECK(reread->on_hand == 13);
  check_stored(p, *reread);
}

TEST_CASE_FIXTURE(fixture, "an adjustment that would take on_hand below what is reserved is insufficient_stock") {
  const auto p = new_product(10, 0);
  cart_runtime rt{{db.dsn()}};
  inventory_client inv{rt};
  auto r = inv.ask(p, reserve_cmd("checkout-1", 8));
  REQUIRE_MESSAGE(r, code(r));
  CHECK(r->reserved == 8);
  CHECK(r->available == 2);

  auto refused = inv.ask(p, adjust_cmd(-3));
  REQUIRE_FALSE(refused);
  CHECK(error_code(refused.error()) == "insufficient_stock");
  CHECK(rt.system().render(refused.error()).find("below the 8 reserved") != std::string::npos);
  CHECK(inv_version(p) == r->version);

  auto ok = inv.ask(p, adjust_cmd(-2));  // exactly down to what is reserved
  REQUIRE(ok);
  CHECK(ok->on_hand == 8);
  CHECK(ok->available == 0);
  check_stored(p, *ok);
}

TEST_CASE_FIXTURE(fixture, "reserve is idempotent per reservation id; more than available is insufficient_stock") {
  const auto p = new_product(10, 0);
  cart_runtime rt{{db.dsn()}};
  inventory_client inv{rt};
  auto first = inv.ask(p, reserve_cmd("checkout-a", 3));
  REQUIRE(first);
  CHECK(first->version == 2);
  CHECK(first->reserved == 3);
  check_stored(p, *first);

  // The same reservation again (another command id, as a retrying checkout would send): nothing more.
  auto repeat = inv.ask(p, reserve_cmd("checkout-a", 3));
  REQUIRE_MESSAGE(repeat, code(repeat));
  CHECK(repeat->version == 2);
  CHECK(repeat->reserved == 3);
  CHECK(inv_version(p) == 2);
  CHECK(events(p, "StockReserved") == 1);
  // The same id with another quantity is not the same reservation.
  CHECK(code(inv.ask(p, reserve_cmd("checkout-a", 4))) == "conflict");

  auto short_of = inv.ask(p, reserve_cmd("checkout-b", 8));
  REQUIRE_FALSE(short_of);
  CHECK(error_code(short_of.error()) == "insufficient_stock");
  CHECK(inv_version(p) == 2);

  auto rest = inv.ask(p, reserve_cmd("checkout-b", 7));  // exactly what is available
  REQUIRE(rest);
  CHECK(rest->available == 0);
  CHECK(code(inv.ask(p, reserve_cmd("checkout-c", 1))) == "insufficient_stock");
  CHECK(code(inv.ask(p, reserve_cmd("", 1))) == "invalid");
  CHECK(code(inv.ask(p, reserve_cmd("checkout-d", 0))) == "invalid");
  CHECK(code(inv.ask(p, reserve_cmd("checkout-d", 1, 0))) == "invalid");
  check_stored(p, *rest);
  const auto st = inv_state(p);
  REQUIRE(st.at("reservations").as_array().size() == 2);
  const auto& res = st.at("reservations").as_array()[0].as_object();
  CHECK(res.at("id").as_string() == "checkout-a");
  CHECK(res.at("quantity").to_number<int>() == 3);
  CHECK(res.contains("expires_at"));
}

TEST_CASE_FIXTURE(fixture, "commit sells the reserved units, release gives them back; repeats are harmless") {
  const auto p = new_product(10, 0);
  cart_runtime rt{{db.dsn()}};
  inventory_client inv{rt};
  REQUIRE(inv.ask(p, reserve_cmd("sold", 3)));
  REQUIRE(inv.ask(p, reserve_cmd("kept", 2)));

  auto committed = inv.ask(p, commit_cmd("sold"));
  REQUIRE_MESSAGE(committed, code(committed));
  CHECK(committed->on_hand == 7);
  CHECK(committed->reserved == 2);
  CHECK(committed->available == 5);  // a commit does not change what is available
  check_stored(p, *committed);
  CHECK(events(p, "StockCommitted", " AND data->>'reservation_id' = 'sold'") == 1);

  // Repeats after success: answered with the current view, nothing changes.
  auto again = inv.ask(p, commit_cmd("sold"));
  REQUIRE_MESSAGE(again, code(again));
  CHECK(again->version == committed->version);
  CHECK(again->on_hand == 7);
  auto late_reserve = inv.ask(p, reserve_cmd("sold", 3));
  REQUIRE(late_reserve);
  CHECK(late_reserve->reserved == 2);
  CHECK(inv_version(p) == committed->version);
  // Sold units cannot be released; an unknown reservation cannot be committed.
  CHECK(code(inv.ask(p, release_cmd("sold"))) == "conflict");
  CHECK(code(inv.ask(p, commit_cmd("never-reserved"))) == "not_found");

  auto released = inv.ask(p, release_cmd("kept"));
  REQUIRE(released);
  CHECK(released->on_hand == 7);
  CHECK(released->reserved == 0);
  check_stored(p, *released);
  // Release is idempotent, also for a reservation that never happened (a compensating checkout).
  auto re = inv.ask(p, release_cmd("kept"));
  REQUIRE(re);
  CHECK(re->version == released->version);
  REQUIRE(inv.ask(p, release_cmd("never-reserved")));
  CHECK(inv_version(p) == released->version);
  // A released reservation is not held any more: it cannot be committed nor reserved again.
  CHECK(code(inv.ask(p, commit_cmd("kept"))) == "conflict");
  CHECK(code(inv.ask(p, reserve_cmd("kept", 2))) == "conflict");
  CHECK(events(p, "StockReleased") == 1);
  CHECK(events(p, "StockChanged") == 4);  // reserve, reserve, commit, release
}

TEST_CASE_FIXTURE(fixture, "a reservation past its TTL is released: by inventory_expire, or before any command") {
  const auto p = new_product(10, 0);
  cart_runtime rt{{db.dsn()}};
  inventory_client inv{rt};
  REQUIRE(inv.ask(p, reserve_cmd("long", 1)));  // 10 minutes: must survive
  auto brief = inv.ask(p, reserve_cmd("brief", 4, 300));
  REQUIRE(brief);
  CHECK(brief->reserved == 5);

  // The sweep's command, polled until the reservation is gone (bounded).
  std::optional<inventory_view> after;
  const auto deadline = steady::now() + 15s;
  while (steady::now() < deadline) {
    auto v = inv.ask(p, expire_cmd());
    REQUIRE_MESSAGE(v, code(v));
    if (v->reserved == 1) {
      after = *v;
      break;
    }
    CHECK(v->reserved == 5);  // nothing in between
    std::this_thread::sleep_for(25ms);
  }
  REQUIRE(after);
  CHECK(after->available == 9);
  check_stored(p, *after);
  CHECK(events(p, "ReservationExpired", " AND data->>'reservation_id' = 'brief' AND (data->>'quantity')::int = 4") ==
        1);
  CHECK(events(p, "StockChanged", " AND data->>'cause' = 'expire'") == 1);
  // Nothing more to expire: an expire is then only a read.
  auto idle = inv.ask(p, expire_cmd());
  REQUIRE(idle);
  CHECK(idle->version == after->version);
  // The expired reservation no longer holds anything.
  CHECK(code(inv.ask(p, commit_cmd("brief"))) == "conflict");
  REQUIRE(inv.ask(p, release_cmd("brief")));
  CHECK(inv_version(p) == after->version);

  // Any command drops what has expired first, in the same change.
  auto quick = inv.ask(p, reserve_cmd("quick", 2, 200));
  REQUIRE(quick);
  const auto st = inv_state(p);
  std::string expires_at;
  for (const auto& r : st.at("reservations").as_array()) {
    if (r.as_object().at("id").as_string() == "quick") {
      expires_at = std::string(r.as_object().at("expires_at").as_string());
    }
  }
  REQUIRE_FALSE(expires_at.empty());
  // Wait for the stored deadline itself (a point in time, not a guess), then one command.
  std::this_thread::sleep_until(actors::inventory_model::parse_time(expires_at) + 5ms);
  auto adjusted = inv.ask(p, adjust_cmd(1));
  REQUIRE(adjusted);
  CHECK(adjusted->version == quick->version + 1);
  CHECK(adjusted->reserved == 1);
  CHECK(adjusted->on_hand == 11);
  check_stored(p, *adjusted);
  CHECK(events(p, "ReservationExpired", " AND data->>'reservation_id' = 'quick'") == 1);
  // ... written by the adjustment (its user), not by a sweep.
  CHECK(events(p, "ReservationExpired",
               " AND data->>'reservation_id' = 'quick' AND data->>'user_id' = '7f1a2b3c-0000-4000-8000-0000000000aa'") ==
        1);
  const auto final_state = inv_state(p);
  REQUIRE(final_state.at("reservations").as_array().size() == 1);
  CHECK(final_state.at("reservations").as_array()[0].as_object().at("id").as_string() == "long");
}

TEST_CASE_FIXTURE(fixture, "LowStock is emitted once per downward crossing of the threshold") {
  const auto p = new_product(20, 5);
  cart_runtime rt{{db.dsn()}};
  inventory_client inv{rt};
  auto low = [&] { return events(p, "LowStock"); };
  REQUIRE(inv.ask(p, adjust_cmd(-14)));  // available 6
  CHECK(low() == 0);
  REQUIRE(inv.ask(p, adjust_cmd(-1)));  // 5: crossed
  CHECK(low() == 1);
  CHECK(inv_state(p).at("low").as_bool());
  REQUIRE(inv.ask(p, adjust_cmd(-1)));  // 4: still low, no second event
  CHECK(low() == 1);
  REQUIRE(inv.ask(p, adjust_cmd(10)));  // 14: back above
  CHECK_FALSE(inv_state(p).at("low").as_bool());
  CHECK(low() == 1);
  REQUIRE(inv.ask(p, reserve_cmd("big", 10)));  // available 4: crossed again, by a reservation
  CHECK(low() == 2);
  REQUIRE(inv.ask(p, release_cmd("big")));  // 14
  REQUIRE(inv.ask(p, adjust_cmd(-9)));      // 5: a third crossing
  CHECK(low() == 3);
  CHECK(events(p, "LowStock", " AND (data->>'available')::int = 5 AND (data->>'low_stock_threshold')::int = 5") == 2);
}

TEST_CASE_FIXTURE(fixture, "50 concurrent adjustments: never negative, the stored stock is the sum of the acknowledged") {
  const auto p = new_product(10, 0);
  cart_runtime rt{{db.dsn()}};
  inventory_client inv{rt};
  auto held = inv.ask(p, reserve_cmd("held", 5));
  REQUIRE(held);

  constexpr int senders = 50;
  std::vector<std::int32_t> deltas;
  for (int i = 0; i < senders; ++i) {
    deltas.push_back(i % 5 < 3 ? -2 : 1);  // 30 x -2, 20 x +1: far more taken than there is
  }
  std::vector<caf::expected<inventory_view>> results(senders, caf::make_error(protocol::errc::timeout));
  std::mutex m;
  std::condition_variable cv;
  bool go = false;
  std::vector<std::thread> threads;
  for (int i = 0; i < senders; ++i) {
    threads.emplace_back([&, i] {
      {
        std::unique_lock<std::mutex> lock{m};
        cv.wait(lock, [&] { return go; });
      }
      results[i] = inv.ask(p, adjust_cmd(deltas[i]));
    });
  }
  {
    std::lock_guard<std::mutex> lock{m};
    go = true;
  }
  cv.notify_all();
  for (auto& t : threads) {
    t.join();
  }

  std::int64_t acked_sum = 0;
  int acked = 0;
  int refused = 0;
  std::set<std::int64_t> versions;
  for (int i = 0; i < senders; ++i) {
    const auto& r = results[i];
    if (r) {
      ++acked;
      acked_sum += deltas[i];
      versions.insert(r->version);
      CHECK(r->available >= 0);
      CHECK(r->reserved == 5);
      CHECK(r->on_hand >= r->reserved);
    } else {
      ++refused;
      CHECK(error_code(r.error()) == "insufficient_stock");  // never another error
    }
  }
  CHECK(acked + refused == senders);
  CHECK(acked >= 2);    // the first two removals always fit
  CHECK(refused >= 1);  // 60 units cannot be removed from 10 + 20
  CHECK(static_cast<int>(versions.size()) == acked);  // one version per acknowledged change

  auto final_view = inv.ask(p, get_cmd());
  REQUIRE(final_view);
  CHECK(final_view->on_hand == 10 + acked_sum);
  CHECK(final_view->reserved == 5);
  CHECK(final_view->available >= 0);
  CHECK(final_view->version == held->version + acked);
  check_stored(p, *final_view);
  CHECK(events(p, "StockChanged", " AND data->>'cause' = 'adjust'") == acked);
  CHECK(count("SELECT COUNT(*) FROM outbox WHERE aggregate_id = '" + p +
              "' AND event_type = 'StockChanged' AND ((data->>'available_new')::int < 0"
              " OR (data->>'on_hand_new')::int < (data->>'reserved_new')::int)") == 0);
}

TEST_CASE_FIXTURE(fixture, "a seeded product loads with its stock") {
  const auto p = new_product(7, 10);  // seeded low: on_hand 7 <= threshold 10
  {
    const auto st = inv_state(p);
    CHECK(st.at("low").as_bool());
    CHECK(inv_row(p) == std::vector<std::int64_t>{7, 0, 10, 1});
  }
  cart_runtime rt{{db.dsn()}};
  inventory_client inv{rt};
  auto v = inv.ask(p, get_cmd());
  REQUIRE_MESSAGE(v, code(v));
  CHECK(v->version == 1);
  CHECK(v->on_hand == 7);
  CHECK(v->reserved == 0);
  CHECK(v->available == 7);
  CHECK(v->low_stock_threshold == 10);
  CHECK(inv_version(p) == 1);  // a read changes nothing
  // Already low when seeded: going lower is not a new crossing.
  auto down = inv.ask(p, adjust_cmd(-1));
  REQUIRE(down);
  CHECK(down->version == 2);
  check_stored(p, *down);
  CHECK(events(p, "LowStock") == 0);
  // Raising the threshold above a healthy stock is a crossing too.
  REQUIRE(inv.ask(p, adjust_cmd(20)));  // 26
  protocol::inventory_set_threshold t;
  t.threshold = 30;
  auto raised = inv.ask(p, with_meta(t));
  REQUIRE(raised);
  CHECK(raised->low_stock_threshold == 30);
  check_stored(p, *raised);
  CHECK(events(p, "LowStock") == 1);
}
