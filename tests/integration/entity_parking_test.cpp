// Parking (issue 4): quiet entities give up their actor and keep their committed state in the host;
// an aggressive park_after makes every step race with commands, crashes, fencing and passivation.
#include <doctest/doctest.h>

#include <atomic>
#include <initializer_list>
#include <random>
#include <thread>

#include <pqxx/pqxx>

#include "actors/protocol/atoms.hpp"
#include "persistence/migrations.hpp"
#include "supervisors/entity_env.hpp"
#include "support/cart_runtime.hpp"
#include "support/scratch_database.hpp"

using namespace mercato;
using namespace mercato::test;
using namespace std::chrono_literals;

namespace {
using fixture = cart_db_fixture;
std::array<std::uint64_t, 3> park_stats(cart_runtime& rt) {
  caf::scoped_actor self{rt.system()};
  std::array<std::uint64_t, 3> out{0, 0, 0};
  self->request(rt.router(), std::chrono::seconds(10), protocol::stats_atom::value, supervisors::parked_atom::value)
      .receive([&](std::uint64_t a, std::uint64_t p, std::uint64_t u) { out = {a, p, u}; }, [&](caf::error&) {});
  return out;
}
supervisors::runtime_limits fast_parking() {
  supervisors::runtime_limits l;
  l.park_after = 3ms;
  l.park_scan_interval = 1ms;
  return l;
}
void wait_parked(cart_runtime& rt, std::uint64_t n) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (park_stats(rt)[1] != n && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(2ms);
}
// Opens the carts one after another, each parked before the next opens (so the first is the least
// recently used parked state).
void open_and_park_in_turn(cart_runtime& rt, std::initializer_list<const char*> ids) {
  for (const char* id : ids) {
    REQUIRE(rt.ask(id, open_cmd()));
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (rt.stats().first != park_stats(rt)[1] && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(2ms);
    }
  }
}
}  // namespace

TEST_CASE_FIXTURE(fixture, "parked entities come back from memory with their committed state") {
  cart_runtime rt{{db.dsn(), "test-node", fast_parking()}};
  REQUIRE(rt.ask("c1", open_cmd()));
  for (int i = 0; i < 30; ++i) {
    wait_parked(rt, 1);
    CHECK(park_stats(rt)[1] == 1);
    auto r = rt.ask("c1", add_cmd(i % 3, 1));
    REQUIRE(r);
    CHECK(r->version == 2 + i);
  }
  wait_parked(rt, 1);
  auto got = rt.ask("c1", get_cmd());
  REQUIRE(got);
  CHECK(got->version == 31);
  REQUIRE(got->items.size() == 3);
  for (auto& l : got->items) CHECK(l.quantity == 10);
  CHECK(rt.counter("mercato_entity_activations_total") == 1);
  CHECK(park_stats(rt)[2] >= 30);
  CHECK(rt.stats().first == 1);
  CHECK(rt.counter("mercato_entities_active") == 1);
  CHECK(stored_version("c1") == 31);
  // passivation of a parked entity is immediate; it comes back from the snapshot
  wait_parked(rt, 1);
  CHECK(rt.passivate_idle(0ms) == 1);
  CHECK(rt.stats().first == 0);
  CHECK(rt.counter("mercato_entity_passivations_total") == 1);
  CHECK(rt.counter("mercato_entities_active") == 0);
  auto back = rt.ask("c1", get_cmd());
  REQUIRE(back);
  CHECK(back->version == 31);
  CHECK(rt.counter("mercato_entity_activations_total") == 2);
}

