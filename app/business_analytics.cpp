#include "app/business_analytics.hpp"

#include <chrono>
#include <map>
#include <set>
#include <string>
#include <utility>

#include <caf/all.hpp>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>

#include "telemetry/metrics.hpp"

namespace mercato::app {

// Registered on the node's registry here rather than in telemetry/metrics: the series belong to this
// component, and only it writes them.
struct business_analytics::series {
  explicit series(telemetry::metrics& m)
      : orders_placed(prometheus::BuildCounter()
                          .Name("mercato_orders_placed_total")
                          .Help("Orders placed (OrderPlaced events this node delivered, each once)")
                          .Register(m.registry())
                          .Add({})),
        revenue(prometheus::BuildCounter()
                    .Name("mercato_revenue_minor_units_total")
                    .Help("Sum of the total_amount of the orders placed, in minor units, by currency")
                    .Register(m.registry())),
        payments(prometheus::BuildCounter()
                     .Name("mercato_payments_total")
                     .Help("Payments that ended processed (captured) or failed (declined), by result")
                     .Register(m.registry())),
        payments_processed(payments.Add({{"result", "processed"}})),
        payments_failed(payments.Add({{"result", "failed"}})),
        orders_per_minute(prometheus::BuildGauge()
                              .Name("mercato_business_orders_per_minute")
                              .Help("Orders placed per minute over the last hour (this node's analytics)")
                              .Register(m.registry())
                              .Add({})),
        revenue_per_hour(prometheus::BuildGauge()
                             .Name("mercato_business_revenue_per_hour")
                             .Help("Revenue per hour over the last hour, in minor units, by currency")
                             .Register(m.registry())),
        average_order_value(prometheus::BuildGauge()
                                .Name("mercato_business_average_order_value")
                                .Help("Average order total over the last hour, in minor units, by currency")
                                .Register(m.registry())),
        conversion_rate(prometheus::BuildGauge()
                            .Name("mercato_business_conversion_rate")
                            .Help("Carts checked out / carts with items added or checked out, over the last hour")
                            .Register(m.registry())
                            .Add({})),
        payment_failure_rate(prometheus::BuildGauge()
                                 .Name("mercato_business_payment_failure_rate")
                                 .Help("Failed payments / (failed + processed) over the last hour; 0 with none")
                                 .Register(m.registry())
                                 .Add({})),
        abandonment(m.cart_abandonment_ratio) {}

  void count(const actors::business_event& e) {
    using kind = actors::business_event_kind;
    switch (e.kind) {
      case kind::order_placed:
        orders_placed.Increment();
        revenue.Add({{"currency", e.currency}}).Increment(static_cast<double>(e.amount));
        break;
      case kind::payment_processed: payments_processed.Increment(); break;
      case kind::payment_failed: payments_failed.Increment(); break;
      default: break;
    }
  }

  void set(const actors::business_figures& f) {
    orders_per_minute.Set(f.orders_per_minute);
    conversion_rate.Set(f.conversion_rate);
    payment_failure_rate.Set(f.payment_failure_rate);
    std::set<std::string> now;
    for (const auto& c : f.by_currency) {
      revenue_per_hour.Add({{"currency", c.currency}}).Set(c.revenue_per_hour);
      average_order_value.Add({{"currency", c.currency}}).Set(c.average_order_value);
      now.insert(c.currency);
    }
    // A currency that left the window reads 0 (its series stays, as Prometheus expects).
    for (const auto& c : currencies) {
      if (!now.count(c)) {
        revenue_per_hour.Add({{"currency", c}}).Set(0);
        average_order_value.Add({{"currency", c}}).Set(0);
      }
    }
    currencies.insert(now.begin(), now.end());
  }

  prometheus::Counter& orders_placed;
  prometheus::Family<prometheus::Counter>& revenue;
  prometheus::Family<prometheus::Counter>& payments;
  prometheus::Counter& payments_processed;
  prometheus::Counter& payments_failed;
  prometheus::Gauge& orders_per_minute;
  prometheus::Family<prometheus::Gauge>& revenue_per_hour;
  prometheus::Family<prometheus::Gauge>& average_order_value;
  prometheus::Gauge& conversion_rate;
  prometheus::Gauge& payment_failure_rate;
  prometheus::Gauge& abandonment;
  std::set<std::string> currencies;  // only the actor touches it (set runs in its handlers)
};

business_analytics::business_analytics(caf::actor_system& sys, telemetry::metrics& metrics,
                                       actors::analytics_options opts)
    : series_(std::make_shared<series>(metrics)) {
  auto s = series_;
  opts.counted = [s](const actors::business_event& e) { s->count(e); };
  opts.gauges = [s](const actors::business_figures& f) { s->set(f); };
  opts.cart_abandonment = [s] { return s->abandonment.Value(); };
  actor_ = actors::spawn_analytics(sys, std::move(opts));
}

business_analytics::~business_analytics() { stop(); }

void business_analytics::stop() {
  if (actor_) {
    caf::anon_send_exit(actor_, caf::exit_reason::user_shutdown);
    actor_ = caf::actor{};
  }
}

persistence::outbox_filter business_analytics::filter() {
  return {actors::business_aggregate_kinds(), actors::business_event_types()};
}

persistence::outbox_dispatcher::handler business_analytics::subscriber() const {
  return [target = actor_](const std::vector<persistence::outbox_event>& events) {
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    actors::business_batch batch;
    for (const auto& e : events) {
      if (auto be = actors::parse_business_event(e.id, e.aggregate_kind, e.aggregate_id, e.event_type, e.occurred_at,
                                                 e.data_json, now)) {
        batch.events.push_back(std::move(*be));
      }
    }
    if (!batch.events.empty()) {
      // A mailbox enqueue: never blocks. If the actor is gone (the node is stopping), the figures are
      // dropped with it; they are in memory only.
      caf::anon_send(target, std::move(batch));
    }
  };
}

}  // namespace mercato::app
