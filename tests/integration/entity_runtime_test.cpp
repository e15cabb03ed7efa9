// The entity runtime with the cart entity on a real PostgreSQL: activation, buffering, single
// activation under a burst, durable acknowledgements, passivation, crash restart, poison messages,
// escalation, old snapshot schemas and fencing.
#include <doctest/doctest.h>

#include <atomic>
#include <thread>

#include <pqxx/pqxx>

#include "actors/protocol/atoms.hpp"
#include "persistence/migrations.hpp"
#include "support/cart_runtime.hpp"
#include "support/scratch_database.hpp"

using namespace mercato;
using namespace mercato::test;
using namespace std::chrono_literals;

namespace {

using fixture = cart_db_fixture;

}  // namespace

TEST_CASE_FIXTURE(fixture, "commands are acknowledged only once durable, with the new version") {
  cart_runtime rt{{db.dsn()}};
  auto opened = rt.ask("cart-a", open_cmd());
  REQUIRE_MESSAGE(opened, rt.system().render(opened.error()));
  CHECK(opened->version == 1);
  CHECK(stored_version("cart-a") == 1);

  auto added = rt.ask("cart-a", add_cmd(1, 2));
  REQUIRE(added);
  CHECK(added->version == 2);
  CHECK(added->subtotal == 2 * 1001);
  // The reply came after the commit: snapshot, events and projection are all there.
  CHECK(stored_version("cart-a") == 2);
  CHECK(count("SELECT COUNT(*) FROM outbox WHERE aggregate_kind = 'cart' AND aggregate_id = 'cart-a'") == 2);
  CHECK(count("SELECT COUNT(*) FROM outbox WHERE event_type = 'CartItemAdded' AND "
              "metadata->>'correlation_id' = 'req-add-1'") == 1);
  CHECK(count("SELECT subtotal::int FROM carts WHERE id = 'cart-a'") == 2002);
  CHECK(count("SELECT item_count FROM carts WHERE id = 'cart-a'") == 2);

  // Rejected commands change nothing.
  CHECK(error_code(rt.ask("cart-a", open_cmd()).error()) == "conflict");
  protocol::cart_set_quantity bad;
  bad.meta.user_id = test_owner;
  bad.product_id = demo_line(1).product_id;
  bad.quantity = 5000;
  CHECK(error_code(rt.ask("cart-a", bad).error()) == "invalid");
  CHECK(error_code(rt.ask("cart-missing", get_cmd()).error()) == "not_found");
  // Only the owner reaches the cart: anyone else is told it does not exist (BOLA), an admin may read.
  CHECK(error_code(rt.ask("cart-a", get_cmd("7f1a2b3c-0000-4000-8000-00000000beef")).error()) == "not_found");
  auto stranger_add = add_cmd(9);
  stranger_add.meta.user_id = "7f1a2b3c-0000-4000-8000-00000000beef";
  CHECK(error_code(rt.ask("cart-a", stranger_add).error()) == "not_found");
  auto admin_get = get_cmd("7f1a2b3c-0000-4000-8000-00000000a0a0");
  admin_get.meta.admin = true;
  CHECK(rt.ask("cart-a", admin_get));
  auto stale = add_cmd(9);
  stale.meta.expected_version = 1;  // If-Match on a version that is gone
  CHECK(error_code(rt.ask("cart-a", stale).error()) == "precondition_failed");
  CHECK(stored_version("cart-a") == 2);
  auto got = rt.ask("cart-a", get_cmd());
  REQUIRE(got);
  CHECK(got->version == 2);
  CHECK(got->items.size() == 1);
}

