#pragma once
// Rate limiting building blocks (issue 5, seed "rateLimitConfig"): named rules, a GCRA limiter whose
// state lives in Redis (shared by every node) with an in-process fallback, and a per-account
// back-off for failed logins.
//
// Threading: check()/record_*() may block for up to one Redis command timeout (default 200 ms), so
// call them from pool threads, never from Asio io threads or CAF workers. All classes here are
// thread-safe.
//
// Algorithm: GCRA (generic cell rate algorithm), chosen over a sliding-window counter because
//  - it is exact: a rule "L per W" admits a burst of exactly L and then one request every W/L, with
//    no boundary effect (a sliding-window *counter* interpolates the previous window and can be off
//    either way) and without storing per-request timestamps (a sliding-window *log* costs O(L));
//  - its whole state is one number per key, the theoretical arrival time (TAT), so the Redis script
//    is a GET and a SET, and the key's TTL is exactly "TAT - now" (≤ W): a key that expires is
//    identical to a key with a full budget, so Redis never grows beyond the active keys and the local
//    fallback can evict expired keys without changing any decision;
//  - Retry-After and RateLimit-Reset fall out directly (TAT - now).
// Time is the caller's wall clock (system_clock, microseconds since the epoch) passed into the
// script; nodes are NTP-synchronised, and a skew of d lets at most d/(W/L) extra requests through.
//
// Redis unavailable → the same algorithm runs on local counters (per node, so the effective budget
// is multiplied by the number of nodes during the outage). The switch is logged once each way and
// visible through using_fallback() and the fallback_decisions() counter.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mercato::persistence {
class redis_client;
}

namespace mercato::http {

// `limit` requests per `window`. limit == 0 or window <= 0 disables the rule (always allowed).
// `name` is part of the Redis key: rl:{name}:{key}.
struct rate_limit_rule {
  std::string name;
  std::uint32_t limit = 0;
  std::chrono::milliseconds window{0};

  bool enabled() const { return limit > 0 && window.count() > 0; }
};

// Failed logins slow down per key (the login handler uses account + client address, so an attacker's
// failures never block the owner's address): the first `free_failures - 1` consecutive failures cost
// nothing; the `free_failures`-th blocks the key for `base_delay`, each further failure doubles it up to
// `max_delay` (capped at a minute: guesses per address are bounded by the login rate limit anyway). The failure count is forgotten `forget_after` after the last failure (or at
// once on a successful login).
struct login_backoff_options {
  unsigned free_failures = 5;
  std::chrono::milliseconds base_delay{std::chrono::seconds(1)};
  std::chrono::milliseconds max_delay{std::chrono::minutes(1)};
  std::chrono::milliseconds forget_after{std::chrono::minutes(15)};
};

// The default rule set of the seed; the config layer overrides fields (MERCATO_RATE_LIMITS=off sets
// `enabled` to false). Which request is charged to which rule is the edge's business:
//  - global: every request, keyed by client IP (seed: 1000 per 15 min)
//  - login / register / orders / search: POST /api/v1/auth/login, POST /api/v1/auth/register,
//    /api/v1/orders* and POST /api/v1/carts/{id}/checkout (it places an order), product listing with a
//    `q` search; keyed by client IP (or caller)
//  - authenticated / anonymous: every request, keyed by user id / client IP
struct rate_limit_rules {
  bool enabled = true;
  rate_limit_rule global;
  rate_limit_rule login;
  rate_limit_rule register_account;
  rate_limit_rule orders;
  rate_limit_rule search;
  rate_limit_rule authenticated;
  rate_limit_rule anonymous;
  login_backoff_options login_backoff;
};

rate_limit_rules default_rules();

struct rate_limit_decision {
  bool allowed = true;
  std::uint32_t limit = 0;             // RateLimit-Limit
  std::uint32_t remaining = 0;         // RateLimit-Remaining (0 when denied)
  std::chrono::seconds reset{0};       // RateLimit-Reset: until the full budget is back
  std::chrono::seconds retry_after{0};  // Retry-After when denied (≥ 1 s), 0 when allowed
  bool local = false;                  // decided by the local fallback, not by Redis
};

// One budget a request is charged to.
struct rate_limit_charge {
  const rate_limit_rule* rule = nullptr;
  std::string key;
};

struct rate_limit_verdict {
  std::optional<std::size_t> refused;  // index (into the charges) of the first budget that refused
  rate_limit_decision decision;        // that refusal, or the admitted budget closest to running out
  bool any = false;                    // false when no charge had an enabled rule (decision is empty)
};

namespace detail {

// Tracks whether a component currently runs on its local fallback; logs each switch once.
class fallback_switch {
 public:
  explicit fallback_switch(std::string component) : component_(std::move(component)) {}
  void redis_ok();
  void fallback(std::string_view why);
  bool active() const { return active_.load(std::memory_order_relaxed); }
  // A decision taken locally while already on the fallback (counted, nothing logged, no switch).
  void count() { decisions_.fetch_add(1, std::memory_order_relaxed); }
  std::uint64_t decisions() const { return decisions_.load(std::memory_order_relaxed); }

