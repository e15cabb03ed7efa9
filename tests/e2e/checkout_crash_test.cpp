// End-to-end crash safety of the checkout saga: a node killed (SIGKILL, by the fault-injection setting
// MERCATO_CHECKOUT_FAULT_CRASH_AFTER, off by default) right after each step of a checkout is committed,
// then a node started again on the same database: the unfinished checkout is resumed at start-up and
// ends paid, with its stock sold exactly once, no reservation left behind, one capture at the provider,
// the cart emptied, and the client's retry with the same Idempotency-Key answering that same order.
// Likewise for what follows a checkout: a node killed in the middle of a cancel, of a return's receipt
// or of a refund (after the provider refunded, before the books say so) — the restarted node finishes
// it by itself, refunding and restocking exactly once.
#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <boost/json.hpp>

#include "support/http_client.hpp"
#include "support/node_process.hpp"
#include "support/scratch_database.hpp"
#include "support/shop.hpp"

using mercato::test::http_client;
using mercato::test::http_reply;
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
                                         {"MERCATO_CHECKOUT_PROVIDER_TIMEOUT_MS", "2000"},
                                         // The same node restarting: it takes its own leases back at once.
                                         {"MERCATO_NODE_ID", "crash-node"}};
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

// `request` makes the node kill itself (fault injection) mid-request: no answer comes, and the process
// is gone as after kill -9.
// Waits (bounded) until `sql` with `param` counts at least one row.
bool eventually(const std::string& sql, const std::string& param) {
  const auto deadline = std::chrono::steady_clock::now() + 40s;
  while (db_count(sql, param) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(50ms);
  }
  return true;
}