TEST_CASE_FIXTURE(fixture, "a burst at a cold entity activates it once and applies every command in order") {
  {
    cart_runtime rt{{db.dsn()}};
    REQUIRE(rt.ask("cart-burst", open_cmd()));
  }
  cart_runtime rt{{db.dsn()}};  // a fresh node: the cart is cold
  constexpr int senders = 8;
  constexpr int per_sender = 25;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int s = 0; s < senders; ++s) {
    threads.emplace_back([&, s] {
      for (int i = 0; i < per_sender; ++i) {
        if (rt.ask("cart-burst", add_cmd(s, 1))) {
          ++ok;
        }
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  CHECK(ok.load() == senders * per_sender);
  CHECK(rt.counter("mercato_entity_activations_total") == 1);
  auto got = rt.ask("cart-burst", get_cmd());
  REQUIRE(got);
  CHECK(got->version == 1 + senders * per_sender);
  CHECK(got->items.size() == senders);
  for (const auto& l : got->items) {
    CHECK(l.quantity == per_sender);
  }
  CHECK(stored_version("cart-burst") == 1 + senders * per_sender);
}

TEST_CASE_FIXTURE(fixture, "idle entities passivate and come back from their snapshot") {
  cart_runtime rt{{db.dsn()}};
  for (int i = 0; i < 20; ++i) {
    REQUIRE(rt.ask("cart-p" + std::to_string(i), open_cmd()));
  }
  REQUIRE(rt.ask("cart-p0", add_cmd(3, 4)));
  CHECK(rt.stats().first == 20);
  CHECK(rt.passivate_idle(0ms) == 20);
  // Passivation completes asynchronously; poll the hosts' counts.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (rt.stats().first != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  CHECK(rt.stats().first == 0);
  CHECK(rt.counter("mercato_entity_passivations_total") == 20);
  CHECK(rt.counter("mercato_entities_active") == 0);

  auto back = rt.ask("cart-p0", get_cmd());
  REQUIRE(back);
  CHECK(back->version == 2);
  REQUIRE(back->items.size() == 1);
  CHECK(back->items[0].quantity == 4);
  CHECK(rt.counter("mercato_entity_activations_total") == 21);
}

TEST_CASE_FIXTURE(fixture, "a crash restarts the entity from its snapshot; a poison message is dropped after K tries") {
  supervisors::runtime_limits limits;
  limits.fault_injection = true;
  limits.poison_attempts = 3;
  limits.backoff_initial = 1ms;
  cart_runtime rt{{db.dsn(), "test-node", limits}};
  REQUIRE(rt.ask("cart-c", open_cmd()));
  REQUIRE(rt.ask("cart-c", add_cmd(1)));

  auto crashed = rt.ask_message("cart-c", caf::make_message(protocol::fault_atom::value), 15s);
  REQUIRE_FALSE(crashed);
  CHECK(error_code(crashed.error()) == "entity_failed");
  // The answer goes out when the third crash is reported; the host counts that restart when the
  // entity's down message follows, so wait for it.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (rt.counter("mercato_entity_restarts_total") < 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  CHECK(rt.counter("mercato_entity_restarts_total") == 3);
  CHECK(rt.counter("mercato_entity_poison_messages_total") == 1);

  // Committed state survived every restart, and the entity works again.
  auto after = rt.ask("cart-c", add_cmd(2));
  REQUIRE(after);
  CHECK(after->version == 3);
  CHECK(after->items.size() == 2);
  // Other entities were never disturbed.
  REQUIRE(rt.ask("cart-other", open_cmd()));
}

TEST_CASE_FIXTURE(fixture, "too many restarts escalate: the host restarts and committed state is kept") {
  supervisors::runtime_limits limits;
  limits.fault_injection = true;
  limits.poison_attempts = 10;
  limits.restart_intensity = 2;
  limits.backoff_initial = 1ms;
  cart_runtime rt{{db.dsn(), "test-node", limits, 1}};
  REQUIRE(rt.ask("cart-e", open_cmd()));
  REQUIRE(rt.ask("cart-e", add_cmd(5)));
  // The third crash within the window makes the (only) host quit; the router restarts it. The
  // faulty request is answered (not left to its timeout), and the next one waits for the new host.
  auto crashed = rt.ask_message("cart-e", caf::make_message(protocol::fault_atom::value), 3s);
  REQUIRE_FALSE(crashed);
  CHECK(error_code(crashed.error()) == "entity_restarting");
  auto after = rt.ask("cart-e", get_cmd());
  REQUIRE_MESSAGE(after, rt.system().render(after.error()));
  CHECK(after->version == 2);
  CHECK(rt.counter("mercato_entity_restarts_total") >= 3);
}

TEST_CASE_FIXTURE(fixture, "a version 1 snapshot still loads") {
  {
    pqxx::connection conn{db.dsn()};
    pqxx::work tx{conn};
    // Written by the first release: "lines" with abbreviated keys.
    tx.exec(
        "INSERT INTO entity_snapshots (kind, id, version, owner_epoch, state) VALUES ('cart', 'cart-v1', 7, 1, "
        "'{\"schema\":1,\"owner\":\"7f1a2b3c-0000-4000-8000-000000000009\",\"lines\":[{\"product\":\"p-1\","
        "\"sku\":\"SKU-1\",\"name\":\"Lamp\",\"qty\":2,\"price\":1999}]}')");
    tx.commit();
  }
  cart_runtime rt{{db.dsn()}};
  auto got = rt.ask("cart-v1", get_cmd("7f1a2b3c-0000-4000-8000-000000000009"));
  REQUIRE_MESSAGE(got, rt.system().render(got.error()));
  CHECK(got->version == 7);
  CHECK(got->owner_user_id == "7f1a2b3c-0000-4000-8000-000000000009");
  REQUIRE(got->items.size() == 1);
  CHECK(got->items[0].quantity == 2);
  CHECK(got->subtotal == 3998);
  // The next write stores the current schema.
  auto add = add_cmd(1);
  add.meta.user_id = "7f1a2b3c-0000-4000-8000-000000000009";
  REQUIRE(rt.ask("cart-v1", add));
  pqxx::connection conn{db.dsn()};
  pqxx::nontransaction tx{conn};
  CHECK(tx.exec("SELECT state->>'schema' FROM entity_snapshots WHERE id = 'cart-v1'")[0][0].as<std::string>() == "2");
}

TEST_CASE_FIXTURE(fixture, "a write under a stale lease epoch is fenced and never overwrites newer state") {
  cart_runtime old_node{{db.dsn(), "node-x"}};
  REQUIRE(old_node.ask("cart-f", open_cmd()));
  // The same node id starting again takes the leases with a higher epoch ...
  cart_runtime new_node{{db.dsn(), "node-x"}};
  CHECK(new_node.epoch() > old_node.epoch());
  REQUIRE(new_node.ask("cart-f", add_cmd(1)));
  // ... so the old incarnation's write is rejected and its entity stops.
  auto stale = old_node.ask("cart-f", add_cmd(2));
  REQUIRE_FALSE(stale);
  CHECK(error_code(stale.error()) == "fenced");
  auto current = new_node.ask("cart-f", get_cmd());
  REQUIRE(current);
  CHECK(current->version == 2);
  CHECK(current->items.size() == 1);
  CHECK(stored_version("cart-f") == 2);
}
