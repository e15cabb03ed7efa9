#pragma once
// Local admission against a node's share of each rate-limit budget, reconciled with Redis in batches
// (issue 14; the approach of Envoy's local-plus-global limits).
//
// http::rate_limiter decides each request with one Redis round trip. That is exact, but it costs a
// round trip and a thread hop per request. Here a node takes *tokens* from the shared GCRA state in
// Redis ahead of use (a token is one request's worth of TAT: taking k tokens moves the TAT exactly as
// k admitted requests would) and admits requests against the tokens it holds, on the calling (io)
// thread, without blocking:
//  - credit: a node holds at most b = min(max_credit, limit / credit_divisor) tokens per budget and
//    caller key; a rule whose b is 0 (small budgets) or that is named in `exact` is not batched
//    (exact() tells the caller to use rate_limiter::check_all per request, as before);
//  - a request whose budgets all hold credit is admitted at once; one whose budget Redis reported as
//    spent (not one token fits) is refused at once until Redis said one would fit again; any other
//    request waits for the next round trip (waiters are answered through their callback);
//  - one reconciler thread runs the round trips: at once when requests wait or a key's credit falls
//    below b/2 (whatever accumulated meanwhile goes in the same call), else every `interval`. A round
//    trip is one script call per 256 budgets: it takes each waiting key's tokens plus b, tops up the
//    keys below b/2, and gives back the credit of keys idle for `idle_return` (then forgotten);
//  - Redis failing: decisions come from the limiter's local counters (as rate_limiter::check_all does),
//    on the calling thread; the reconciler probes Redis every interval and credit is used again when
//    it answers. No Redis configured: local counters, as before.
//
// Overshoot bound (docs/architecture.md, "Rate limits"): every admission spends a token Redis granted,
// and Redis grants tokens by the same GCRA as the exact limiter; the only extra admissions are tokens
// granted before an interval and spent in it, which a node held at the interval's start: at most b per
// node and key. So in any interval the admissions of one budget exceed the exact limiter's maximum by
// at most N x b for N nodes. The same held credit can refuse a caller early on another node: at most
// N x b requests short of the budget. tests/integration/rate_admission_test.cpp checks both.
//
// Memory: the key table holds at most `max_keys` keys (a key that does not fit is decided by the round
// trip alone, and its leftover tokens go back); waiting requests are capped by `max_waiting` (the
// caller answers 503 beyond it).
//
// Thread-safety: admit() from any threads; reconcile() is serialised internally.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "http/rate_limiter.hpp"

namespace mercato::http {

struct rate_admission_options {
  std::uint32_t max_credit = 1000;        // the largest credit per key a node holds (0: every rule is exact)
  std::uint32_t credit_divisor = 64;      // b = min(max_credit, limit / credit_divisor)
  std::vector<std::string> exact;         // rule names never batched (login, register)
  std::chrono::milliseconds interval{100};  // the reconciler's period; 0: no thread, call reconcile() yourself
  std::chrono::milliseconds idle_return{2000};  // credit unused this long goes back to Redis
  std::size_t max_keys = 100'000;         // bound of the key table
  std::size_t max_waiting = 10'000;       // requests waiting for a round trip
};

class rate_admission {
 public:
  using clock = std::chrono::system_clock;
  // Called once for a request that waited: from the reconciler thread (or inside reconcile()).
  using callback = std::function<void(const rate_limit_verdict&)>;
  enum class outcome {
    decided,     // `out` holds the verdict
    waiting,     // `later` will be called with it
    overloaded,  // too many requests wait already; nothing charged, `later` dropped
  };

  // `limiter` (its Redis client, key prefix and local counters) must outlive this.
  explicit rate_admission(rate_limiter& limiter, rate_admission_options opts = {});
  // stop().
  ~rate_admission();
  rate_admission(const rate_admission&) = delete;
  rate_admission& operator=(const rate_admission&) = delete;

  // b of a rule on this node (0: the rule is decided per request).
  std::uint32_t credit_of(const rate_limit_rule& rule) const;
  // True when one of the enabled charges has a rule with no credit and Redis is configured: the
  // caller must then use rate_limiter::check_all (a blocking round trip) for this request.
  bool exact(const std::vector<rate_limit_charge>& charges) const;

  // Never blocks on the network. The charges must not be exact().
  outcome admit(const std::vector<rate_limit_charge>& charges, clock::time_point now, rate_limit_verdict& out,
                callback later);

  // Stops the reconciler; requests still waiting are answered (one last round trip, else the local
  // counters), and later admissions are decided by the local counters. Idempotent.
  void stop();

  // One round trip (see above). The reconciler thread calls it; with interval 0 the owner does.
  void reconcile(clock::time_point now = clock::now());

  // For tests and operators.
  std::size_t keys() const;
  std::int64_t credit(const rate_limit_rule& rule, std::string_view key) const;  // usable tokens held
  std::size_t waiting() const;
  std::uint64_t round_trips() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace mercato::http
