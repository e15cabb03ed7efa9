// The node's periodic housekeeping (app/housekeeping) on a real PostgreSQL and entity runtime: a
// reservation nobody touches is expired by the sweep (and committed as ReservationExpired), expired
// Idempotency-Key records are deleted and live ones kept, and the cart gauges count abandoned carts.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <thread>

#include <caf/all.hpp>
#include <pqxx/pqxx>

#include "actors/protocol/atoms.hpp"
#include "actors/protocol/inventory_messages.hpp"
#include "app/housekeeping.hpp"
#include "persistence/inventory_seed.hpp"
#include "support/cart_runtime.hpp"

using namespace mercato;
using namespace mercato::test;
using namespace std::chrono_literals;

namespace {

// Waits (bounded) until `sql`'s first column is `expected`; returns the last value seen.
int await_count(cart_db_fixture& f, const std::string& sql, int expected, std::chrono::seconds limit = 15s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  int seen = f.count(sql);
  while (seen != expected && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
    seen = f.count(sql);
  }
  return seen;
}

app::housekeeping_options options(const std::string& dsn, std::chrono::milliseconds interval, std::size_t batch) {
  app::housekeeping_options o;
  o.dsn = dsn;
  o.interval = interval;
  o.batch_size = batch;
  o.abandoned_after = std::chrono::seconds(3600);
  return o;
}

}  // namespace

