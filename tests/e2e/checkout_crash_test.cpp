// End-to-end crash safety of the checkout saga: a node killed (SIGKILL, by the fault-injection setting
// MERCATO_CHECKOUT_FAULT_CRASH_AFTER, off by default) right after each step of a checkout is committed,
// then a node started again on the same database: the unfinished checkout is resumed at start-up and
// ends paid, with its stock sold exactly once, no reservation left behind, one capture at the provider,
// the cart emptied, and the client's retry with the same Idempotency-Key answering that same order.
#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <memory>
#include <string>
#include <thread>

#include <boost/json.hpp>

#include "support/http_client.hpp"
#include "support/node_process.hpp"
#include "support/scratch_database.hpp"
#include "support/shop.hpp"

using mercato::test::http_client;
using mercato::test::node_process;
using namespace mercato::test::shop;
using namespace std::chrono_literals;

namespace {

mercato::test::scratch_database& database() {
  static mercato::test::scratch_database db;
  return db;
}

std::unique_ptr<node_process> start_node(const std::string& crash_after) {
  std::map<std::string, std::string> env{{"MERCATO_PG_DSN", database().dsn()},
                                         {"MERCATO_RATE_LIMITS", "off"},
                                         {"MERCATO_CHECKOUT_PROVIDER_TIMEOUT_MS", "2000"}};
  if (!crash_after.empty()) {
    env["MERCATO_CHECKOUT_FAULT_CRASH_AFTER"] = crash_after;
  }
  auto n = std::make_unique<node_process>(std::vector<std::string>{"--demo"}, env);
  REQUIRE_MESSAGE(n->wait_ready(60s), "mercatod did not become ready; its log:\n" << n->log());
  return n;
}

long db_count(const std::string& sql, const std::string& param = {}) {
  return mercato::test::shop::scalar(database().dsn(), sql, param);
}

}  // namespace

TEST_CASE("a node killed after any checkout step: the restarted node finishes the checkout, exactly once") {
  int product_index = 0;
  for (const std::string step : {"create", "reserve", "authorize", "capture", "commit", "paid"}) {
    CAPTURE(step);
    customer ada;
    std::string product;
    std::string cart;
    {
      auto doomed = start_node(step);
      http_client c{doomed->port()};
      product = product_with_stock(c, database().dsn(), product_index++, 10);
      cart = new_cart(c, ada);
      add(c, ada, cart, product, 2);
      // The node dies mid-request: the connection ends without an answer.
      bool answered = false;
      std::string what;
      try {
        auto r = checkout(c, ada, cart, "tok_ok", "crash-" + step);
        answered = r.status != 0;
        what = std::to_string(r.status) + " " + r.body;
      } catch (const std::exception& e) {
        what = e.what();
      }
      CHECK_MESSAGE(!answered, "the node answered instead of dying: " << what);
      // The process is gone (killed by itself, like kill -9): nothing was answered.
      const auto deadline = std::chrono::steady_clock::now() + 30s;
      while (doomed->running() && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(20ms);
      }
      REQUIRE_FALSE(doomed->running());
      CHECK(doomed->stop(SIGKILL) == 128 + SIGKILL);
    }
    REQUIRE(db_count("SELECT COUNT(*) FROM order_sagas WHERE customer_id = $1::uuid", ada.id) == 1);

    auto node = start_node("");
    http_client c{node->port()};
    // Resumed at start-up: the order ends paid without any client retry.
    const auto deadline = std::chrono::steady_clock::now() + 40s;
    while (db_count("SELECT COUNT(*) FROM order_sagas WHERE customer_id = $1::uuid AND step = 'paid'", ada.id) == 0 &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(50ms);
    }
    REQUIRE_MESSAGE(db_count("SELECT COUNT(*) FROM orders WHERE customer_id = $1::uuid AND status = 'paid'", ada.id) == 1,
                    node->log());
    CHECK(available_of(c, product) == 8);  // sold once
    CHECK(reserved_of(c, product) == 0);   // nothing left held
    CHECK(db_count("SELECT COUNT(*) FROM sandbox_payment_operations o JOIN payments p ON o.key LIKE '%' || p.id::text || '%' "
                 "WHERE p.customer_id = $1::uuid AND o.operation = 'capture' AND o.approved",
                 ada.id) == 1);
    CHECK(db_count("SELECT COUNT(*) FROM outbox WHERE event_type = 'OrderPlaced' AND data->>'customer_id' = $1", ada.id) ==
          1);
    // The client's retry answers the same order (and charges nothing more); the cart was emptied.
    auto retry = checkout(c, ada, cart, "tok_ok", "crash-" + step);
    REQUIRE_MESSAGE(retry.status == 201, retry.body);
    CHECK(str(retry.json(), "status") == "paid");
    CHECK(db_count("SELECT COUNT(*) FROM orders WHERE customer_id = $1::uuid", ada.id) == 1);
    CHECK(db_count("SELECT COUNT(*) FROM sandbox_payment_operations o JOIN payments p ON o.key LIKE '%' || p.id::text || '%' "
                 "WHERE p.customer_id = $1::uuid AND o.operation = 'capture'",
                 ada.id) == 1);
    CHECK(available_of(c, product) == 8);
    const auto read = c.get("/api/v1/carts/" + cart, bearer(ada.token));
    REQUIRE(read.status == 200);
    CHECK(read.json().at("items").as_array().empty());
    node->stop(SIGTERM);
  }
}
