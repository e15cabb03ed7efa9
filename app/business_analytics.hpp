#pragma once
// The node's business analytics assembled (issue 11): the analytics actor, the outbox subscription
// that feeds it, and its Prometheus series:
//   mercato_orders_placed_total, mercato_revenue_minor_units_total{currency}, mercato_payments_total{result}
//     (result: processed, failed) - every event this node delivered, once, since it started;
//   mercato_business_orders_per_minute, mercato_business_revenue_per_hour{currency},
//   mercato_business_average_order_value{currency}, mercato_business_conversion_rate,
//   mercato_business_payment_failure_rate - over the last hour (analytics_options::gauge_window).
// Cart abandonment is the housekeeping gauge mercato_cart_abandonment_ratio (from the carts table); the
// actor reads it for the admin endpoint.

#include <memory>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "actors/analytics/analytics_actor.hpp"
#include "persistence/outbox_dispatcher.hpp"

namespace mercato::telemetry {
class metrics;
}

namespace mercato::app {

class business_analytics {
 public:
  // `metrics` must outlive the actor (the node stops the actor before the metrics go).
  business_analytics(caf::actor_system& sys, telemetry::metrics& metrics, actors::analytics_options opts = {});
  ~business_analytics();
  business_analytics(const business_analytics&) = delete;
  business_analytics& operator=(const business_analytics&) = delete;

  const caf::actor& actor() const { return actor_; }

  // The outbox subscription: parses the business events of a batch and hands them to the actor (never
  // blocks the dispatcher thread; rows that are not business events are skipped).
  persistence::outbox_dispatcher::handler subscriber() const;
  static persistence::outbox_filter filter();

  // Tells the actor to exit (before the actor system waits for its actors). Idempotent.
  void stop();

 private:
  struct series;
  std::shared_ptr<series> series_;
  caf::actor actor_;
};

}  // namespace mercato::app
