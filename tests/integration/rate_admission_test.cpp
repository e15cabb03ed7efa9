// Local admission against a node's credit, reconciled with Redis in batches (http/rate_admission),
// against the real Redis (MERCATO_TEST_REDIS_URL; a test fails when it is not reachable). The bound
// documented in docs/architecture.md ("Rate limits"): with N nodes each holding at most b tokens of a
// budget, the admissions of that budget exceed the exact limiter's by at most N x b, and a caller is
// refused at most N x b requests early. Most tests run the reconciliation by hand (interval 0) with
// explicit times, so each step is deterministic; one runs the reconciler threads.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "http/rate_admission.hpp"
#include "http/rate_limiter.hpp"
#include "persistence/redis_client.hpp"
#include "support/redis_servers.hpp"

using namespace mercato;
using namespace std::chrono_literals;
using http::rate_admission;
using http::rate_admission_options;
using http::rate_limit_charge;
using http::rate_limit_rule;
using http::rate_limit_verdict;
using http::rate_limiter;
using http::rate_limiter_options;
using persistence::redis_client;
using test::shared_redis;

namespace {

using wall = std::chrono::system_clock;

rate_limiter_options storage_for(const shared_redis& r) {
  rate_limiter_options o;
  o.key_prefix = r.prefix;
  return o;
}

rate_admission_options by_hand() {
  rate_admission_options o;
  o.interval = 0ms;  // no thread: the test reconciles
  return o;
}

// One node: its limiter (own Redis connection) and its admission.
struct node {
  node(const shared_redis& r, rate_admission_options o) : limiter(r.another_client(), storage_for(r)), admission(limiter, o) {}
  node(const shared_redis& r) : node(r, by_hand()) {}
  rate_limiter limiter;
  rate_admission admission;
};

// Decides one request on a hand-reconciled node: at once, or after the round trip it waits for.
rate_limit_verdict request(rate_admission& node, const std::vector<rate_limit_charge>& charges, wall::time_point t) {
  rate_limit_verdict v;
  std::optional<rate_limit_verdict> later;
  const auto outcome = node.admit(charges, t, v, [&](const rate_limit_verdict& x) { later = x; });
  REQUIRE(outcome != rate_admission::outcome::overloaded);
  if (outcome == rate_admission::outcome::waiting) {
    node.reconcile(t);
    REQUIRE_MESSAGE(later.has_value(), "a waiting request was not answered by the round trip");
    v = *later;
  }
  REQUIRE(v.any);
  return v;
}

// Requests alternate between the nodes until each has refused `refusals` in a row; returns how many
// were admitted. Every 16 requests a node also reconciles (what its thread does every 100 ms).
int hammer(std::vector<node*> nodes, const std::vector<rate_limit_charge>& charges, wall::time_point t, int refusals,
           const rate_limit_rule& rule, std::int64_t b) {
  int admitted = 0;
  std::vector<int> refused_in_a_row(nodes.size(), 0);
  for (std::size_t i = 0; i < 100'000; ++i) {
    const std::size_t k = i % nodes.size();
    auto& n = *nodes[k];
    const auto v = request(n.admission, charges, t);
    if (v.refused) {
      ++refused_in_a_row[k];
      CHECK(v.decision.retry_after >= 1s);
      CHECK(v.decision.remaining == 0);
    } else {
      refused_in_a_row[k] = 0;
      ++admitted;
    }
    if (i % 16 == 15) {
      n.admission.reconcile(t);
    }
    CHECK(n.admission.credit(rule, charges[0].key) <= b);  // a node never holds more than b
    bool done = true;
    for (int r : refused_in_a_row) {
      done = done && r >= refusals;
    }
    if (done) {
      return admitted;
    }
  }
  FAIL("the budget never ran out");
  return admitted;
}

}  // namespace

