// The edge's bridge to the entities (http::entity_bridge): every ask answered once, by a fixed pool of
// bridge actors rather than an actor per request.
#include <doctest/doctest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <caf/all.hpp>

#include "actors/protocol/cart_messages.hpp"
#include "actors/protocol/errors.hpp"
#include "actors/protocol/protocol.hpp"
#include "actors/protocol/type_ids.hpp"
#include "http/entity_bridge.hpp"

using namespace mercato;
using namespace std::chrono_literals;

namespace {

using release_atom = caf::atom_constant<caf::atom("release")>;

// What the test's router saw and what the callbacks got, behind one mutex.
struct observed {
  std::mutex m;
  std::condition_variable cv;
  std::size_t held = 0;
  std::vector<std::string> answered;  // the cart id of each view a callback got
  std::vector<caf::error> failed;

  template <class Pred>
  bool wait(Pred pred) {
    std::unique_lock<std::mutex> lock(m);
    return cv.wait_for(lock, 30s, pred);
  }
};

// A router that holds every request until told to release them all; "missing" is answered with not_found.
caf::behavior holding_router(caf::event_based_actor* self, observed* obs) {
  auto held = std::make_shared<std::vector<std::pair<caf::response_promise, std::string>>>();
  return {
      [self, obs, held](protocol::to_entity_atom, const std::string& id, const caf::message&) -> caf::result<protocol::cart_view> {
        if (id == "missing") {
          return caf::make_error(protocol::errc::not_found, std::string("no such cart"));
        }
        held->emplace_back(self->make_response_promise(), id);
        {
          std::lock_guard<std::mutex> lock(obs->m);
          obs->held = held->size();
        }
        obs->cv.notify_all();
        return caf::delegated<protocol::cart_view>{};
      },
      [held](release_atom) {
        for (auto& [promise, id] : *held) {
          protocol::cart_view v;
          v.id = id;
          promise.deliver(v);
        }
        held->clear();
      },
  };
}

struct bridge_fixture {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  observed obs;
  caf::actor router;

  bridge_fixture() {
    protocol::register_protocol(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
    router = sys->spawn(holding_router, &obs);
  }
  ~bridge_fixture() {
    caf::anon_send_exit(router, caf::exit_reason::user_shutdown);
    sys->await_all_actors_done();
  }

  void ask(const http::entity_bridge& bridge, const std::string& id) {
    bridge.ask<protocol::cart_view>("cart", id, caf::make_message(protocol::cart_get{}),
                                    [this](caf::expected<protocol::cart_view> r) {
                                      {
                                        std::lock_guard<std::mutex> lock(obs.m);
                                        if (r) {
                                          obs.answered.push_back(r->id);
                                        } else {
                                          obs.failed.push_back(r.error());
                                        }
                                      }
                                      obs.cv.notify_all();
                                    });
  }
};

}  // namespace

TEST_CASE("200 requests in flight at once are carried by the bridge's fixed pool of actors, each answered once") {
  bridge_fixture f;
  http::entity_bridge bridge(*f.sys, [&f](std::string_view) { return f.router; }, 30s, 4);
  const auto running_before = f.sys->registry().running();

  constexpr std::size_t n = 200;
  for (std::size_t i = 0; i < n; ++i) {
    f.ask(bridge, "cart-" + std::to_string(i));
  }
  // Every request is at the router and none is answered: all 200 are really in flight now.
  REQUIRE(f.obs.wait([&] { return f.obs.held == n; }));
  CHECK(f.sys->registry().running() == running_before);  // an actor per request would show here

  caf::anon_send(f.router, release_atom::value);
  REQUIRE(f.obs.wait([&] { return f.obs.answered.size() == n; }));
  std::set<std::string> distinct(f.obs.answered.begin(), f.obs.answered.end());
  CHECK(distinct.size() == n);
  CHECK(f.obs.failed.empty());
  bridge.stop();
}

TEST_CASE("an entity's error reaches the ask's callback as that error") {
  bridge_fixture f;
  http::entity_bridge bridge(*f.sys, [&f](std::string_view) { return f.router; }, 30s, 2);
  f.ask(bridge, "missing");
  REQUIRE(f.obs.wait([&] { return f.obs.failed.size() == 1; }));
  CHECK(f.obs.failed[0] == protocol::errc::not_found);
  CHECK(f.obs.answered.empty());
  bridge.stop();
}

TEST_CASE("a request the router does not answer in time ends with request_timeout") {
  bridge_fixture f;
  http::entity_bridge bridge(*f.sys, [&f](std::string_view) { return f.router; }, 50ms, 2);
  f.ask(bridge, "slow");
  REQUIRE(f.obs.wait([&] { return f.obs.failed.size() == 1; }));
  CHECK(f.obs.failed[0] == caf::sec::request_timeout);
  bridge.stop();
  caf::anon_send(f.router, release_atom::value);  // the late answer goes nowhere
}

TEST_CASE("the bridge's own timeout: each ask ends once, an answered ask is never timed out, a late reply is dropped") {
  bridge_fixture f;
  // One bridge actor, so every job below shares its deadline queue and its timer.
  http::entity_bridge bridge(*f.sys, [&f](std::string_view) { return f.router; }, 300ms, 1);
  f.ask(bridge, "early");
  REQUIRE(f.obs.wait([&] { return f.obs.held == 1; }));
  caf::anon_send(f.router, release_atom::value);
  REQUIRE(f.obs.wait([&] { return f.obs.answered.size() == 1; }));

  // "early" is still in the queue, ahead of these; the sweep that ends them passes it by.
  f.ask(bridge, "slow-1");
  f.ask(bridge, "slow-2");
  REQUIRE(f.obs.wait([&] { return f.obs.failed.size() == 2; }));
  CHECK(f.obs.failed[0] == caf::sec::request_timeout);
  CHECK(f.obs.failed[1] == caf::sec::request_timeout);

  // The late replies reach the bridge actor before the probe's (one router sends them all, in order);
  // once the probe is answered, they have been dropped, not handed to the callbacks.
  caf::anon_send(f.router, release_atom::value);
  f.ask(bridge, "probe");
  REQUIRE(f.obs.wait([&] { return f.obs.held == 1; }));
  caf::anon_send(f.router, release_atom::value);
  REQUIRE(f.obs.wait([&] { return f.obs.answered.size() == 2; }));
  CHECK(f.obs.answered == std::vector<std::string>{"early", "probe"});
  CHECK(f.obs.failed.size() == 2);
  bridge.stop();
}

TEST_CASE("a stopped bridge ends its actors, so the actor system can wait for all of its actors") {
  bridge_fixture f;
  const auto running_before = f.sys->registry().running();
  {
    http::entity_bridge bridge(*f.sys, [&f](std::string_view) { return f.router; }, 30s, 3);
    CHECK(f.sys->registry().running() == running_before + 3);
    bridge.stop();
    f.ask(bridge, "after-stop");  // not taken: never reaches the router
  }
  // The bridge's actors end (their exits are asynchronous); the router is the one actor left.
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (f.sys->registry().running() != running_before && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  CHECK(f.sys->registry().running() == running_before);
  CHECK(f.obs.held == 0);
}
