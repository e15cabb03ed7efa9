#pragma once
// The edge's rate limiting (seed "rateLimitConfig"): which budgets a request is charged to, the 429
// answer, and the RateLimit-* headers. Decisions come from http::rate_limiter (GCRA, shared through
// Redis, local fallback) and run on the worker pool, because a Redis round trip blocks.
//
// Every request except the operations endpoints is charged to these budgets in one Redis script call,
// all or nothing (a refused request costs no budget; the first refusing budget in this order answers):
//   1. the endpoint's budget: POST /auth/login and /auth/register (per client IP), /orders (per
//      caller), product search with `q` (per caller);
//   2. the caller's budget: `authenticated` per user id, or `anonymous` per client IP;
//   3. the global budget per client IP.
// The response carries the RateLimit-* headers of the budget closest to running out.

#include <functional>
#include <memory>
#include <optional>

#include "http/rate_limiter.hpp"
#include "http/request.hpp"

namespace prometheus {
class Registry;
}

namespace mercato::http {

class worker_pool;

class rate_gate {
 public:
  // Continues with nullopt (admitted; RateLimit-* headers added to ctx->extra_headers) or a response
  // to send instead (429, or 503 when the worker queue is full). Runs on a worker thread.
  using next_fn = std::function<void(std::optional<response>)>;

  rate_gate(std::shared_ptr<persistence::redis_client> redis, rate_limit_rules rules, rate_limiter_options storage,
            worker_pool& workers, prometheus::Registry* registry);
  ~rate_gate();
  rate_gate(const rate_gate&) = delete;
  rate_gate& operator=(const rate_gate&) = delete;

  void admit(std::shared_ptr<request_context> ctx, next_fn next);

  // Per-account slow-down of failed logins (used by the login handler).
  login_backoff& logins() { return *backoff_; }
  bool enabled() const { return rules_.enabled; }
  // True while Redis is unreachable and decisions are local (for /readyz detail).
  bool using_fallback() const;

 private:
  response decide(request_context& ctx);

  rate_limit_rules rules_;
  std::unique_ptr<rate_limiter> limiter_;
  std::unique_ptr<login_backoff> backoff_;
  worker_pool& workers_;
  struct instruments;
  std::unique_ptr<instruments> metrics_;
};

}  // namespace mercato::http
