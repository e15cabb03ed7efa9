// The GCRA rate limiter and the login back-off against a real Redis (scripts/services start --profile
// test: redis://127.0.0.1:56380, or MERCATO_TEST_REDIS_URL), and their local fallback. Every test
// uses its own key prefix and removes its keys at the end; a test that must stop Redis starts a
// private redis-server child instead of touching the shared one.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "http/rate_limiter.hpp"
#include "persistence/redis_client.hpp"
#include "support/node_process.hpp"
#include "support/redis_servers.hpp"

using namespace mercato;
using namespace std::chrono_literals;
using http::login_backoff;
using http::login_backoff_options;
using http::rate_limit_rule;
using http::rate_limiter;
using http::rate_limiter_options;
using persistence::redis_client;
using persistence::redis_options;
using test::blackhole;
using test::private_redis;

namespace {

using steady = std::chrono::steady_clock;
using wall = std::chrono::system_clock;

using test::shared_redis;

rate_limiter_options opts_for(const shared_redis& r) {
  rate_limiter_options o;
  o.key_prefix = r.prefix;
  return o;
}

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout, std::chrono::milliseconds step = 10ms) {
  const auto deadline = steady::now() + timeout;
  while (steady::now() < deadline) {
    if (pred()) {
      return true;
    }
    std::this_thread::sleep_for(step);
  }
  return pred();
}

// limit then denied; shared by the Redis and the local variants.
void check_exact_budget(rate_limiter& lim, bool expect_local) {
  const rate_limit_rule rule{"five_per_minute", 5, 60s};
  const auto now = wall::now();
  for (std::uint32_t i = 0; i < 5; ++i) {
    auto d = lim.check(rule, "client-1", now);
    CAPTURE(i);
    CHECK(d.allowed);
    CHECK(d.limit == 5);
    CHECK(d.remaining == 4 - i);
    CHECK(d.retry_after == 0s);
    CHECK(d.reset == std::chrono::seconds(12 * (i + 1)));
    CHECK(d.local == expect_local);
  }
  auto denied = lim.check(rule, "client-1", now);
  CHECK_FALSE(denied.allowed);
  CHECK(denied.remaining == 0);
  CHECK(denied.retry_after == 12s);  // one emission interval: 60 s / 5
  CHECK(denied.reset == 60s);
  CHECK(denied.local == expect_local);

  // Still denied a little later, with a shorter wait; one request fits after the interval.
  auto later = lim.check(rule, "client-1", now + 11s);
  CHECK_FALSE(later.allowed);
  CHECK(later.retry_after == 1s);
  auto after = lim.check(rule, "client-1", now + 12s);
  CHECK(after.allowed);
  CHECK(after.remaining == 0);
  CHECK_FALSE(lim.check(rule, "client-1", now + 12s).allowed);
  // The whole budget is back after the window.
  auto full = lim.check(rule, "client-1", now + 12s + 60s);
  CHECK(full.allowed);
  CHECK(full.remaining == 4);

  // Independent keys and rules.
  CHECK(lim.check(rule, "client-2", now).allowed);
  const rate_limit_rule other{"other_rule", 1, 60s};
  CHECK(lim.check(other, "client-1", now).allowed);
  CHECK_FALSE(lim.check(other, "client-1", now).allowed);
}

}  // namespace

TEST_CASE("default rules are the seed's") {
  const auto r = http::default_rules();
  CHECK(r.enabled);
  auto is = [](const rate_limit_rule& rule, std::uint32_t limit, std::chrono::milliseconds window) {
    return rule.enabled() && rule.limit == limit && rule.window == window && !rule.name.empty();
  };
  CHECK(is(r.global, 1000, 15min));
  CHECK(is(r.login, 10, 15min));
  CHECK(is(r.register_account, 5, 60min));
  CHECK(is(r.orders, 100, 15min));
  CHECK(is(r.search, 500, 15min));
  CHECK(is(r.authenticated, 2000, 15min));
  CHECK(is(r.anonymous, 500, 15min));
  CHECK(r.login_backoff.free_failures > 0);
  // Names are distinct: they separate the Redis keys.
  std::vector<std::string> names{r.global.name, r.login.name, r.register_account.name, r.orders.name,
                                 r.search.name, r.authenticated.name, r.anonymous.name};
  std::sort(names.begin(), names.end());
  CHECK(std::adjacent_find(names.begin(), names.end()) == names.end());

  rate_limiter lim(nullptr);
  const rate_limit_rule off{"off", 0, 60s};
  for (int i = 0; i < 10; ++i) {
    CHECK(lim.check(off, "k").allowed);
  }
}