TEST_CASE("credit per rule: min(max_credit, limit / divisor); login, register and small budgets are exact") {
  rate_limiter local(nullptr);
  rate_admission_options o = by_hand();
  o.exact = {"auth_login"};
  rate_admission a(local, o);
  CHECK(a.credit_of({"big", 1'000'000, 1h}) == 1000);
  CHECK(a.credit_of({"anon", 500, 15min}) == 7);
  CHECK(a.credit_of({"small", 63, 15min}) == 0);
  CHECK(a.credit_of({"auth_login", 100'000, 15min}) == 0);
  CHECK(a.credit_of({"off", 0, 15min}) == 0);
  // Without Redis nothing needs a round trip: even an exact rule is decided by the local counters.
  CHECK_FALSE(a.exact({{nullptr, "x"}}));
  const rate_limit_rule login{"auth_login", 3, 15min};
  CHECK_FALSE(a.exact({{&login, "ip:1"}}));

  shared_redis r;
  rate_limiter shared(r.client, storage_for(r));
  rate_admission s(shared, o);
  CHECK(s.exact({{&login, "ip:1"}}));
  const rate_limit_rule anon{"anon", 500, 15min};
  CHECK_FALSE(s.exact({{&anon, "ip:1"}}));
  const rate_limit_rule small{"small", 63, 15min};
  CHECK(s.exact({{&anon, "ip:1"}, {&small, "ip:1"}}));
}

TEST_CASE("two nodes hold a shared budget within N x b (Redis)") {
  shared_redis r;
  node a(r);
  node b(r);
  const rate_limit_rule rule{"batched_shared", 1280, 1h};  // b = 1280 / 64 = 20
  const std::int64_t credit = 20;
  const std::int64_t limit = rule.limit;
  constexpr int nodes = 2;
  REQUIRE(a.admission.credit_of(rule) == credit);
  const std::vector<rate_limit_charge> charges{{&rule, "ip:198.51.100.7"}};
  const auto t0 = wall::now();

  // One instant, a full budget: the exact limiter admits `limit`. Batched, no more (every admission
  // spends a token Redis granted), and at most N x b fewer (tokens the other node still holds).
  const int first = hammer({&a, &b}, charges, t0, 3, rule, credit);
  MESSAGE("one instant: " << first << " admitted of " << limit);
  CHECK(first <= limit);
  CHECK(first >= limit - nodes * credit);
  // Nothing left in Redis: a third node is refused at once.
  node c(r);
  CHECK(request(c.admission, charges, t0).refused.has_value());

  // The worst case for overshoot: both nodes take their credit, then the budget recovers fully in
  // Redis (a window later) while they still hold it. A burst then gets the fresh budget plus what the
  // nodes held: at most limit + N x b, where the exact limiter admits `limit`.
  const auto t1 = t0 + rule.window;
  CHECK_FALSE(request(a.admission, charges, t1).refused.has_value());
  CHECK_FALSE(request(b.admission, charges, t1).refused.has_value());
  CHECK(a.admission.credit(rule, charges[0].key) == credit);
  CHECK(b.admission.credit(rule, charges[0].key) == credit);
  const auto t2 = t1 + rule.window;
  const int burst = hammer({&a, &b}, charges, t2, 3, rule, credit);
  MESSAGE("burst after a window with credit held: " << burst << " admitted; exact limiter: " << limit
                                                   << ", bound: " << limit + nodes * credit);
  CHECK(burst <= limit + nodes * credit);
  CHECK(burst >= limit - nodes * credit);
}

TEST_CASE("a refused request costs no budget; the refusal names the spent budget and when to retry") {
  shared_redis r;
  node a(r);
  const rate_limit_rule caller{"batched_caller", 640, 1h};  // b = 10, T = 5.625 s
  const rate_limit_rule global{"batched_global", 6400, 1h};  // b = 100
  const std::vector<rate_limit_charge> charges{{&caller, "ip:203.0.113.5"}, {&global, "ip:203.0.113.5"}};
  const auto t = wall::now();
  int admitted = 0;
  std::optional<rate_limit_verdict> refusal;
  for (int i = 0; i < 700 && !refusal; ++i) {
    const auto v = request(a.admission, charges, t);
    if (v.refused) {
      refusal = v;
    } else {
      ++admitted;
      CHECK(v.decision.limit == 640);  // the headers follow the budget closest to running out
      CHECK(v.decision.remaining == static_cast<std::uint32_t>(640 - admitted));
    }
  }
  REQUIRE(refusal);
  CHECK(admitted == 640);  // one node: exactly the budget
  CHECK(*refusal->refused == 0);
  CHECK(refusal->decision.limit == 640);
  CHECK(refusal->decision.retry_after == 6s);  // one emission interval, rounded up
  CHECK(refusal->decision.reset == 3600s);
  // The global budget paid for the admitted requests only: 6400 - 640 - what the node holds.
  a.admission.reconcile(t + 3s);  // idle: the node gives its credit back
  rate_limiter::batch_op peek{&global, a.limiter.redis_key(global, "ip:203.0.113.5"), 0};
  auto now_held = a.limiter.take_batches({peek}, t);
  REQUIRE(now_held);
  CHECK((*now_held)[0].remaining == 6400 - 640);
}

TEST_CASE("the key table is bounded: a flood of distinct callers leaves at most max_keys, no token lost") {
  shared_redis r;
  rate_admission_options o = by_hand();
  o.max_keys = 160;  // 16 shards of 10
  node n(r, o);
  const rate_limit_rule rule{"batched_flood", 640, 1h};  // b = 10
  const auto t = wall::now();
  constexpr int rounds = 10;
  constexpr int per_round = 500;
  int admitted = 0;
  for (int round = 0; round < rounds; ++round) {
    std::vector<std::optional<rate_limit_verdict>> answers(per_round);
    std::vector<std::vector<rate_limit_charge>> charges(per_round);
    for (int i = 0; i < per_round; ++i) {
      charges[static_cast<std::size_t>(i)] = {{&rule, "ip:10.0." + std::to_string(round) + "." + std::to_string(i)}};
      rate_limit_verdict v;
      auto& slot = answers[static_cast<std::size_t>(i)];
      const auto outcome = n.admission.admit(charges[static_cast<std::size_t>(i)], t, v,
                                             [&slot](const rate_limit_verdict& x) { slot = x; });
      REQUIRE(outcome == rate_admission::outcome::waiting);  // a new caller holds no credit
    }
    CHECK(n.admission.waiting() == per_round);
    n.admission.reconcile(t);  // one batched round trip for all of them
    for (const auto& a : answers) {
      REQUIRE(a.has_value());
      CHECK_FALSE(a->refused.has_value());
      admitted += a->refused ? 0 : 1;
    }
    CHECK(n.admission.keys() <= 160);
  }
  CHECK(admitted == rounds * per_round);
  n.admission.reconcile(t);  // the leftovers of callers that found no room go back

  // No token lost or made up: for every caller, Redis's remaining + the node's credit = 640 - 1.
  std::vector<rate_limiter::batch_op> peek;
  for (int round = 0; round < rounds; ++round) {
    for (int i = 0; i < per_round; ++i) {
      const auto key = "ip:10.0." + std::to_string(round) + "." + std::to_string(i);
      peek.push_back({&rule, n.limiter.redis_key(rule, key), 0});
    }
  }
  auto held = n.limiter.take_batches(peek, t);
  REQUIRE(held);
  int off = 0;
  std::int64_t credit_total = 0;
  for (std::size_t j = 0; j < peek.size(); ++j) {
    const auto caller = "ip:10.0." + std::to_string(j / per_round) + "." + std::to_string(j % per_round);
    const auto credit = n.admission.credit(rule, caller);
    credit_total += credit;
    off += (*held)[j].remaining + credit == 639 ? 0 : 1;
  }
  CHECK(off == 0);
  CHECK(credit_total <= 160 * 10);

  // Idle keys give their credit back and are forgotten.
  n.admission.reconcile(t + 3s);
  n.admission.reconcile(t + 3s + 200ms);
  CHECK(n.admission.keys() == 0);
  held = n.limiter.take_batches(peek, t);
  REQUIRE(held);
  off = 0;
  for (const auto& h : *held) {
    off += h.remaining == 639 ? 0 : 1;
  }
  CHECK(off == 0);
}

TEST_CASE("too many waiting requests: overloaded, nothing charged") {
  shared_redis r;
  rate_admission_options o = by_hand();
  o.max_waiting = 3;
  node n(r, o);
  const rate_limit_rule rule{"batched_queue", 640, 1h};
  const auto t = wall::now();
  int answered = 0;
  for (int i = 0; i < 3; ++i) {
    rate_limit_verdict v;
    CHECK(n.admission.admit({{&rule, "ip:q" + std::to_string(i)}}, t, v, [&](const rate_limit_verdict&) { ++answered; }) ==
          rate_admission::outcome::waiting);
  }
  rate_limit_verdict v;
  CHECK(n.admission.admit({{&rule, "ip:q9"}}, t, v, [&](const rate_limit_verdict&) { ++answered; }) ==
        rate_admission::outcome::overloaded);
  n.admission.reconcile(t);
  CHECK(answered == 3);
  auto held = n.limiter.take_batches({{&rule, n.limiter.redis_key(rule, "ip:q9"), 0}}, t);
  REQUIRE(held);
  CHECK((*held)[0].remaining == 640);
}

TEST_CASE("Redis refused: decided at once by the local counters; no Redis: local counters as before") {
  persistence::redis_options ro;
  ro.backoff_min = 500ms;
  rate_limiter dead_limiter(std::make_shared<redis_client>("redis://127.0.0.1:1", ro), {});
  rate_admission dead(dead_limiter, by_hand());
  rate_limiter none_limiter(nullptr);
  rate_admission none(none_limiter, by_hand());
  const rate_limit_rule rule{"batched_local", 640, 1h};
  const auto t = wall::now();
  for (auto* a : {&dead, &none}) {
    int admitted = 0;
    int waited = 0;
    for (int i = 0; i < 700; ++i) {
      rate_limit_verdict v;
      std::optional<rate_limit_verdict> later;
      const auto outcome = a->admit({{&rule, "ip:1"}}, t, v, [&](const rate_limit_verdict& x) { later = x; });
      if (outcome == rate_admission::outcome::waiting) {
        ++waited;
        a->reconcile(t);  // the round trip fails: the local counters answer
        REQUIRE(later);
        v = *later;
      }
      CHECK(v.decision.local);
      admitted += v.refused ? 0 : 1;
    }
    CHECK(admitted == 640);
    CHECK(waited <= 1);  // only the request that found Redis gone waited
  }
  CHECK(dead_limiter.using_fallback());
  CHECK(dead_limiter.fallback_decisions() >= 700);
  CHECK_FALSE(none_limiter.using_fallback());
}

TEST_CASE("two nodes with their reconciler threads, requests from four threads: within the bound") {
  shared_redis r;
  rate_admission_options o;  // the production reconciler: a thread, every 100 ms
  node a(r, o);
  node b(r, o);
  // A window so long that nothing refills while the test runs: the exact limiter would admit `limit`.
  const rate_limit_rule rule{"batched_threads", 2000, std::chrono::hours(24 * 30)};  // b = 31
  const std::int64_t credit = 31;
  REQUIRE(a.admission.credit_of(rule) == credit);
  const std::vector<rate_limit_charge> charges{{&rule, "user:hot"}};
  std::atomic<int> admitted{0};
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      auto& n = k % 2 == 0 ? a : b;
      int refused_in_a_row = 0;
      while (refused_in_a_row < 20) {
        rate_limit_verdict v;
        std::mutex mu;
        std::condition_variable cv;
        std::optional<rate_limit_verdict> later;
        const auto outcome = n.admission.admit(charges, wall::now(), v, [&](const rate_limit_verdict& x) {
          std::lock_guard<std::mutex> lk(mu);
          later = x;
          cv.notify_one();
        });
        if (outcome == rate_admission::outcome::waiting) {
          std::unique_lock<std::mutex> lk(mu);
          cv.wait(lk, [&] { return later.has_value(); });  // the reconciler's round trip answers
          v = *later;
        }
        if (outcome == rate_admission::outcome::overloaded || v.refused) {
          ++refused_in_a_row;
        } else {
          refused_in_a_row = 0;
          ++admitted;
        }
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  MESSAGE(admitted.load() << " admitted of 2000, " << a.admission.round_trips() + b.admission.round_trips()
                          << " round trips");
  CHECK(admitted.load() <= 2000);
  CHECK(admitted.load() >= 2000 - 2 * credit);
  CHECK(a.admission.credit(rule, "user:hot") <= credit);
  CHECK(b.admission.credit(rule, "user:hot") <= credit);
}

TEST_CASE("stop() answers the requests still waiting; later ones are decided by the local counters") {
  shared_redis r;
  node n(r);
  const rate_limit_rule rule{"batched_stop", 640, 1h};
  const auto t = wall::now();
  std::optional<rate_limit_verdict> answered;
  rate_limit_verdict v;
  REQUIRE(n.admission.admit({{&rule, "ip:s"}}, t, v, [&](const rate_limit_verdict& x) { answered = x; }) ==
          rate_admission::outcome::waiting);
  n.admission.stop();
  REQUIRE(answered.has_value());
  CHECK_FALSE(answered->refused.has_value());
  CHECK_FALSE(answered->decision.local);  // by the last round trip
  CHECK(n.admission.waiting() == 0);
  CHECK(n.admission.admit({{&rule, "ip:t"}}, t, v, [](const rate_limit_verdict&) {}) ==
        rate_admission::outcome::decided);
  CHECK(v.decision.local);
  CHECK_FALSE(v.refused.has_value());
  n.admission.stop();  // idempotent
}
