#include "http/routes/analytics_routes.hpp"

#include <cmath>
#include <cstdio>
#include <ctime>
#include <utility>

#include <boost/json.hpp>
#include <caf/all.hpp>

#include "actors/analytics/analytics_actor.hpp"

namespace mercato::http {
namespace {

namespace json = boost::json;

std::string rfc3339(std::int64_t unix_s) {
  const std::time_t t = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

json::object money(double amount, const std::string& currency) {
  return {{"amount", static_cast<std::int64_t>(std::llround(amount))}, {"currency", currency}};
}

json::object body_of(const actors::business_figures& f, const std::string& window, const std::string& fallback_currency) {
  const auto& currency = f.currency.empty() ? fallback_currency : f.currency;
  json::array by_currency;
  for (const auto& c : f.by_currency) {
    by_currency.push_back(json::object{{"currency", c.currency},
                                       {"orders", c.orders},
                                       {"revenue", money(static_cast<double>(c.revenue), c.currency)},
                                       {"revenue_per_hour", money(c.revenue_per_hour, c.currency)},
                                       {"average_order_value", money(c.average_order_value, c.currency)}});
  }
  return {{"window", window},
          {"window_seconds", f.window_s},
          {"from", rfc3339(f.from_s)},
          {"to", rfc3339(f.to_s)},
          {"coverage_seconds", f.coverage_s},
          {"complete", f.coverage_s >= f.window_s},
          {"orders_per_minute", f.orders_per_minute},
          {"revenue_per_hour", money(f.revenue_per_hour, currency)},
          {"average_order_value", money(f.average_order_value, currency)},
          {"cart_abandonment_rate", f.cart_abandonment_rate},
          {"conversion_rate", f.conversion_rate},
          {"payment_failure_rate", f.payment_failure_rate},
          {"orders_placed", f.orders},
          {"payments_processed", f.payments_processed},
          {"payments_failed", f.payments_failed},
          {"carts_with_items", f.carts_with_items},
          {"carts_checked_out", f.carts_checked_out},
          {"by_currency", std::move(by_currency)}};
}

response unavailable(std::string detail) {
  auto r = response::from(service_unavailable("analytics_unavailable", std::move(detail)));
  r.with_header("Retry-After", "1");
  return r;
}

}  // namespace

void add_analytics_routes(router& routes, caf::actor_system& sys, caf::actor analytics, analytics_routes_options opts) {
  routes.add(
      bhttp::verb::get, "/api/v1/admin/analytics",
      [&sys, analytics = std::move(analytics), opts](auto ctx, responder respond) {
        const auto* given = ctx->query_param("window");
        std::string window = given ? *given : "1h";
        const auto window_s = actors::parse_window(window);
        if (!window_s) {
          respond(invalid_request("window is invalid",
                                  {{"/query/window", "must be <n>m, <n>h or <n>d, from 1m to 24h (e.g. 5m, 1h, 24h)"}}));
          return;
        }
        if (!analytics) {
          respond(unavailable("analytics are not running on this node"));
          return;
        }
        // A short-lived actor asks (CAF-0.17-NOTES: no blocking receive on an io thread); the target
        // travels as a spawn argument, as in entity_bridge.
        sys.spawn(
            [respond, window = std::move(window), window_s = *window_s, timeout = opts.timeout,
             currency = opts.default_currency](caf::event_based_actor* self, caf::actor target) {
              self->request(target, timeout, actors::analytics_query_atom::value, window_s)
                  .then(
                      [respond, window, currency](actors::business_figures& f) {
                        respond(response::json(200, body_of(f, window, currency)));
                      },
                      [respond](caf::error&) { respond(unavailable("the analytics actor did not answer in time")); });
            },
            analytics);
      },
      role_route({"admin"}));
}

}  // namespace mercato::http