TEST_CASE_FIXTURE(cart_db_fixture, "housekeeping: a reservation past its TTL on an untouched product is expired") {
  std::string product;
  {
    pqxx::connection conn{db.dsn()};
    pqxx::work tx{conn};
    product = tx.exec("INSERT INTO products (sku, name, base_price, current_price) "
                      "VALUES ('HK-1', 'Housekeeping product', 10.00, 10.00) RETURNING id::text")[0][0]
                  .as<std::string>();
    persistence::seed_inventory(tx, product, 10, 0);
    tx.commit();
  }
  cart_runtime rt{{db.dsn()}};
  telemetry::metrics metrics;
  app::housekeeping chores{options(db.dsn(), 1h, 100), rt.runtime(), &metrics};

  // A brief reservation and a long one, through the inventory entity.
  auto reserve = [&](std::string rid, std::int64_t ttl_ms) {
    protocol::inventory_reserve c;
    c.meta.request_id = "req-hk";
    c.meta.command_id = fresh_command_id();
    c.reservation_id = std::move(rid);
    c.quantity = 2;
    c.ttl_ms = ttl_ms;
    caf::scoped_actor self{rt.system()};
    bool ok = false;
    self->request(rt.router_of("inventory"), 15s, protocol::to_entity_atom::value, product, caf::make_message(c))
        .receive([&](protocol::inventory_view&) { ok = true; }, [&](caf::error&) { ok = false; });
    return ok;
  };
  REQUIRE(reserve("long", 600'000));
  REQUIRE(reserve("brief", 1));
  const std::string row = "SELECT COUNT(*) FROM inventory WHERE product_id = '" + product + "'::uuid";
  CHECK(count(row + " AND reserved = 4 AND next_expiry IS NOT NULL") == 1);

  pqxx::connection conn{db.dsn()};
  // Wait until the database agrees the earliest reservation is due (the sweep's own condition).
  REQUIRE(await_count(*this, row + " AND next_expiry <= now()", 1) == 1);
  const auto round = chores.run_once(conn);
  CHECK(round.reservations_due == 1);
  // The entity commits the expiry: two units back, the long reservation's deadline next.
  CHECK(await_count(*this, row + " AND reserved = 2 AND next_expiry > now() + interval '5 minutes'", 1) == 1);
  CHECK(count("SELECT COUNT(*) FROM outbox WHERE aggregate_id = '" + product +
              "' AND event_type = 'ReservationExpired' AND data->>'reservation_id' = 'brief'") == 1);
  // Nothing due any more: the next round sends nothing.
  CHECK(chores.run_once(conn).reservations_due == 0);
  CHECK(metrics.reservations_expired.Value() == 1);
}

TEST_CASE_FIXTURE(cart_db_fixture, "housekeeping: expired Idempotency-Key records go, live ones stay") {
  {
    pqxx::connection conn{db.dsn()};
    pqxx::work tx{conn};
    for (int i = 0; i < 5; ++i) {
      tx.exec_params("INSERT INTO idempotency_keys (scope, key, request_hash, state, expires_at) "
                     "VALUES ('user:hk', $1, '\\x00', 'completed', now() - interval '1 minute')",
                     "old-" + std::to_string(i));
    }
    tx.exec("INSERT INTO idempotency_keys (scope, key, request_hash, state) VALUES ('user:hk', 'live', '\\x00', "
            "'completed')");
    tx.commit();
  }
  cart_runtime rt{{db.dsn()}};
  telemetry::metrics metrics;
  app::housekeeping chores{options(db.dsn(), 1h, 3), rt.runtime(), &metrics};
  pqxx::connection conn{db.dsn()};
  CHECK(chores.run_once(conn).idempotency_deleted == 3);  // one batch per round
  CHECK(chores.run_once(conn).idempotency_deleted == 2);
  CHECK(chores.run_once(conn).idempotency_deleted == 0);
  CHECK(count("SELECT COUNT(*) FROM idempotency_keys WHERE scope = 'user:hk'") == 1);
  CHECK(count("SELECT COUNT(*) FROM idempotency_keys WHERE key = 'live'") == 1);
  CHECK(metrics.idempotency_keys_deleted.Value() == 5);
}

TEST_CASE_FIXTURE(cart_db_fixture, "housekeeping: open carts with items unchanged past the limit count as abandoned") {
  cart_runtime rt{{db.dsn()}};
  const std::string fresh = "c2b2b2b2-0000-4000-8000-000000000001";
  const std::string stale = "c2b2b2b2-0000-4000-8000-000000000002";
  const std::string empty = "c2b2b2b2-0000-4000-8000-000000000003";
  for (const auto& id : {fresh, stale, empty}) {
    REQUIRE(rt.ask(id, open_cmd()));
  }
  REQUIRE(rt.ask(fresh, add_cmd(1)));
  REQUIRE(rt.ask(stale, add_cmd(2)));
  {
    // Age two carts past the limit (one of them empty, which is never abandoned).
    pqxx::connection conn{db.dsn()};
    pqxx::work tx{conn};
    tx.exec_params("UPDATE carts SET updated_at = now() - interval '2 hours' WHERE id IN ($1, $2)", stale, empty);
    tx.commit();
  }
  telemetry::metrics metrics;
  app::housekeeping chores{options(db.dsn(), 1h, 100), rt.runtime(), &metrics};
  pqxx::connection conn{db.dsn()};
  const auto round = chores.run_once(conn);
  CHECK(round.carts_active == 1);
  CHECK(round.carts_abandoned == 1);
  CHECK(metrics.carts_abandoned.Value() == 1);
  CHECK(metrics.carts_active.Value() == 1);
  CHECK(metrics.cart_abandonment_ratio.Value() == doctest::Approx(0.5));
}

TEST_CASE_FIXTURE(cart_db_fixture, "housekeeping: the thread runs rounds on its interval and stops promptly") {
  cart_runtime rt{{db.dsn()}};
  {
    pqxx::connection conn{db.dsn()};
    pqxx::work tx{conn};
    tx.exec("INSERT INTO idempotency_keys (scope, key, request_hash, state, expires_at) "
            "VALUES ('user:hk', 'gone', '\\x00', 'completed', now() - interval '1 minute')");
    tx.commit();
  }
  telemetry::metrics metrics;
  app::housekeeping chores{options(db.dsn(), 50ms, 100), rt.runtime(), &metrics};
  chores.start();
  CHECK(await_count(*this, "SELECT COUNT(*) FROM idempotency_keys WHERE key = 'gone'", 0) == 0);
  const auto t0 = std::chrono::steady_clock::now();
  chores.stop();
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
}
