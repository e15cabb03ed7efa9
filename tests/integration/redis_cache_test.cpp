// The Redis client and the two-level catalog cache against a real Redis (scripts/services start
// --profile test: redis://127.0.0.1:56380, or MERCATO_TEST_REDIS_URL). Every test works under its own
// key prefix so parallel runs do not collide, and removes its keys at the end. Tests that must stop
// Redis start a private redis-server child on a free port instead of touching the shared one.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fcntl.h>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "http/catalog_cache.hpp"
#include "persistence/redis_client.hpp"
#include "support/node_process.hpp"
#include "support/redis_servers.hpp"

using namespace mercato;
using namespace std::chrono_literals;
using http::catalog_cache;
using http::catalog_cache_options;
using persistence::redis_client;
using persistence::redis_options;
using test::blackhole;
using test::private_redis;

namespace {

using steady = std::chrono::steady_clock;

using test::shared_redis;

// Counts loader calls and returns the current value (nullopt: "not found").
struct loader {
  std::atomic<int> calls{0};
  std::optional<std::string> value;
  explicit loader(std::optional<std::string> v) : value(std::move(v)) {}
  catalog_cache::loader_fn fn() {
    return [this]() {
      ++calls;
      return value;
    };
  }
};

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

}  // namespace

// --- redis_client ---------------------------------------------------------------------------------

TEST_CASE("redis URL parsing") {
  using persistence::parse_redis_url;
  auto a = parse_redis_url("redis://127.0.0.1:56380");
  REQUIRE(a);
  CHECK(a->host == "127.0.0.1");
  CHECK(a->port == 56380);
  CHECK(a->db == 0);
  CHECK(a->password.empty());

  auto b = parse_redis_url("redis://localhost");
  REQUIRE(b);
  CHECK(b->host == "localhost");
  CHECK(b->port == 6379);

  auto c = parse_redis_url("REDIS://cache.internal:7000/3");
  REQUIRE(c);
  CHECK(c->host == "cache.internal");
  CHECK(c->port == 7000);
  CHECK(c->db == 3);

  auto d = parse_redis_url("redis://:s%40cr%2Fet@127.0.0.1:1/");
  REQUIRE(d);
  CHECK(d->user.empty());
  CHECK(d->password == "s@cr/et");
  CHECK(d->db == 0);

  auto e = parse_redis_url("redis://app:pw@h:2/15");
  REQUIRE(e);
  CHECK(e->user == "app");
  CHECK(e->password == "pw");
  CHECK(e->host == "h");
  CHECK(e->db == 15);

  auto f = parse_redis_url("redis://[::1]:6380/2");
  REQUIRE(f);
  CHECK(f->host == "::1");
  CHECK(f->port == 6380);
  CHECK(f->db == 2);

  for (const char* bad : {"", "http://h:1", "rediss://h:1", "redis://", "redis://:1", "redis://h:", "redis://h:0",
                          "redis://h:70000", "redis://h:12ab", "redis://h/x", "redis://h/-1", "redis://h?db=1",
                          "redis://[::1", "redis://[::1]x", "redis://:@h", "redis://u:p%zz@h", "redis://h :1"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_redis_url(bad));
  }

  redis_client invalid("not a url");
  CHECK_FALSE(invalid.available());
  auto r = invalid.get("k");
  REQUIRE_FALSE(r);
  CHECK(r.error().code == persistence::redis_errc::bad_argument);
}

