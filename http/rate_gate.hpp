#pragma once
// The edge's rate limiting (seed "rateLimitConfig"): which budgets a request is charged to, the 429
// answer, and the RateLimit-* headers. Decisions come from http::rate_admission: on the io thread
// against the node's credit of each budget (tokens taken from the shared GCRA state in Redis in
// batches), or after one batched round trip on the reconciler thread (the request then continues on
// the worker pool). Budgets without credit (login, register, and any budget too small to share out)
// are decided exactly as before: one Redis script call per request on the worker pool.
//
// Every request except the operations endpoints is charged to these budgets, all or nothing (a
// refused request costs no budget; the first refusing budget in this order answers):
//   1. the endpoint's budget: POST /auth/login and /auth/register (per client IP), /orders (per
//      caller), product search with `q` (per caller);
//   2. the caller's budget: `authenticated` per user id, or `anonymous` per client IP;
//   3. the global budget per client IP.
// The response carries the RateLimit-* headers of the budget closest to running out.

#include <functional>
#include <memory>
#include <optional>

#include "http/rate_admission.hpp"
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
  // to send instead (429, or 503 when the worker queue is full). Runs on the calling (io) thread when
  // the node's credit decides, else on a worker thread.
  using next_fn = std::function<void(std::optional<response>)>;

  // `admission.exact` gets the login and register rules added (they are never batched).
  rate_gate(std::shared_ptr<persistence::redis_client> redis, rate_limit_rules rules, rate_limiter_options storage,
            worker_pool& workers, prometheus::Registry* registry, rate_admission_options admission = {});
  ~rate_gate();
  rate_gate(const rate_gate&) = delete;
  rate_gate& operator=(const rate_gate&) = delete;

  void admit(std::shared_ptr<request_context> ctx, next_fn next);
  // Answers the requests waiting for a round trip (through the worker pool, so call it before stopping
  // the pool) and stops the reconciler thread.
  void stop();

  // Per-account slow-down of failed logins (used by the login handler).
  login_backoff& logins() { return *backoff_; }
  bool enabled() const { return rules_.enabled; }
  // True while Redis is unreachable and decisions are local (for /readyz detail).
  bool using_fallback() const;

 private:
  std::vector<rate_limit_charge> charges_of(const request_context& ctx) const;
  // The 429 for a refusal, else status 0 with the RateLimit-* headers added to ctx.
  response answer(request_context& ctx, const rate_limit_rule* refused_by, const rate_limit_verdict& verdict);
  void exact(std::shared_ptr<request_context> ctx, std::vector<rate_limit_charge> charges, next_fn next);

  rate_limit_rules rules_;
  std::unique_ptr<rate_limiter> limiter_;
  std::unique_ptr<rate_admission> admission_;  // after limiter_: stopped before it
  std::unique_ptr<login_backoff> backoff_;
  worker_pool& workers_;
  struct instruments;
  std::unique_ptr<instruments> metrics_;
};

}  // namespace mercato::http