TEST_CASE_FIXTURE(fixture, "concurrent senders over parking entities: every command applied once, in order") {
  cart_runtime rt{{db.dsn(), "test-node", fast_parking()}};
  constexpr int carts = 12, senders = 8, per_sender = 40;
  for (int c = 0; c < carts; ++c) REQUIRE(rt.ask("k" + std::to_string(c), open_cmd()));
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int s = 0; s < senders; ++s) {
    threads.emplace_back([&, s] {
      std::mt19937 rng(s);
      for (int i = 0; i < per_sender; ++i) {
        const int c = (s + i) % carts;
        std::vector<caf::expected<protocol::cart_view>> dummy;
        auto r = rt.ask("k" + std::to_string(c), add_cmd(s, 1));
        if (r) ++ok;
        else MESSAGE(rt.system().render(r.error()));
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 6000));
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(ok.load() == senders * per_sender);
  int total = 0;
  for (int c = 0; c < carts; ++c) {
    auto g = rt.ask("k" + std::to_string(c), get_cmd());
    REQUIRE(g);
    int q = 0;
    for (auto& l : g->items) q += l.quantity;
    CHECK(g->version == 1 + q);
    CHECK(stored_version("k" + std::to_string(c)) == g->version);
    total += q;
  }
  CHECK(total == senders * per_sender);
  CHECK(rt.counter("mercato_entity_activations_total") == carts);
  MESSAGE("unparks " << park_stats(rt)[2]);
  CHECK(park_stats(rt)[2] > 0);
}

TEST_CASE_FIXTURE(fixture, "a crash of an unparked entity restarts it from its snapshot; poison dropped") {
  auto limits = fast_parking();
  limits.fault_injection = true;
  limits.poison_attempts = 3;
  limits.backoff_initial = 1ms;
  cart_runtime rt{{db.dsn(), "test-node", limits}};
  REQUIRE(rt.ask("cc", open_cmd()));
  REQUIRE(rt.ask("cc", add_cmd(1)));
  wait_parked(rt, 1);
  auto crashed = rt.ask_message("cc", caf::make_message(protocol::fault_atom::value), 15s);
  REQUIRE_FALSE(crashed);
  CHECK(error_code(crashed.error()) == "entity_failed");
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (rt.counter("mercato_entity_restarts_total") < 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  CHECK(rt.counter("mercato_entity_restarts_total") == 3);
  wait_parked(rt, 1);
  auto after = rt.ask("cc", add_cmd(2));
  REQUIRE(after);
  CHECK(after->version == 3);
  CHECK(after->items.size() == 2);
  CHECK(rt.counter("mercato_entities_active") == 1);
}

TEST_CASE_FIXTURE(fixture, "a parked entity on a fenced node: the write is rejected, then it reloads") {
  cart_runtime old_node{{db.dsn(), "node-x", fast_parking()}};
  REQUIRE(old_node.ask("cf", open_cmd()));
  wait_parked(old_node, 1);
  cart_runtime new_node{{db.dsn(), "node-x", fast_parking()}};
  auto fresh = new_node.ask("cf", add_cmd(1));
  REQUIRE_MESSAGE(fresh, error_code(fresh.error()));
  auto stale = old_node.ask("cf", add_cmd(2));
  REQUIRE_FALSE(stale);
  CHECK(error_code(stale.error()) == "fenced");
  CHECK(stored_version("cf") == 2);
  // the failed write stopped the entity without parking: the next read comes from the database
  auto cur = old_node.ask("cf", get_cmd());
  REQUIRE_MESSAGE(cur, error_code(cur.error()));
  CHECK(cur->version == 2);
  CHECK(old_node.counter("mercato_entity_activations_total") == 2);
}

TEST_CASE_FIXTURE(fixture, "passivation asked while parking completes; many entities; gauge and stats agree") {
  cart_runtime rt{{db.dsn(), "test-node", fast_parking()}};
  for (int i = 0; i < 300; ++i) REQUIRE(rt.ask("m" + std::to_string(i), get_cmd()).error());
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 300; i += 7) (void)rt.ask("m" + std::to_string(i), get_cmd());
    rt.passivate_idle(0ms);
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (rt.stats().first != 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
    CHECK(rt.stats().first == 0);
    CHECK(rt.counter("mercato_entities_active") == 0);
    CHECK(park_stats(rt)[1] == 0);
    for (int i = 0; i < 300; ++i) REQUIRE(rt.ask("m" + std::to_string(i), get_cmd()).error());
    CHECK(rt.stats().first == 300);
  }
}

TEST_CASE_FIXTURE(fixture, "a parked state outlives passivate_after and is dropped after keep_parked") {
  auto limits = fast_parking();
  limits.passivate_after = 200ms;  // a live entity idle this long would stop and forget its state
  limits.idle_scan_interval = 5ms;
  limits.keep_parked = 1h;
  {
    cart_runtime rt{{db.dsn(), "test-node", limits, 1}};
    REQUIRE(rt.ask("p1", open_cmd()));
    wait_parked(rt, 1);
    REQUIRE(park_stats(rt)[1] == 1);
    // Three times passivate_after, scanned every 5 ms: still parked, and back without a database read.
    std::this_thread::sleep_for(600ms);
    CHECK(park_stats(rt)[1] == 1);
    CHECK(rt.counter("mercato_entity_passivations_total") == 0);
    auto r = rt.ask("p1", add_cmd(1, 2));
    REQUIRE(r);
    CHECK(r->version == 2);
    CHECK(rt.counter("mercato_entity_activations_total") == 1);
  }
  limits.keep_parked = 50ms;
  cart_runtime rt{{db.dsn(), "test-node", limits, 1}};
  REQUIRE(rt.ask("p2", open_cmd()));
  wait_parked(rt, 1);
  // Dropped by the idle scan once keep_parked has passed: the next command reads the snapshot.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (rt.stats().first != 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(2ms);
  CHECK(rt.stats().first == 0);
  CHECK(park_stats(rt)[1] == 0);
  CHECK(rt.counter("mercato_entity_passivations_total") == 1);
  auto back = rt.ask("p2", add_cmd(1, 1));
  REQUIRE(back);
  CHECK(back->version == 2);
  CHECK(rt.counter("mercato_entity_activations_total") == 2);
}

TEST_CASE_FIXTURE(fixture, "beyond max_parked the least recently used parked states are dropped") {
  auto limits = fast_parking();
  limits.max_parked = 2;
  cart_runtime rt{{db.dsn(), "test-node", limits, 1}};  // one host: its share is the whole cap
  open_and_park_in_turn(rt, {"c1", "c2", "c3"});  // c1 is the least recently used
  wait_parked(rt, 2);
  CHECK(park_stats(rt)[1] == 2);
  CHECK(rt.stats().first == 2);
  CHECK(rt.counter("mercato_entity_passivations_total") == 1);
  CHECK(rt.counter("mercato_entities_active") == 2);
  CHECK(rt.counter("mercato_entity_activations_total") == 3);
  // c3 was kept: back from memory. c1 was dropped: back from its snapshot, with its state.
  REQUIRE(rt.ask("c3", add_cmd(1, 1)));
  CHECK(rt.counter("mercato_entity_activations_total") == 3);
  auto c1 = rt.ask("c1", add_cmd(2, 3));
  REQUIRE(c1);
  CHECK(c1->version == 2);
  CHECK(rt.counter("mercato_entity_activations_total") == 4);
}

TEST_CASE_FIXTURE(fixture, "the parked gauges follow every park, unpark and drop, to zero") {
  cart_runtime rt{{db.dsn(), "test-node", fast_parking(), 1}};
  REQUIRE(rt.ask("g1", open_cmd()));
  wait_parked(rt, 1);
  CHECK(rt.counter("mercato_entities_parked") == 1);
  const double one = rt.counter("mercato_entities_parked_bytes");
  // At least the table node and the encoded state; an open cart's state is a few hundred bytes.
  CHECK(one > 100);
  CHECK(one < 2000);
  REQUIRE(rt.ask("g2", open_cmd()));
  wait_parked(rt, 2);
  CHECK(rt.counter("mercato_entities_parked") == 2);
  CHECK(rt.counter("mercato_entities_parked_bytes") == doctest::Approx(2 * one).epsilon(0.05));
  // Unparked by a command: it leaves the gauges while live, and comes back larger (one more line).
  REQUIRE(rt.ask("g1", add_cmd(1, 1)));
  wait_parked(rt, 2);
  CHECK(rt.counter("mercato_entities_parked") == 2);
  CHECK(rt.counter("mercato_entities_parked_bytes") > 2 * one);
  CHECK(rt.passivate_idle(0ms) == 2);
  CHECK(rt.counter("mercato_entities_parked") == 0);
  CHECK(rt.counter("mercato_entities_parked_bytes") == 0);
}

TEST_CASE_FIXTURE(fixture, "beyond max_parked_bytes the least recently used parked states are dropped") {
  // What one open cart's parked state counts for, measured on a runtime without caps.
  double one = 0;
  {
    cart_runtime probe{{db.dsn(), "test-node", fast_parking(), 1}};
    REQUIRE(probe.ask("m1", open_cmd()));
    wait_parked(probe, 1);
    one = probe.counter("mercato_entities_parked_bytes");
  }
  REQUIRE(one > 0);
  auto limits = fast_parking();
  limits.max_parked_bytes = static_cast<std::size_t>(2.5 * one);  // room for two, not three
  cart_runtime rt{{db.dsn(), "test-node", limits, 1}};             // one host: its share is the whole budget
  open_and_park_in_turn(rt, {"c1", "c2", "c3"});  // c1 is the least recently used
  wait_parked(rt, 2);
  CHECK(park_stats(rt)[1] == 2);
  CHECK(rt.counter("mercato_entities_parked") == 2);
  CHECK(rt.counter("mercato_entities_parked_bytes") <= 2.5 * one);
  CHECK(rt.counter("mercato_entity_passivations_total") == 1);
  CHECK(rt.counter("mercato_entity_activations_total") == 3);
  // c3 was kept: back from memory. c1 was dropped: back from its snapshot, with its state.
  REQUIRE(rt.ask("c3", add_cmd(1, 1)));
  CHECK(rt.counter("mercato_entity_activations_total") == 3);
  auto c1 = rt.ask("c1", get_cmd());
  REQUIRE(c1);
  CHECK(c1->version == 1);
  CHECK(rt.counter("mercato_entity_activations_total") == 4);
}