TEST_CASE("redis client: GET, SETEX, MGET, INCR, DEL, SCAN delete") {
  shared_redis r;
  auto& c = *r.client;
  const std::string p = r.prefix;
  CHECK(c.available());

  auto missing = c.get(p + "missing");
  REQUIRE(missing);
  CHECK_FALSE(missing->has_value());

  REQUIRE(c.setex(p + "a", 60s, std::string("bin\0ary", 7)));
  auto a = c.get(p + "a");
  REQUIRE(a);
  REQUIRE(a->has_value());
  CHECK(**a == std::string("bin\0ary", 7));

  auto ttl = c.command({"PTTL", p + "a"});
  REQUIRE(ttl);
  CHECK(ttl->integer > 55'000);
  CHECK(ttl->integer <= 60'000);
  CHECK_FALSE(c.setex(p + "a", 0ms, "x"));

  REQUIRE(c.setex(p + "short", 100ms, "v"));
  CHECK(eventually([&] { return !c.get(p + "short")->has_value(); }, 3s));

  auto m = c.mget({p + "a", p + "missing"});
  REQUIRE(m);
  REQUIRE(m->size() == 2);
  CHECK((*m)[0].has_value());
  CHECK_FALSE((*m)[1].has_value());

  auto i1 = c.incr(p + "n");
  auto i2 = c.incr(p + "n");
  REQUIRE(i1);
  REQUIRE(i2);
  CHECK(*i2 == *i1 + 1);

  auto wrongtype = c.incr(p + "a");
  REQUIRE_FALSE(wrongtype);
  CHECK(wrongtype.error().code == persistence::redis_errc::server);
  CHECK(c.available());  // an error reply is not an outage

  REQUIRE(c.setex(p + "b", 60s, "1"));
  auto deleted = c.del({p + "a", p + "b", p + "nope"});
  REQUIRE(deleted);
  CHECK(*deleted == 2);
  CHECK(*c.del({}) == 0);

  // 1200 keys under one sub-prefix, 10 under another; a glob-looking prefix is matched literally.
  for (int i = 0; i < 1200; ++i) {
    REQUIRE(c.setex(p + "scan:a:" + std::to_string(i), 60s, "x"));
  }
  for (int i = 0; i < 10; ++i) {
    REQUIRE(c.setex(p + "scan:b:" + std::to_string(i), 60s, "x"));
  }
  auto gone = c.delete_by_pattern(p + "scan:a:*");
  REQUIRE(gone);
  CHECK(*gone == 1200);
  auto left = c.command({"EXISTS", p + "scan:a:7", p + "scan:b:7"});
  REQUIRE(left);
  CHECK(left->integer == 1);
  auto rest = c.delete_by_pattern(p + "scan:*");
  REQUIRE(rest);
  CHECK(*rest == 10);
}

TEST_CASE("redis client: scripts (EVALSHA, EVAL after NOSCRIPT)") {
  shared_redis r;
  persistence::redis_script script("return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}");
  auto first = r.client->eval(script, {r.prefix + "s"}, {"arg"});
  REQUIRE(first);
  REQUIRE(first->elements.size() == 3);
  CHECK(first->elements[0].str == r.prefix + "s");
  CHECK(first->elements[1].str == "arg");
  CHECK(first->elements[2].integer == 1);
  auto second = r.client->eval(script, {r.prefix + "s"}, {"arg"});
  REQUIRE(second);
  CHECK(second->elements[2].integer == 2);

  persistence::redis_script broken("return redis.call('NOSUCHCOMMAND')");
  auto err = r.client->eval(broken, {}, {});
  REQUIRE_FALSE(err);
  CHECK(err.error().code == persistence::redis_errc::server);

  if (!private_redis::installed()) {
    MESSAGE("redis-server not installed: NOSCRIPT fallback not exercised");
    return;
  }
  // SCRIPT FLUSH on a private server, so the shared one keeps its script cache.
  private_redis priv;
  REQUIRE(priv.start());
  redis_client pc(priv.url());
  REQUIRE(pc.eval(script, {"k"}, {"a"}));
  REQUIRE(pc.command({"SCRIPT", "FLUSH"}));
  auto after_flush = pc.eval(script, {"k"}, {"a"});  // EVALSHA → NOSCRIPT → EVAL
  REQUIRE(after_flush);
  CHECK(after_flush->elements[2].integer == 2);
  auto again = pc.eval(script, {"k"}, {"a"});  // the script is cached again
  REQUIRE(again);
  CHECK(again->elements[2].integer == 3);
}

TEST_CASE("redis client: a refused connection fails fast and backs off") {
  redis_options o;
  o.backoff_min = 300ms;
  o.backoff_max = 300ms;
  redis_client c("redis://127.0.0.1:1", o);
  auto first = c.get("k");
  REQUIRE_FALSE(first);
  CHECK_FALSE(c.available());
  const auto t0 = steady::now();
  for (int i = 0; i < 1000; ++i) {
    auto e = c.get("k");
    REQUIRE_FALSE(e);
    CHECK(e.error().code == persistence::redis_errc::unavailable);
  }
  CHECK(steady::now() - t0 < 250ms);
  CHECK(c.failures() <= 2);  // at most one probe fell into the burst
  CHECK(c.fast_failures() >= 998);
}

TEST_CASE("redis client: an unresponsive server costs one timeout per backoff period") {
  blackhole bh;
  redis_options o;
  o.command_timeout = 200ms;
  o.backoff_min = 400ms;
  o.backoff_max = 400ms;
  redis_client c(bh.url(), o);

  const auto t0 = steady::now();
  auto first = c.get("k");  // connects (the kernel accepts), then the reply never comes
  const auto first_cost = steady::now() - t0;
  REQUIRE_FALSE(first);
  CHECK(first.error().code == persistence::redis_errc::io);
  CHECK(first_cost >= 150ms);
  CHECK(first_cost < 1s);
  CHECK_FALSE(c.available());

  // ~1.3 s of calls from 4 threads: one probe per 400 ms period, each costing one timeout.
  std::atomic<int> calls{0};
  std::vector<std::thread> threads;
  const auto until = steady::now() + 1300ms;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      while (steady::now() < until) {
        (void)c.get("k");
        ++calls;
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  CHECK(calls.load() > 1000);
  CHECK(c.failures() >= 2);
  CHECK(c.failures() <= 6);  // 1 + at most one per period (+1 for a probe straddling the start)
}

TEST_CASE("redis client: reconnects after Redis restarts") {
  if (!private_redis::installed()) {
    MESSAGE("redis-server not installed: skipped");
    return;
  }
  private_redis priv;
  REQUIRE(priv.start());
  redis_options o;
  o.backoff_min = 50ms;
  o.backoff_max = 200ms;
  redis_client c(priv.url(), o);
  REQUIRE(c.setex("k", 60s, "v"));
  REQUIRE(c.get("k"));
  const auto connects_before = c.connects();

  priv.stop();
  CHECK(eventually([&] { return !c.get("k").ok(); }, 3s));
  CHECK_FALSE(c.available());

  REQUIRE(priv.start());
  CHECK(eventually([&] { return c.ping().ok(); }, 5s));
  CHECK(c.available());
  CHECK(c.connects() > connects_before);
  auto v = c.get("k");  // a fresh server without persistence: the key is gone
  REQUIRE(v);
  CHECK_FALSE(v->has_value());
}

TEST_CASE("redis client: concurrent callers share a bounded pool") {
  shared_redis r;
  redis_options o;
  o.max_connections = 3;
  o.command_timeout = 2s;  // the wait for a free connection is bounded by it too
  redis_client c(test::shared_redis_url(), o);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        if (!c.incr(r.prefix + "ctr")) {
          ++failures;
        }
        (void)t;
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  CHECK(failures.load() == 0);
  auto v = c.get(r.prefix + "ctr");
  REQUIRE(v);
  REQUIRE(v->has_value());
  CHECK(**v == "1600");
  CHECK(c.connects() <= 3);
}

// --- catalog_cache --------------------------------------------------------------------------------

TEST_CASE("catalog cache: keys") {
  CHECK(catalog_cache::product_key("42") == "product:42");
  CHECK(catalog_cache::category_children_key("7") == "category:7:children");
  const auto k = catalog_cache::search_key("q=red shoes&sort=price");
  CHECK(k.rfind("search:", 0) == 0);
  CHECK(k.size() == 7 + 64);
  CHECK(k == catalog_cache::search_key("q=red shoes&sort=price"));
  CHECK(k != catalog_cache::search_key("q=red shoes&sort=-price"));
  CHECK(catalog_cache::normalize_search_terms("  Red \t SHOES\n") == "red shoes");
}

TEST_CASE("catalog cache: hits and misses per level") {
  shared_redis r;
  catalog_cache_options o;
  o.key_prefix = r.prefix;
  catalog_cache a(r.client, o);
  catalog_cache b(r.another_client(), o);
  loader l("{\"id\":1}");
  const auto key = catalog_cache::product_key("1");

  auto v1 = a.get_or_load(key, l.fn());
  REQUIRE(static_cast<bool>(v1));
  CHECK(*v1 == "{\"id\":1}");
  CHECK(l.calls == 1);
  auto s = a.stats();
  CHECK(s.l1_misses == 1);
  CHECK(s.l2_misses == 1);
  CHECK(s.loads == 1);
  CHECK(s.l1_hits == 0);

  auto v2 = a.get_or_load(key, l.fn());
  REQUIRE(static_cast<bool>(v2));
  CHECK(*v2 == *v1);
  CHECK(a.stats().l1_hits == 1);
  CHECK(l.calls == 1);

  // L2 holds it with the 1 h TTL.
  auto ttl = r.client->command({"PTTL", r.prefix + key});
  REQUIRE(ttl);
  CHECK(ttl->integer > 3'500'000);
  CHECK(ttl->integer <= 3'600'000);

  // A second node: L1 miss, L2 hit, no load; then its own L1 hit.
  auto w = b.get_or_load(key, l.fn());
  REQUIRE(static_cast<bool>(w));
  CHECK(*w == "{\"id\":1}");
  CHECK(l.calls == 1);
  s = b.stats();
  CHECK(s.l1_misses == 1);
  CHECK(s.l2_hits == 1);
  CHECK(s.loads == 0);
  (void)b.get_or_load(key, l.fn());
  CHECK(b.stats().l1_hits == 1);

  // Nothing to cache: null, and the loader runs again next time.
  loader none(std::nullopt);
  CHECK_FALSE(static_cast<bool>(a.get_or_load(catalog_cache::product_key("404"), none.fn())));
  CHECK_FALSE(static_cast<bool>(a.get_or_load(catalog_cache::product_key("404"), none.fn())));
  CHECK(none.calls == 2);
  CHECK(a.stats().l2_errors == 0);
  CHECK(a.l1_entries() == 1);
  CHECK(a.l1_bytes() > 0);
}

TEST_CASE("catalog cache: TTLs of both levels") {
  shared_redis r;
  catalog_cache_options o;
  o.key_prefix = r.prefix;
  o.l1_ttl = 150ms;
  o.l2_ttl = 500ms;
  catalog_cache c(r.client, o);
  loader l("v");
  const auto key = catalog_cache::category_children_key("1");

  const auto t0 = steady::now();
  REQUIRE(static_cast<bool>(c.get_or_load(key, l.fn())));
  REQUIRE(static_cast<bool>(c.get_or_load(key, l.fn())));
  CHECK(c.stats().l1_hits >= 1);

  // L1 expires first: the next read is an L2 hit, not a load.
  REQUIRE(eventually([&] { return c.get_or_load(key, l.fn()) && c.stats().l2_hits >= 1; }, 3s));
  CHECK(steady::now() - t0 >= 140ms);
  CHECK(l.calls == 1);

  // Then L2 expires: the loader runs again.
  REQUIRE(eventually([&] { return c.get_or_load(key, l.fn()) && l.calls == 2; }, 5s));
  CHECK(steady::now() - t0 >= 490ms);

  // L1 TTL is capped at 5 minutes whatever is configured.
  catalog_cache_options big;
  big.key_prefix = r.prefix;
  big.l1_ttl = std::chrono::hours(10);
  catalog_cache capped(r.client, big);  // constructs; the cap itself is internal
  CHECK(static_cast<bool>(capped.get_or_load("product:cap", l.fn())));
}

TEST_CASE("catalog cache: a product invalidation reaches a second node within about a second") {
  shared_redis r;
  catalog_cache_options o;
  o.key_prefix = r.prefix;
  o.generation_check_interval = 1000ms;
  catalog_cache a(r.client, o);
  catalog_cache b(r.another_client(), o);

  loader product("old");
  loader search("[old]");
  loader category("[cats]");
  const auto pk = catalog_cache::product_key("7");
  const auto sk = catalog_cache::search_key("q=shoe");
  const auto ck = catalog_cache::category_children_key("3");

  for (auto* cache : {&a, &b}) {
    REQUIRE(*cache->get_or_load(pk, product.fn()) == "old");
    REQUIRE(*cache->get_or_load(sk, search.fn()) == "[old]");
    REQUIRE(*cache->get_or_load(ck, category.fn()) == "[cats]");
  }
  // b now serves all three from its L1.
  const auto b_hits = b.stats().l1_hits;
  REQUIRE(*b.get_or_load(pk, product.fn()) == "old");
  CHECK(b.stats().l1_hits == b_hits + 1);

  product.value = "new";
  search.value = "[new]";
  const auto t0 = steady::now();
  a.invalidate_product("7");

  // The invalidating node sees the change at once; L2 no longer has the keys.
  CHECK(*a.get_or_load(pk, product.fn()) == "new");
  auto l2_search = r.client->get(r.prefix + sk);
  REQUIRE(l2_search);
  CHECK_FALSE(l2_search->has_value());

  // The other node within about one check interval (polled, no fixed sleep).
  REQUIRE(eventually([&] { return *b.get_or_load(pk, product.fn()) == "new"; }, 3s, 20ms));
  const auto lag = steady::now() - t0;
  CHECK(lag < 1800ms);  // one 1 s check interval plus slack for a loaded machine
  MESSAGE("invalidation visible on the second node after "
          << std::chrono::duration_cast<std::chrono::milliseconds>(lag).count() << " ms");
  CHECK(*b.get_or_load(sk, search.fn()) == "[new]");
  CHECK(b.stats().remote_invalidations >= 1);

  // Precise: b's category entry survived (an L1 hit, no new load or L2 read).
  const auto before = b.stats();
  const int category_loads = category.calls;
  CHECK(*b.get_or_load(ck, category.fn()) == "[cats]");
  CHECK(b.stats().l1_hits == before.l1_hits + 1);
  CHECK(category.calls == category_loads);
}

TEST_CASE("catalog cache: a category invalidation reaches a second node") {
  shared_redis r;
  catalog_cache_options o;
  o.key_prefix = r.prefix;
  catalog_cache a(r.client, o);
  catalog_cache b(r.another_client(), o);
  loader cat("[a]");
  loader prod("p");
  const auto ck = catalog_cache::category_children_key("1");
  const auto pk = catalog_cache::product_key("1");
  REQUIRE(*b.get_or_load(ck, cat.fn()) == "[a]");
  REQUIRE(*b.get_or_load(pk, prod.fn()) == "p");

  cat.value = "[a,b]";
  a.invalidate_categories();
  auto l2 = r.client->get(r.prefix + ck);
  REQUIRE(l2);
  CHECK_FALSE(l2->has_value());
  REQUIRE(eventually([&] { return *b.get_or_load(ck, cat.fn()) == "[a,b]"; }, 3s, 20ms));
  const auto hits = b.stats().l1_hits;
  CHECK(*b.get_or_load(pk, prod.fn()) == "p");
  CHECK(b.stats().l1_hits == hits + 1);
}

TEST_CASE("catalog cache: a node that fell behind the invalidation log drops its whole L1") {
  shared_redis r;
  catalog_cache_options o;
  o.key_prefix = r.prefix;
  o.invalidation_log_size = 2;
  o.generation_check_interval = 100ms;
  catalog_cache a(r.client, o);
  catalog_cache b(r.another_client(), o);
  loader l("x");
  const auto unrelated = catalog_cache::category_children_key("9");
  REQUIRE(static_cast<bool>(b.get_or_load(unrelated, l.fn())));
  REQUIRE(static_cast<bool>(b.get_or_load(unrelated, l.fn())));
  const auto misses = b.stats().l1_misses;
  for (int i = 0; i < 5; ++i) {
    a.invalidate_product(std::to_string(i));
  }
  // b cannot tell what the 3 trimmed entries dropped: everything goes, the key is read again.
  REQUIRE(eventually(
      [&] {
        (void)b.get_or_load(unrelated, l.fn());
        return b.stats().l1_misses > misses;
      },
      3s, 20ms));
}

TEST_CASE("catalog cache: loads racing an invalidation do not put stale values back into L2") {
  shared_redis r;
  catalog_cache_options o;
  o.key_prefix = r.prefix;
  catalog_cache a(r.client, o);
  catalog_cache b(r.another_client(), o);
  const auto pk = catalog_cache::product_key("race");
  // b's loader reads the "database" (old), then a invalidates, then b's load finishes.
  auto stale = b.get_or_load(pk, [&]() -> std::optional<std::string> {
    a.invalidate_product("race");
    return std::string("old");
  });
  REQUIRE(static_cast<bool>(stale));
  CHECK(*stale == "old");  // the caller gets what it loaded ...
  auto l2 = r.client->get(r.prefix + pk);
  REQUIRE(l2);
  CHECK_FALSE(l2->has_value());  // ... but the cache does not keep it
  loader fresh("new");
  CHECK(*b.get_or_load(pk, fresh.fn()) == "new");
  CHECK(fresh.calls == 1);
}

TEST_CASE("catalog cache: Redis down, reads are served from L1 and the loader") {
  redis_options ro;
  ro.backoff_min = 1s;
  auto dead = std::make_shared<redis_client>("redis://127.0.0.1:1", ro);
  catalog_cache c(dead, {});
  loader l("v");
  const auto t0 = steady::now();
  for (int i = 0; i < 200; ++i) {
    auto v = c.get_or_load(catalog_cache::product_key(std::to_string(i % 20)), l.fn());
    REQUIRE(static_cast<bool>(v));
    CHECK(*v == "v");
  }
  CHECK(steady::now() - t0 < 500ms);
  CHECK(l.calls == 20);
  const auto s = c.stats();
  CHECK(s.l1_hits == 180);
  CHECK(s.l2_errors == 20);
  CHECK(s.l2_hits == 0);
  c.invalidate_product("3");  // no exception, local L1 dropped
  (void)c.get_or_load(catalog_cache::product_key("3"), l.fn());
  CHECK(l.calls == 21);

  catalog_cache no_redis(nullptr, {});
  CHECK(*no_redis.get_or_load("product:1", l.fn()) == "v");
  CHECK(*no_redis.get_or_load("product:1", l.fn()) == "v");
  CHECK(no_redis.stats().l1_hits == 1);
}

TEST_CASE("catalog cache: an invalidation made while Redis is unreachable is replayed") {
  if (!private_redis::installed()) {
    MESSAGE("redis-server not installed: skipped");
    return;
  }
  private_redis priv(/*persistent=*/true);
  REQUIRE(priv.start());
  redis_options ro;
  ro.backoff_min = 50ms;
  ro.backoff_max = 200ms;
  auto ca = std::make_shared<redis_client>(priv.url(), ro);
  auto cb = std::make_shared<redis_client>(priv.url(), ro);
  catalog_cache a(ca, {});
  catalog_cache b(cb, {});
  loader l("old");
  const auto pk = catalog_cache::product_key("1");
  REQUIRE(*a.get_or_load(pk, l.fn()) == "old");  // now in L2

  priv.stop();
  l.value = "new";
  a.invalidate_product("1");  // cannot reach Redis: remembered
  CHECK(*a.get_or_load(pk, l.fn()) == "new");

  REQUIRE(priv.start());  // the append-only file brings the old L2 value back
  redis_client check(priv.url());
  REQUIRE(eventually([&] { return check.get(pk).ok() && check.get(pk)->has_value(); }, 3s));
  // a's next contact with Redis replays the invalidation.
  REQUIRE(eventually(
      [&] {
        (void)a.get_or_load(catalog_cache::product_key("other"), l.fn());
        auto v = check.get(pk);
        return v.ok() && (!v->has_value() || **v == "new");
      },
      5s, 20ms));
  CHECK(*b.get_or_load(pk, l.fn()) == "new");
}

TEST_CASE("catalog cache: L1 is bounded by entries and bytes") {
  catalog_cache_options o;
  o.l1_max_entries = 64;
  catalog_cache c(nullptr, o);
  loader l(std::string(100, 'x'));
  for (int i = 0; i < 1000; ++i) {
    REQUIRE(static_cast<bool>(c.get_or_load("product:" + std::to_string(i), l.fn())));
  }
  CHECK(c.l1_entries() <= 64);
  CHECK(c.stats().l1_evictions >= 1000 - 64);

  catalog_cache_options ob;
  ob.l1_max_bytes = 32 * 1024;
  catalog_cache cb(nullptr, ob);
  loader big(std::string(1000, 'y'));
  for (int i = 0; i < 500; ++i) {
    REQUIRE(static_cast<bool>(cb.get_or_load("product:" + std::to_string(i), big.fn())));
  }
  CHECK(cb.l1_bytes() <= 32 * 1024 + 16 * 1200);  // rounding up per shard
  CHECK(cb.l1_entries() < 500);
  // Recently used entries stay: LRU.
  loader again(std::string(1000, 'z'));
  CHECK(*cb.get_or_load("product:499", again.fn()) == std::string(1000, 'y'));
  CHECK(again.calls == 0);
}

TEST_CASE("catalog cache: concurrent readers and invalidations") {
  shared_redis r;
  catalog_cache_options o;
  o.key_prefix = r.prefix;
  o.l1_max_entries = 40;
  o.generation_check_interval = 50ms;
  catalog_cache c(r.client, o);
  std::atomic<int> calls{0};
  std::atomic<bool> wrong{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 400; ++i) {
        const std::string id = std::to_string((i * 7 + t) % 50);
        auto v = c.get_or_load(catalog_cache::product_key(id), [&, id]() -> std::optional<std::string> {
          return "p" + id;
        });
        ++calls;
        if (!v || *v != "p" + id) {
          wrong = true;
        }
        if (t == 0 && i % 50 == 0) {
          c.invalidate_product(id);
        }
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  CHECK_FALSE(wrong.load());
  const auto s = c.stats();
  CHECK(s.l1_hits + s.l1_misses == static_cast<std::uint64_t>(calls.load()));
  CHECK(s.l2_hits + s.l2_misses + s.l2_errors == s.l1_misses);
}

// --- peek: the non-blocking L1 look-up the HTTP io threads use ---------------------------------------

TEST_CASE("catalog cache: peek answers from L1 only, and only while no generation check is due") {
  shared_redis r;
  catalog_cache_options o;
  o.key_prefix = r.prefix;
  o.generation_check_interval = 200ms;
  catalog_cache c(r.client, o);
  loader l("v");
  const auto key = catalog_cache::product_key("peek");

  // Nothing in L1 (and the first check is due): a miss, and a missed peek is not counted.
  CHECK_FALSE(static_cast<bool>(c.peek(key)));
  CHECK(c.stats().l1_hits == 0);
  CHECK(c.stats().l1_misses == 0);

  // get_or_load polls, loads and fills L1: now peek hits and counts an L1 hit.
  REQUIRE(*c.get_or_load(key, l.fn()) == "v");
  auto v = c.peek(key);
  REQUIRE(static_cast<bool>(v));
  CHECK(*v == "v");
  CHECK(c.stats().l1_hits == 1);
  CHECK(c.stats().l1_misses == 1);  // the get_or_load's own lookup
  CHECK(c.stats().l2_hits + c.stats().l2_misses == 1);  // peeks never reach L2
  CHECK_FALSE(static_cast<bool>(c.peek(catalog_cache::product_key("absent"))));

  // Once the check interval has passed without a get_or_load, peek refuses (a Redis round trip is
  // due); a get_or_load makes the check and answers from L1; then peek hits again.
  std::this_thread::sleep_for(250ms);
  CHECK_FALSE(static_cast<bool>(c.peek(key)));
  const auto before = c.stats();
  REQUIRE(*c.get_or_load(key, l.fn()) == "v");
  CHECK(c.stats().l1_hits == before.l1_hits + 1);
  CHECK(l.calls == 1);
  CHECK(static_cast<bool>(c.peek(key)));
}

TEST_CASE("catalog cache: peek never serves another node's invalidated entry past one check interval") {
  shared_redis r;
  catalog_cache_options o;
  o.key_prefix = r.prefix;
  o.generation_check_interval = 300ms;
  catalog_cache a(r.client, o);
  catalog_cache b(r.another_client(), o);
  loader l("old");
  const auto pk = catalog_cache::product_key("9");
  REQUIRE(*b.get_or_load(pk, l.fn()) == "old");
  REQUIRE(*b.peek(pk) == "old");

  l.value = "new";
  const auto t0 = steady::now();
  a.invalidate_product("9");
  // Until b's next check is due, its peek may still answer "old"; after that it must refuse.
  bool refused = false;
  while (steady::now() - t0 < 2s) {
    auto v = b.peek(pk);
    if (!v) {
      refused = true;
      break;
    }
    CHECK(*v == "old");
    std::this_thread::sleep_for(5ms);
  }
  REQUIRE(refused);
  CHECK(steady::now() - t0 < 300ms + 300ms);  // one interval, plus slack for a loaded machine
  // The pool-thread path catches up and loads the new value; then peek serves that.
  CHECK(*b.get_or_load(pk, l.fn()) == "new");
  REQUIRE(static_cast<bool>(b.peek(pk)));
  CHECK(*b.peek(pk) == "new");
}

TEST_CASE("catalog cache: peek does not block when Redis is unreachable or absent") {
  redis_options ro;
  ro.backoff_min = 1s;
  auto dead = std::make_shared<redis_client>("redis://127.0.0.1:1", ro);
  catalog_cache_options o;
  o.generation_check_interval = 100ms;
  catalog_cache c(dead, o);
  loader l("v");
  const auto key = catalog_cache::product_key("1");
  REQUIRE(*c.get_or_load(key, l.fn()) == "v");  // L2 error, loaded, kept in L1
  CHECK(c.stats().l2_errors == 1);
  const auto t0 = steady::now();
  int hits = 0;
  for (int i = 0; i < 10'000; ++i) {
    hits += c.peek(key) ? 1 : 0;
  }
  CHECK(steady::now() - t0 < 200ms);
  CHECK(hits > 0);
  CHECK(c.stats().l2_errors == 1);  // peek never tried Redis

  catalog_cache none(nullptr, o);
  CHECK_FALSE(static_cast<bool>(none.peek(key)));
  REQUIRE(*none.get_or_load(key, l.fn()) == "v");
  std::this_thread::sleep_for(150ms);  // no Redis: no check is ever due
  REQUIRE(static_cast<bool>(none.peek(key)));
  CHECK(none.stats().l1_hits == 1);
}