void dies_during(node_process& doomed, const std::function<mercato::test::http_reply()>& request) {
  bool answered = false;
  std::string what;
  try {
    auto r = request();
    answered = r.status != 0;
    what = std::to_string(r.status) + " " + r.body;
  } catch (const std::exception& e) {
    what = e.what();
  }
  CHECK_MESSAGE(!answered, "the node answered instead of dying: " << what);
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (doomed.running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  REQUIRE_FALSE(doomed.running());
  CHECK(doomed.stop(SIGKILL) == 128 + SIGKILL);
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
      dies_during(*doomed, [&] { return checkout(c, ada, cart, "tok_ok", "crash-" + step); });
    }
    REQUIRE(db_count("SELECT COUNT(*) FROM order_sagas WHERE customer_id = $1::uuid", ada.id) == 1);

    auto node = start_node("");
    http_client c{node->port()};
    // Resumed at start-up: the order ends paid without any client retry.
    REQUIRE_MESSAGE(
        eventually("SELECT COUNT(*) FROM order_sagas WHERE customer_id = $1::uuid AND step = 'paid'", ada.id),
        node->log());
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


TEST_CASE("a node killed in the middle of a cancel, a return's receipt or a refund: the restarted node finishes it, once") {
  int product_index = 20;
  for (const std::string step : {"cancel-begin", "cancel-refund", "cancel-restock", "receive-restock", "receive-refund",
                                 "refund-provider"}) {
    CAPTURE(step);
    const bool cancel = step.rfind("cancel", 0) == 0;
    const bool receive = step.rfind("receive", 0) == 0;
    customer ada;
    std::string product;
    std::string order;
    std::string payment;
    std::string return_id;
    std::int64_t total = 0;
    {
      // A paid order of 2 units (of 10); for a return it is shipped, delivered and 1 unit is sent back.
      auto setup = start_node("");
      http_client c{setup->port()};
      product = product_with_stock(c, database().dsn(), product_index++, 10);
      const auto cart = new_cart(c, ada);
      add(c, ada, cart, product, 2);
      auto bought = checkout(c, ada, cart, "tok_ok", "ops-" + step);
      REQUIRE_MESSAGE(bought.status == 201, bought.body);
      order = str(bought.json(), "id");
      payment = str(bought.json().at("payment"), "id");
      total = bought.json().at("total_amount").at("amount").to_number<std::int64_t>();
      if (receive) {
        const auto admin = admin_token(c, database().dsn());
        REQUIRE(post(c, "/api/v1/orders/" + order + "/ship", admin, "{}").status == 200);
        REQUIRE(post(c, "/api/v1/orders/" + order + "/deliver", admin).status == 200);
        auto ret = post(c, "/api/v1/orders/" + order + "/returns", ada.token,
                        R"({"items": [{"product_id": ")" + product + R"(", "quantity": 1}], "reason": "too big"})");
        REQUIRE_MESSAGE(ret.status == 201, ret.body);
        return_id = str(ret.json().at("returns").at(0), "id");
      }
      setup->stop(SIGTERM);
    }
    const auto refund_body = R"({"amount": {"amount": 150, "currency": "USD"}, "reason": "goodwill"})";
    auto act = [&](http_client& c, const std::string& admin) {
      if (cancel) {
        return post(c, "/api/v1/orders/" + order + "/cancel", ada.token);
      }
      if (receive) {
        return post(c, "/api/v1/orders/" + order + "/returns/" + return_id + "/receive", admin);
      }
      return post(c, "/api/v1/payments/" + payment + "/refunds", admin, refund_body, {{"Idempotency-Key", "crash-r"}});
    };
    {
      auto doomed = start_node(step);
      http_client c{doomed->port()};
      const auto admin = admin_token(c, database().dsn());
      dies_during(*doomed, [&] { return act(c, admin); });
    }

    // The restarted node finishes the operation by itself at start-up.
    auto node = start_node("");
    http_client c{node->port()};
    if (cancel) {
      REQUIRE_MESSAGE(eventually("SELECT COUNT(*) FROM orders WHERE id = $1::uuid AND status = 'canceled'", order),
                      node->log());
      CHECK(available_of(c, product) == 10);  // both units back, once
    } else if (receive) {
      REQUIRE_MESSAGE(
          eventually("SELECT COUNT(*) FROM orders WHERE id = $1::uuid AND status = 'partially_refunded'", order),
          node->log());
      CHECK(available_of(c, product) == 9);  // the returned unit back, once
    } else {
      REQUIRE_MESSAGE(eventually("SELECT COUNT(*) FROM payments WHERE id = $1::uuid AND pending_refunds = 0 "
                                 "AND refunded_amount = 1.50",
                                 payment),
                      node->log());
    }
    CHECK(reserved_of(c, product) == 0);
    CHECK(db_count("SELECT COUNT(*) FROM order_sagas WHERE order_id = $1::uuid AND step IN ('canceling', 'receiving')",
                   order) == 0);
    CHECK(db_count("SELECT COUNT(*) FROM payments WHERE id = $1::uuid AND pending_refunds > 0", payment) == 0);
    // Refunded once at the provider and once in the books.
    CHECK(db_count("SELECT COUNT(*) FROM sandbox_payment_operations WHERE operation = 'refund' AND approved "
                   "AND key LIKE '%' || $1 || '%'",
                   payment) == 1);
    CHECK(db_count("SELECT COUNT(*) FROM outbox WHERE event_type = 'RefundIssued' AND data->>'payment_id' = $1",
                   payment) == 1);
    const auto refunded = db_count("SELECT (refunded_amount * 100)::bigint FROM payments WHERE id = $1::uuid", payment);
    if (cancel) {
      CHECK(refunded == total);
    } else {
      CHECK(refunded > 0);
      CHECK(refunded < total);
    }
    // The client's repeat answers the finished operation and changes nothing.
    const auto admin = admin_token(c, database().dsn());
    auto again = act(c, admin);
    CHECK_MESSAGE((again.status == 200 || again.status == 201), again.body);
    CHECK(db_count("SELECT COUNT(*) FROM sandbox_payment_operations WHERE operation = 'refund' "
                   "AND key LIKE '%' || $1 || '%'",
                   payment) == 1);
    CHECK(db_count("SELECT (refunded_amount * 100)::bigint FROM payments WHERE id = $1::uuid", payment) == refunded);
    CHECK(available_of(c, product) == (cancel ? 10 : receive ? 9 : 8));
    node->stop(SIGTERM);
  }
}