TEST_CASE("limiter on Redis: exactly `limit` per window, then denied with Retry-After") {
  shared_redis r;
  rate_limiter lim(r.client, opts_for(r));
  check_exact_budget(lim, /*expect_local=*/false);
  CHECK_FALSE(lim.using_fallback());
  CHECK(lim.fallback_decisions() == 0);
  CHECK(lim.local_keys() == 0);

  // The key carries a TTL no longer than the window, so Redis does not accumulate keys.
  const rate_limit_rule rule{"five_per_minute", 5, 60s};
  auto ttl = r.client->command({"PTTL", lim.redis_key(rule, "client-2")});
  REQUIRE(ttl);
  CHECK(ttl->integer > 0);
  CHECK(ttl->integer <= 60'000);
  CHECK(lim.redis_key(rule, "client-2") == r.prefix + "rl:five_per_minute:client-2");
}

TEST_CASE("limiter on Redis: the seed's login rule") {
  shared_redis r;
  rate_limiter lim(r.client, opts_for(r));
  const auto rule = http::default_rules().login;  // 10 per 15 min
  const auto now = wall::now();
  for (int i = 0; i < 10; ++i) {
    CHECK(lim.check(rule, "203.0.113.9", now).allowed);
  }
  auto d = lim.check(rule, "203.0.113.9", now);
  CHECK_FALSE(d.allowed);
  CHECK(d.remaining == 0);
  CHECK(d.retry_after == 90s);
  CHECK(d.reset == 900s);
}

TEST_CASE("limiter: two nodes share one budget through Redis") {
  shared_redis r;
  rate_limiter node_a(r.client, opts_for(r));
  rate_limiter node_b(std::make_shared<redis_client>(test::shared_redis_url()), opts_for(r));
  const rate_limit_rule rule{"shared", 10, 60s};
  const auto now = wall::now();
  int allowed = 0;
  for (int i = 0; i < 20; ++i) {
    auto& lim = i % 2 == 0 ? node_a : node_b;
    if (lim.check(rule, "user-42", now).allowed) {
      ++allowed;
    }
  }
  CHECK(allowed == 10);
  CHECK_FALSE(node_a.check(rule, "user-42", now).allowed);
  CHECK_FALSE(node_b.check(rule, "user-42", now).allowed);
}

TEST_CASE("limiter: concurrent checks are atomic") {
  shared_redis r;
  rate_limiter lim(r.client, opts_for(r));
  const rate_limit_rule rule{"burst", 100, 60s};
  const auto now = wall::now();
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 60; ++i) {
        if (lim.check(rule, "hot", now).allowed) {
          ++allowed;
        }
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  CHECK(allowed.load() == 100);
}

TEST_CASE("limiter fallback: Redis refused, local counters still limit") {
  redis_options ro;
  ro.backoff_min = 500ms;
  auto dead = std::make_shared<redis_client>("redis://127.0.0.1:1", ro);
  rate_limiter lim(dead, {});
  check_exact_budget(lim, /*expect_local=*/true);
  CHECK(lim.using_fallback());
  CHECK(lim.fallback_decisions() > 10);
  CHECK(lim.local_keys() >= 2);

  // A burst of 1000 checks is fast: the client does not reconnect per call.
  const rate_limit_rule rule{"burst", 100, 60s};
  const auto t0 = steady::now();
  int allowed = 0;
  for (int i = 0; i < 1000; ++i) {
    allowed += lim.check(rule, "k" + std::to_string(i % 5)).allowed ? 1 : 0;
  }
  const auto took = steady::now() - t0;
  CHECK(allowed == 500);
  CHECK(dead->failures() <= 3);  // no reconnect per call (the time is reported, not asserted)
  MESSAGE("1000 fallback checks took " << std::chrono::duration_cast<std::chrono::microseconds>(took).count()
                                       << " us, " << dead->failures() << " connection attempts");
}

TEST_CASE("limiter fallback: an unresponsive Redis costs one timeout per backoff period") {
  blackhole bh;
  redis_options ro;
  ro.command_timeout = 200ms;
  ro.backoff_min = 2s;
  ro.backoff_max = 2s;
  auto hung = std::make_shared<redis_client>(bh.url(), ro);
  rate_limiter lim(hung, {});
  const rate_limit_rule rule{"burst", 10, 60s};
  const auto t0 = steady::now();
  int allowed = 0;
  for (int i = 0; i < 1000; ++i) {
    allowed += lim.check(rule, "one-key").allowed ? 1 : 0;
  }
  const auto took = steady::now() - t0;
  CHECK(allowed == 10);
  CHECK(lim.using_fallback());
  CHECK(lim.fallback_decisions() == 1000);
  CHECK(hung->failures() == 1);
  CHECK(took >= 150ms);  // the one timeout
  CHECK(took < 1s);      // and not one per call (that would be 200 s)
  MESSAGE("1000 checks against a hung Redis took "
          << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
}

TEST_CASE("limiter fallback: bounded memory") {
  rate_limiter_options o;
  o.local_max_keys = 160;  // 16 shards x 10
  rate_limiter lim(nullptr, o);
  const rate_limit_rule rule{"r", 1, 60s};
  const auto now = wall::now();
  for (int i = 0; i < 10'000; ++i) {
    CHECK(lim.check(rule, "ip-" + std::to_string(i), now).allowed);
  }
  CHECK(lim.local_keys() <= 160);
  CHECK_FALSE(lim.check(rule, "ip-9999", now).allowed);  // the newest keys are kept
  CHECK_FALSE(lim.using_fallback());                     // no Redis configured: nothing to fall back from
  CHECK(lim.fallback_decisions() == 0);

  // Keys whose budget is full again are dropped first, without changing any decision.
  rate_limiter lim2(nullptr, o);
  for (int i = 0; i < 160; ++i) {
    (void)lim2.check(rule, "old-" + std::to_string(i), now);
  }
  CHECK(lim2.check(rule, "new", now + 61s).allowed);
  CHECK(lim2.local_keys() <= 160);
}

TEST_CASE("limiter: switches to the fallback and back when Redis stops and starts") {
  if (!private_redis::installed()) {
    MESSAGE("redis-server not installed: skipped");
    return;
  }
  private_redis priv;
  REQUIRE(priv.start());
  redis_options ro;
  ro.backoff_min = 50ms;
  ro.backoff_max = 200ms;
  rate_limiter lim(std::make_shared<redis_client>(priv.url(), ro), {});
  const rate_limit_rule rule{"r", 1000, 60s};
  CHECK_FALSE(lim.check(rule, "k").local);
  CHECK_FALSE(lim.using_fallback());

  priv.stop();
  CHECK(lim.check(rule, "k").local);
  CHECK(lim.using_fallback());
  const auto fallback_count = lim.fallback_decisions();
  CHECK(fallback_count >= 1);

  REQUIRE(priv.start());
  CHECK(eventually([&] { return !lim.check(rule, "k").local; }, 5s));
  CHECK_FALSE(lim.using_fallback());
}

TEST_CASE("login back-off on Redis: exponential delay per account, shared, reset by success") {
  shared_redis r;
  login_backoff_options o;
  o.free_failures = 3;
  o.base_delay = 1s;
  o.max_delay = 8s;
  o.forget_after = 60s;
  login_backoff lb(r.client, o, opts_for(r));
  login_backoff other_node(std::make_shared<redis_client>(test::shared_redis_url()), o, opts_for(r));
  const std::string account = "alice@example.com";
  const auto now = wall::now();

  CHECK_FALSE(lb.record_failure(account, now));
  CHECK_FALSE(lb.record_failure(account, now));
  CHECK_FALSE(lb.blocked_for(account, now));
  CHECK(lb.record_failure(account, now) == std::optional<std::chrono::seconds>(1s));
  CHECK(lb.blocked_for(account, now) == std::optional<std::chrono::seconds>(1s));
  CHECK(other_node.blocked_for(account, now) == std::optional<std::chrono::seconds>(1s));
  CHECK_FALSE(lb.blocked_for(account, now + 1s));
  CHECK(other_node.record_failure(account, now + 1s) == std::optional<std::chrono::seconds>(2s));
  CHECK(lb.record_failure(account, now + 3s) == std::optional<std::chrono::seconds>(4s));
  CHECK(lb.record_failure(account, now + 7s) == std::optional<std::chrono::seconds>(8s));
  CHECK(lb.record_failure(account, now + 15s) == std::optional<std::chrono::seconds>(8s));  // capped
  CHECK(lb.blocked_for(account, now + 20s) == std::optional<std::chrono::seconds>(3s));
  CHECK_FALSE(lb.blocked_for("bob@example.com", now));  // per account

  // No e-mail address in Redis keys.
  std::vector<std::string> keys;
  std::string cursor = "0";
  do {
    auto page = r.client->command({"SCAN", cursor, "MATCH", r.prefix + "lb:*", "COUNT", "1000"});
    REQUIRE(page);
    REQUIRE(page->elements.size() == 2);
    cursor = page->elements[0].str;
    for (const auto& k : page->elements[1].elements) {
      keys.push_back(k.str);
    }
  } while (cursor != "0");
  REQUIRE(keys.size() == 1);
  CHECK(keys[0].find("alice") == std::string::npos);
  auto ttl = r.client->command({"PTTL", keys[0]});
  REQUIRE(ttl);
  CHECK(ttl->integer > 0);
  CHECK(ttl->integer <= 60'000);

  other_node.record_success(account);
  CHECK_FALSE(lb.blocked_for(account, now + 20s));
  CHECK_FALSE(lb.record_failure(account, now + 20s));  // the count starts again
  CHECK_FALSE(lb.using_fallback());
}

TEST_CASE("login back-off fallback: Redis refused, local state") {
  auto dead = std::make_shared<redis_client>("redis://127.0.0.1:1");
  login_backoff_options o;
  o.free_failures = 2;
  o.base_delay = 2s;
  o.max_delay = 5s;
  login_backoff lb(dead, o, {});
  const auto now = wall::now();
  CHECK_FALSE(lb.record_failure("a", now));
  CHECK(lb.record_failure("a", now) == std::optional<std::chrono::seconds>(2s));
  CHECK(lb.record_failure("a", now) == std::optional<std::chrono::seconds>(4s));
  CHECK(lb.record_failure("a", now) == std::optional<std::chrono::seconds>(5s));
  CHECK(lb.blocked_for("a", now + 2500ms) == std::optional<std::chrono::seconds>(3s));  // rounded up
  CHECK_FALSE(lb.blocked_for("a", now + 5s));
  CHECK_FALSE(lb.blocked_for("b", now));
  lb.record_success("a");
  CHECK_FALSE(lb.blocked_for("a", now));
  CHECK_FALSE(lb.record_failure("a", now));
  CHECK(lb.using_fallback());
  CHECK(lb.fallback_decisions() >= 8);
}

namespace {

// The gate's shape: a tight endpoint budget, a caller budget and a global one; all or nothing.
void check_all_or_nothing(rate_limiter& lim, bool expect_local) {
  const rate_limit_rule login{"login_all", 3, 60s};
  const rate_limit_rule caller{"caller_all", 5, 60s};
  const rate_limit_rule global{"global_all", 100, 60s};
  const rate_limit_rule off{"off_all", 0, 60s};
  const std::vector<http::rate_limit_charge> login_request{{&login, "ip"}, {&caller, "ip"}, {&global, "ip"}, {&off, "x"}};
  const std::vector<http::rate_limit_charge> other_request{{&caller, "ip"}, {&global, "ip"}};
  for (int i = 0; i < 3; ++i) {
    auto v = lim.check_all(login_request);
    REQUIRE(v.any);
    CHECK_FALSE(v.refused.has_value());
    CHECK(v.decision.local == expect_local);
    // The headers follow the budget closest to running out: login.
    CHECK(v.decision.limit == 3);
    CHECK(v.decision.remaining == static_cast<std::uint32_t>(2 - i));
  }
  auto refused = lim.check_all(login_request);
  REQUIRE(refused.refused.has_value());
  CHECK(*refused.refused == 0);
  CHECK_FALSE(refused.decision.allowed);
  CHECK(refused.decision.retry_after >= 1s);
  // The refused login cost the caller nothing: 5 - 3 = 2 left for other requests.
  CHECK(lim.check_all(other_request).decision.remaining == 1);
  CHECK(lim.check_all(other_request).decision.remaining == 0);
  auto caller_out = lim.check_all(other_request);
  REQUIRE(caller_out.refused.has_value());
  CHECK(*caller_out.refused == 0);
  // Nothing enabled: nothing decided.
  CHECK_FALSE(lim.check_all({{&off, "x"}}).any);
}

}  // namespace

TEST_CASE("limiter: all budgets of a request in one call, all or nothing (Redis)") {
  shared_redis r;
  rate_limiter lim(r.client, opts_for(r));
  check_all_or_nothing(lim, /*expect_local=*/false);
  CHECK(lim.fallback_decisions() == 0);
  // And shared: a second limiter (another node) sees the spent caller budget.
  rate_limiter other(r.client, opts_for(r));
  const rate_limit_rule caller{"caller_all", 5, 60s};
  CHECK(other.check_all({{&caller, "ip"}}).refused.has_value());
}

TEST_CASE("limiter: all budgets of a request in one call, all or nothing (local fallback)") {
  redis_options ro;
  ro.backoff_min = 500ms;
  auto dead = std::make_shared<redis_client>("redis://127.0.0.1:1", ro);
  rate_limiter lim(dead, {});
  check_all_or_nothing(lim, /*expect_local=*/true);
  CHECK(lim.using_fallback());
}