 private:
  std::string component_;
  std::atomic<bool> active_{false};
  std::atomic<std::uint64_t> decisions_{0};
};

}  // namespace detail

struct rate_limiter_options {
  std::string key_prefix;              // before every Redis key ("" in production; tests isolate runs)
  std::size_t local_max_keys = 100'000;  // bound of the fallback table
};

class rate_limiter {
 public:
  using clock = std::chrono::system_clock;

  // `redis` may be null: local counters only (and using_fallback() stays false: nothing to fall
  // back from).
  explicit rate_limiter(std::shared_ptr<persistence::redis_client> redis, rate_limiter_options opts = {});
  ~rate_limiter();
  rate_limiter(const rate_limiter&) = delete;
  rate_limiter& operator=(const rate_limiter&) = delete;

  // Charges one request to `key` under `rule`.
  rate_limit_decision check(const rate_limit_rule& rule, std::string_view key, clock::time_point now = clock::now());

  // Charges one request to every budget at once, all or nothing: when one refuses, none is charged
  // (a refused request costs no budget). One Redis round trip for all of them. Disabled rules are
  // skipped.
  rate_limit_verdict check_all(const std::vector<rate_limit_charge>& charges, clock::time_point now = clock::now());

  // The local counters only, never Redis (what check_all does when Redis fails; counted as a fallback
  // decision when a Redis client is configured). Does not block on the network: io threads may call it.
  rate_limit_verdict check_all_local(const std::vector<rate_limit_charge>& charges,
                                     clock::time_point now = clock::now());

  // --- batches of tokens (for http::rate_admission) ---------------------------------------------
  // One operation on one budget: delta > 0 takes up to `delta` tokens (what fits), delta < 0 gives
  // `-delta` unused tokens back (never below a full budget), delta == 0 only reads.
  struct batch_op {
    const rate_limit_rule* rule = nullptr;
    std::string redis_key;  // redis_key(*rule, caller key)
    std::int64_t delta = 0;
  };
  struct batch_result {
    std::int64_t granted = 0;    // tokens taken (≤ delta; 0 for a give-back)
    std::int64_t remaining = 0;  // what the budget still holds for anyone after this operation
    std::int64_t reset_us = 0;   // until the full budget is back (TAT - now)
    std::int64_t retry_us = 0;   // remaining == 0: until one token fits again; else 0
  };
  // All the operations in one script call per 256 budgets (the same GCRA state as check()/check_all()).
  // nullopt when there is no Redis or it failed (then the limiter is on its fallback, as after check()).
  std::optional<std::vector<batch_result>> take_batches(const std::vector<batch_op>& ops,
                                                        clock::time_point now = clock::now());
  // True when a Redis client is configured (it may still be down).
  bool shared() const;
  // One cheap round trip when Redis is down, to notice it is back (switches the fallback off).
  void probe();

  // True while decisions come from local counters because Redis failed (for /readyz detail).
  bool using_fallback() const;
  // Decisions taken locally because Redis failed (monotonic; exported as a metric by the edge).
  std::uint64_t fallback_decisions() const;
  std::size_t local_keys() const;

  // The Redis key of a rule and caller key (exposed for tests and operators).
  std::string redis_key(const rate_limit_rule& rule, std::string_view key) const;

  // A decision's fields from the GCRA figures (Retry-After ≥ 1 s when refused; times rounded up).
  static rate_limit_decision verdict_decision(const rate_limit_rule& rule, bool allowed, std::int64_t remaining,
                                              std::int64_t reset_us, std::int64_t retry_us, bool local);

 private:
  rate_limit_verdict local_verdict(const std::vector<rate_limit_charge>& charges, const std::vector<std::size_t>& live,
                                   std::int64_t now_us, bool count);

  struct impl;
  std::unique_ptr<impl> impl_;
};

class login_backoff {
 public:
  using clock = std::chrono::system_clock;

  // Shares the Redis client with the limiter; same fallback behaviour. Accounts are stored hashed
  // (SHA-256) so that no e-mail address ends up in a Redis key.
  login_backoff(std::shared_ptr<persistence::redis_client> redis, login_backoff_options opts = {},
                rate_limiter_options storage = {});
  ~login_backoff();
  login_backoff(const login_backoff&) = delete;
  login_backoff& operator=(const login_backoff&) = delete;

  // Returns how long the account is now blocked (nullopt: not blocked).
  std::optional<std::chrono::seconds> record_failure(std::string_view account, clock::time_point now = clock::now());
  void record_success(std::string_view account);
  // Still blocked → the remaining time, rounded up to whole seconds (≥ 1).
  std::optional<std::chrono::seconds> blocked_for(std::string_view account, clock::time_point now = clock::now());

  bool using_fallback() const;
  std::uint64_t fallback_decisions() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace mercato::http
