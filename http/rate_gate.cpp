#include "http/rate_gate.hpp"

#include <array>
#include <map>
#include <mutex>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "http/worker_pool.hpp"

namespace mercato::http {

struct rate_gate::instruments {
  explicit instruments(prometheus::Registry& reg)
      : limited(prometheus::BuildCounter()
                    .Name("mercato_rate_limited_total")
                    .Help("Requests refused with 429, by the budget that ran out")
                    .Register(reg)),
        fallback(prometheus::BuildGauge()
                     .Name("mercato_rate_limit_local_fallback")
                     .Help("1 while rate limits are decided on local counters because Redis is unreachable")
                     .Register(reg)
                     .Add({})) {}

  prometheus::Counter& limited_for(const std::string& rule) {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = by_rule.find(rule);
    if (it == by_rule.end()) {
      it = by_rule.emplace(rule, &limited.Add({{"rule", rule}})).first;
    }
    return *it->second;
  }

  prometheus::Family<prometheus::Counter>& limited;
  prometheus::Gauge& fallback;
  std::mutex mutex;
  std::map<std::string, prometheus::Counter*> by_rule;
};

namespace {

rate_admission_options with_exact(rate_admission_options o, const rate_limit_rules& rules) {
  o.exact.push_back(rules.login.name);
  o.exact.push_back(rules.register_account.name);
  return o;
}

response overloaded() {
  return response::from(service_unavailable("overloaded", "too many requests are waiting; try again shortly"))
      .with_header("Retry-After", "1");
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

}  // namespace

rate_gate::rate_gate(std::shared_ptr<persistence::redis_client> redis, rate_limit_rules rules,
                     rate_limiter_options storage, worker_pool& workers, prometheus::Registry* registry,
                     rate_admission_options admission)
    : rules_(std::move(rules)),
      limiter_(std::make_unique<rate_limiter>(redis, storage)),
      admission_(std::make_unique<rate_admission>(*limiter_, with_exact(std::move(admission), rules_))),
      backoff_(std::make_unique<login_backoff>(redis, rules_.login_backoff, storage)),
      workers_(workers),
      metrics_(registry ? std::make_unique<instruments>(*registry) : nullptr) {
  if (metrics_) {
    for (const auto* r : {&rules_.global, &rules_.login, &rules_.register_account, &rules_.orders, &rules_.search,
                          &rules_.authenticated, &rules_.anonymous}) {
      metrics_->limited_for(r->name);  // zeros, not absent series
    }
  }
}

rate_gate::~rate_gate() = default;

void rate_gate::stop() { admission_->stop(); }

bool rate_gate::using_fallback() const { return limiter_->using_fallback() || backoff_->using_fallback(); }

void rate_gate::admit(std::shared_ptr<request_context> ctx, next_fn next) {
  auto charges = charges_of(*ctx);
  if (admission_->exact(charges)) {
    exact(std::move(ctx), std::move(charges), std::move(next));
    return;
  }
  // The rules a refusal may name (charges_of makes at most three charges).
  std::array<const rate_limit_rule*, 4> rules{};
  for (std::size_t i = 0; i < charges.size() && i < rules.size(); ++i) {
    rules[i] = charges[i].rule;
  }
  auto shared_next = std::make_shared<next_fn>(std::move(next));
  rate_limit_verdict verdict;
  const auto outcome = admission_->admit(
      charges, rate_limiter::clock::now(), verdict, [this, ctx, rules, shared_next](const rate_limit_verdict& v) {
        // On the reconciler thread: the request goes on on a worker, as after an exact decision.
        auto r = answer(*ctx, v.refused ? rules[*v.refused] : nullptr, v);
        auto job = [shared_next, r = std::make_shared<response>(std::move(r))] {
          if (r->status == 0) {
            (*shared_next)(std::nullopt);
          } else {
            (*shared_next)(std::move(*r));
          }
        };
        if (!workers_.submit(job)) {
          (*shared_next)(overloaded());
        }
      });
  switch (outcome) {
    case rate_admission::outcome::decided: {
      auto r = answer(*ctx, verdict.refused ? rules[*verdict.refused] : nullptr, verdict);
      if (r.status == 0) {
        (*shared_next)(std::nullopt);
      } else {
        (*shared_next)(std::move(r));
      }
      return;
    }
    case rate_admission::outcome::waiting:
      return;
    case rate_admission::outcome::overloaded:
      (*shared_next)(overloaded());
      return;
  }
}

void rate_gate::exact(std::shared_ptr<request_context> ctx, std::vector<rate_limit_charge> charges, next_fn next) {
  auto shared_next = std::make_shared<next_fn>(std::move(next));
  auto shared_charges = std::make_shared<std::vector<rate_limit_charge>>(std::move(charges));
  const bool queued = workers_.submit([this, ctx, shared_next, shared_charges] {
    // One round trip, all or nothing: a refused request is charged to no budget.
    const auto verdict = limiter_->check_all(*shared_charges);
    auto r = answer(*ctx, verdict.refused ? (*shared_charges)[*verdict.refused].rule : nullptr, verdict);
    if (r.status == 0) {
      (*shared_next)(std::nullopt);
    } else {
      (*shared_next)(std::move(r));
    }
  });
  if (!queued) {
    (*shared_next)(overloaded());
  }
}

std::vector<rate_limit_charge> rate_gate::charges_of(const request_context& ctx) const {
  const std::string ip_key = "ip:" + (ctx.client_ip.empty() ? std::string("unknown") : ctx.client_ip);
  std::string caller_key = ctx.caller ? "user:" + ctx.caller->user_id : ip_key;

  std::vector<rate_limit_charge> charges;
  charges.reserve(3);
  const auto method = ctx.method();
  if (method == bhttp::verb::post && ctx.route == "/api/v1/auth/login") {
    charges.push_back({&rules_.login, ip_key});
  } else if (method == bhttp::verb::post && ctx.route == "/api/v1/auth/register") {
    charges.push_back({&rules_.register_account, ip_key});
  } else if (starts_with(ctx.route, "/api/v1/orders") ||
             (method == bhttp::verb::post && ctx.route == "/api/v1/carts/{id}/checkout")) {
    // A checkout places an order (the seed's POST /api/orders), so it spends the orders budget too.
    charges.push_back({&rules_.orders, caller_key});
  } else if (ctx.route == "/api/v1/products" && method == bhttp::verb::get) {
    if (const auto* q = ctx.query_param("q"); q != nullptr && !q->empty()) {
      charges.push_back({&rules_.search, caller_key});
    }
  }
  charges.push_back({ctx.caller ? &rules_.authenticated : &rules_.anonymous, std::move(caller_key)});
  charges.push_back({&rules_.global, ip_key});
  return charges;
}

response rate_gate::answer(request_context& ctx, const rate_limit_rule* refused_by, const rate_limit_verdict& verdict) {
  if (metrics_) {
    metrics_->fallback.Set(using_fallback() ? 1 : 0);
  }
  const auto& d = verdict.decision;
  if (verdict.refused && refused_by != nullptr) {
    const auto& rule = *refused_by;
    if (metrics_) {
      metrics_->limited_for(rule.name).Increment();
    }
    auto p = problem{429, "rate_limited", "Too many requests",
                     "the " + rule.name + " budget of " + std::to_string(rule.limit) + " requests per " +
                         std::to_string(std::chrono::duration_cast<std::chrono::seconds>(rule.window).count()) +
                         " s is used up; retry after " + std::to_string(d.retry_after.count()) + " s",
                     {}};
    return response::from(p)
        .with_header("Retry-After", std::to_string(d.retry_after.count()))
        .with_header("RateLimit-Limit", std::to_string(d.limit))
        .with_header("RateLimit-Remaining", "0")
        .with_header("RateLimit-Reset", std::to_string(d.reset.count()));
  }
  if (verdict.any) {
    ctx.extra_headers.emplace_back("RateLimit-Limit", std::to_string(d.limit));
    ctx.extra_headers.emplace_back("RateLimit-Remaining", std::to_string(d.remaining));
    ctx.extra_headers.emplace_back("RateLimit-Reset", std::to_string(d.reset.count()));
  }
  response admitted;
  admitted.status = 0;
  return admitted;
}

}  // namespace mercato::http
