#include "telemetry/metrics.hpp"

#include <algorithm>
#include <sstream>

#include <prometheus/text_serializer.h>

namespace mercato::telemetry {
namespace {

const prometheus::Histogram::BucketBoundaries& latency_buckets() {
  static const prometheus::Histogram::BucketBoundaries b{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                         0.05,   0.1,   0.25,   0.5,   1.0,  2.5, 5.0};
  return b;
}

}  // namespace

std::string_view metric_route(std::string_view route);

metrics::metrics()
    : metrics(std::make_shared<prometheus::Registry>()) {}

metrics::metrics(std::shared_ptr<prometheus::Registry> reg)
    : http_in_flight(prometheus::BuildGauge()
                         .Name("mercato_http_requests_in_flight")
                         .Help("HTTP requests received and not yet answered")
                         .Register(*reg)
                         .Add({})),
      http_connections(prometheus::BuildGauge()
                           .Name("mercato_http_connections")
                           .Help("Open HTTP connections")
                           .Register(*reg)
                           .Add({})),
      http_connections_refused(prometheus::BuildCounter()
                                   .Name("mercato_http_connections_refused_total")
                                   .Help("Connections answered 503 and closed at once: http.max_connections were open")
                                   .Register(*reg)
                                   .Add({})),
      db_pool_size(prometheus::BuildGauge()
                       .Name("mercato_db_pool_size")
                       .Help("PostgreSQL connections the pool may hold")
                       .Register(*reg)
                       .Add({})),
      db_pool_in_use(prometheus::BuildGauge()
                         .Name("mercato_db_pool_in_use")
                         .Help("PostgreSQL pool connections currently running a job")
                         .Register(*reg)
                         .Add({})),
      db_queue_depth(prometheus::BuildGauge()
                         .Name("mercato_db_queue_depth")
                         .Help("Database jobs waiting for a pool connection")
                         .Register(*reg)
                         .Add({})),
      db_failures(prometheus::BuildCounter()
                      .Name("mercato_db_failures_total")
                      .Help("Database jobs that failed because PostgreSQL was unavailable or errored")
                      .Register(*reg)
                      .Add({})),
      db_up(prometheus::BuildGauge()
                .Name("mercato_db_up")
                .Help("1 while the last PostgreSQL connection attempt succeeded")
                .Register(*reg)
                .Add({})),
      snapshot_batch_size(prometheus::BuildHistogram()
                              .Name("mercato_snapshot_batch_size")
                              .Help("Entity snapshots committed per transaction")
                              .Register(*reg)
                              .Add({}, prometheus::Histogram::BucketBoundaries{1, 2, 5, 10, 25, 50, 100, 250, 500,
                                                                               1000})),
      snapshot_commit_seconds(prometheus::BuildHistogram()
                                  .Name("mercato_snapshot_commit_seconds")
                                  .Help("Time to commit one batch of snapshots, events and projections")
                                  .Register(*reg)
                                  .Add({}, latency_buckets())),
      snapshot_queue_depth(prometheus::BuildGauge()
                               .Name("mercato_snapshot_queue_depth")
                               .Help("Snapshots waiting to be committed")
                               .Register(*reg)
                               .Add({})),
      snapshot_fenced(prometheus::BuildCounter()
                          .Name("mercato_snapshot_fenced_total")
                          .Help("Snapshot writes rejected: stale version or lost shard lease")
                          .Register(*reg)
                          .Add({})),
      snapshot_failed(prometheus::BuildCounter()
                          .Name("mercato_snapshot_failed_total")
                          .Help("Snapshot writes that failed (database unavailable past the deadline, or an error)")
                          .Register(*reg)
                          .Add({})),
      snapshot_overloaded(prometheus::BuildCounter()
                              .Name("mercato_snapshot_overloaded_total")
                              .Help("Snapshot writes refused because the write queue was full")
                              .Register(*reg)
                              .Add({})),
      outbox_dispatched(prometheus::BuildCounter()
                            .Name("mercato_outbox_dispatched_total")
                            .Help("Outbox events delivered to every subscriber and marked dispatched")
                            .Register(*reg)
                            .Add({})),
      outbox_pending(prometheus::BuildGauge()
                         .Name("mercato_outbox_pending_events")
                         .Help("Committed outbox events not yet dispatched (capped at 1000000; reported by the "
                               "node holding the dispatch lock, 0 on the others)")
                         .Register(*reg)
                         .Add({})),
      outbox_oldest_pending_seconds(prometheus::BuildGauge()
                                        .Name("mercato_outbox_oldest_pending_seconds")
                                        .Help("Age of the oldest undispatched outbox event (0 when none; reported "
                                              "by the node holding the dispatch lock)")
                                        .Register(*reg)
                                        .Add({})),
      outbox_dispatch_lag_seconds(prometheus::BuildHistogram()
                                      .Name("mercato_outbox_dispatch_lag_seconds")
                                      .Help("Time from an event's transaction start (occurred_at) to its delivery "
                                            "to every subscriber")
                                      .Register(*reg)
                                      .Add({}, prometheus::Histogram::BucketBoundaries{
                                                   0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                                                   30.0, 60.0, 300.0, 1800.0})),
      outbox_retention_deleted(prometheus::BuildCounter()
                                   .Name("mercato_outbox_retention_deleted_total")
                                   .Help("Dispatched outbox events deleted after the retention period")
                                   .Register(*reg)
                                   .Add({})),
      outbox_dispatcher_active(prometheus::BuildGauge()
                                   .Name("mercato_outbox_dispatcher_active")
                                   .Help("1 while this node holds the outbox dispatch lock and dispatches")
                                   .Register(*reg)
                                   .Add({})),
      reservations_expired(prometheus::BuildCounter()
                               .Name("mercato_inventory_expiry_sweeps_total")
                               .Help("Inventory entities the housekeeping sweep asked to drop reservations past "
                                     "their TTL")
                               .Register(*reg)
                               .Add({})),
      idempotency_keys_deleted(prometheus::BuildCounter()
                                   .Name("mercato_idempotency_keys_deleted_total")
                                   .Help("Idempotency-Key records deleted after their 24 h expiry")
                                   .Register(*reg)
                                   .Add({})),
      carts_active(prometheus::BuildGauge()
                       .Name("mercato_carts_active")
                       .Help("Open carts with items changed within cart.abandoned_after_s (refreshed by "
                             "housekeeping)")
                       .Register(*reg)
                       .Add({})),
      carts_abandoned(prometheus::BuildGauge()
                          .Name("mercato_carts_abandoned")
                          .Help("Open carts with items unchanged for cart.abandoned_after_s and not ordered "
                                "(refreshed by housekeeping)")
                          .Register(*reg)
                          .Add({})),
      cart_abandonment_ratio(prometheus::BuildGauge()
                                 .Name("mercato_cart_abandonment_ratio")
                                 .Help("Abandoned carts / carts with items (abandoned + active); 0 when none")
                                 .Register(*reg)
                                 .Add({})),
      registry_(std::move(reg)),
      http_requests_(prometheus::BuildCounter()
                         .Name("mercato_http_requests_total")
                         .Help("HTTP requests answered, by route, method and status")
                         .Register(*registry_)),
      http_duration_(prometheus::BuildHistogram()
                         .Name("mercato_http_request_duration_seconds")
                         .Help("Time from request read to response written, by route")
                         .Register(*registry_)),
      entities_active_(prometheus::BuildGauge()
                           .Name("mercato_entities_active")
                           .Help("Entity actors currently active on this node, by kind")
                           .Register(*registry_)),
      entities_parked_(prometheus::BuildGauge()
                           .Name("mercato_entities_parked")
                           .Help("Entities kept parked on this node (no actor, committed state in memory), by kind; "
                                 "included in mercato_entities_active")
                           .Register(*registry_)),
      entities_parked_bytes_(prometheus::BuildGauge()
                                 .Name("mercato_entities_parked_bytes")
                                 .Help("Memory the parked entities take (state, recent command ids, id, table "
                                       "node), by kind; capped by entities.max_parked_mb")
                                 .Register(*registry_)),
      entity_activations_(prometheus::BuildCounter()
                              .Name("mercato_entity_activations_total")
                              .Help("Entity activations (snapshot loaded or started empty), by kind")
                              .Register(*registry_)),
      entity_passivations_(prometheus::BuildCounter()
                               .Name("mercato_entity_passivations_total")
                               .Help("Entities stopped after being idle, by kind")
                               .Register(*registry_)),
      entity_restarts_(prometheus::BuildCounter()
                           .Name("mercato_entity_restarts_total")
                           .Help("Entities restarted from their last snapshot after a crash, by kind")
                           .Register(*registry_)),
      entity_poison_dropped_(prometheus::BuildCounter()
                                 .Name("mercato_entity_poison_messages_total")
                                 .Help("Messages dropped with entity_failed after crashing an entity repeatedly")
                                 .Register(*registry_)),
      outbox_subscriber_failures_(prometheus::BuildCounter()
                                      .Name("mercato_outbox_subscriber_failures_total")
                                      .Help("Outbox deliveries a subscriber refused by throwing (the batch is "
                                            "delivered again, or parked after outbox.max_attempts), by subscriber")
                                      .Register(*registry_)),
      outbox_parked_(prometheus::BuildCounter()
                         .Name("mercato_outbox_parked_total")
                         .Help("Outbox events a subscriber kept refusing, parked for it in outbox_parked after "
                               "outbox.max_attempts tries, by subscriber")
                         .Register(*registry_)),
      cache_requests_(prometheus::BuildCounter()
                          .Name("mercato_cache_requests_total")
                          .Help("Catalog cache lookups by level (l1 in-process, l2 Redis, lines: the product "
                                "lines add-to-cart reads) and result (hit, miss, error: Redis unavailable)")
                          .Register(*registry_)),
      cache_l1_hit_(cache_requests_.Add({{"level", "l1"}, {"result", "hit"}})),
      cache_l1_miss_(cache_requests_.Add({{"level", "l1"}, {"result", "miss"}})),
      cache_l2_hit_(cache_requests_.Add({{"level", "l2"}, {"result", "hit"}})),
      cache_l2_miss_(cache_requests_.Add({{"level", "l2"}, {"result", "miss"}})),
      cache_l2_error_(cache_requests_.Add({{"level", "l2"}, {"result", "error"}})),
      cache_lines_hit_(cache_requests_.Add({{"level", "lines"}, {"result", "hit"}})),
      cache_lines_miss_(cache_requests_.Add({{"level", "lines"}, {"result", "miss"}})),
      cache_loads_(prometheus::BuildCounter()
                       .Name("mercato_cache_loads_total")
                       .Help("Catalog reads that missed both cache levels and were loaded from PostgreSQL")
                       .Register(*registry_)
                       .Add({})),
      cache_l1_evictions_(prometheus::BuildCounter()
                              .Name("mercato_cache_l1_evictions_total")
                              .Help("Entries evicted from the in-process cache to stay within its bounds")
                              .Register(*registry_)
                              .Add({})),
      cache_remote_invalidations_(prometheus::BuildCounter()
                                      .Name("mercato_cache_remote_invalidations_total")
                                      .Help("Cache invalidations made by other nodes that this node applied")
                                      .Register(*registry_)
                                      .Add({})),
      cache_hit_ratio_(prometheus::BuildGauge()
                           .Name("mercato_cache_hit_ratio")
                           .Help("Catalog cache hits (either level) over lookups since the node started; 0 "
                                 "before the first lookup")
                           .Register(*registry_)
                           .Add({})),
      cache_l1_entries_(prometheus::BuildGauge()
                            .Name("mercato_cache_l1_entries")
                            .Help("Entries in the in-process catalog cache")
                            .Register(*registry_)
                            .Add({})),
      cache_l1_bytes_(prometheus::BuildGauge()
                          .Name("mercato_cache_l1_bytes")
                          .Help("Approximate memory held by the in-process catalog cache")
                          .Register(*registry_)
                          .Add({})),
      stage_seconds_(prometheus::BuildHistogram()
                         .Name("mercato_stage_seconds")
                         .Help("Time an add-to-cart spends in each stage: admission (request read to its "
                               "handler: identity, routing, rate limits), handler (product lookup, the cart "
                               "entity and its durable write, to the answer); writer_queue (snapshot queued to "
                               "its batch starting) and writer_commit (batch start to commit) cover every "
                               "entity write")
                         .Register(*registry_)) {
  const char* names[] = {"admission", "handler", "writer_queue", "writer_commit"};
  for (std::size_t i = 0; i < stages_.size(); ++i) {
    stages_[i] = &stage_seconds_.Add({{"stage", names[i]}}, latency_buckets());
  }
}

prometheus::Gauge& metrics::entities_active(const std::string& kind) { return entities_active_.Add({{"kind", kind}}); }
prometheus::Gauge& metrics::entities_parked(const std::string& kind) { return entities_parked_.Add({{"kind", kind}}); }
prometheus::Gauge& metrics::entities_parked_bytes(const std::string& kind) {
  return entities_parked_bytes_.Add({{"kind", kind}});
}
prometheus::Counter& metrics::entity_activations(const std::string& kind) {
  return entity_activations_.Add({{"kind", kind}});
}
prometheus::Counter& metrics::entity_passivations(const std::string& kind) {
  return entity_passivations_.Add({{"kind", kind}});
}
prometheus::Counter& metrics::entity_restarts(const std::string& kind) {
  return entity_restarts_.Add({{"kind", kind}});
}
prometheus::Counter& metrics::entity_poison_dropped(const std::string& kind) {
  return entity_poison_dropped_.Add({{"kind", kind}});
}

prometheus::Counter& metrics::outbox_subscriber_failures(const std::string& subscriber) {
  return outbox_subscriber_failures_.Add({{"subscriber", subscriber}});
}
prometheus::Counter& metrics::outbox_parked(const std::string& subscriber) {
  return outbox_parked_.Add({{"subscriber", subscriber}});
}

void metrics::report_cache(const cache_counts& c) {
  std::lock_guard<std::mutex> lk(cache_mu_);
  auto advance = [](prometheus::Counter& counter, std::uint64_t now, std::uint64_t& last) {
    if (now > last) {
      counter.Increment(static_cast<double>(now - last));
      last = now;
    }
  };
  advance(cache_l1_hit_, c.l1_hits, cache_last_.l1_hits);
  advance(cache_l1_miss_, c.l1_misses, cache_last_.l1_misses);
  advance(cache_l2_hit_, c.l2_hits, cache_last_.l2_hits);
  advance(cache_l2_miss_, c.l2_misses, cache_last_.l2_misses);
  advance(cache_l2_error_, c.l2_errors, cache_last_.l2_errors);
  advance(cache_loads_, c.loads, cache_last_.loads);
  advance(cache_l1_evictions_, c.l1_evictions, cache_last_.l1_evictions);
  advance(cache_remote_invalidations_, c.remote_invalidations, cache_last_.remote_invalidations);
  advance(cache_lines_hit_, c.lines_hits, cache_last_.lines_hits);
  advance(cache_lines_miss_, c.lines_misses, cache_last_.lines_misses);
  // Every read starts with one L1 lookup, so L1 lookups are all lookups; an L2 hit is a hit too.
  const auto lookups = c.l1_hits + c.l1_misses;
  // (The counts are read one by one while reads go on, so clamp a momentary excess.)
  cache_hit_ratio_.Set(lookups == 0 ? 0.0
                                    : std::min(1.0, static_cast<double>(c.l1_hits + c.l2_hits) /
                                                        static_cast<double>(lookups)));
  cache_l1_entries_.Set(static_cast<double>(c.l1_entries));
  cache_l1_bytes_.Set(static_cast<double>(c.l1_bytes));
}

std::string metrics::scrape() const {
  std::ostringstream out;
  prometheus::TextSerializer{}.Serialize(out, registry_->Collect());
  return out.str();
}

std::string_view metric_method(std::string_view method) {
  static constexpr std::string_view known[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT",
                                               "TRACE"};
  for (auto k : known) {
    if (method == k) {
      return k;
    }
  }
  return "other";
}

std::string_view metric_route(std::string_view route) {
  // Routes are the router's patterns ("/api/v1/products/{id}") or "unmatched"; anything else (a raw path
  // by mistake) folds into "unmatched" rather than opening a series per client path.
  if (route.empty() || route.front() != '/' || route.size() > 128) {
    return "unmatched";
  }
  return route;
}

namespace {
std::string status_class_label(unsigned status) { return std::string(1, static_cast<char>('0' + status / 100)) + "xx"; }
}  // namespace

http_route_series::http_route_series(metrics& owner, std::string route, std::string method)
    : owner_(owner), route_(std::move(route)), method_(std::move(method)) {}

void http_route_series::observe(unsigned status, double seconds) {
  if (status < 100 || status > 599) {
    status = 500;
  }
  auto& counter_slot = by_status_[status - 100];
  auto* counter = counter_slot.load(std::memory_order_acquire);
  if (counter == nullptr) {
    // Family::Add returns the existing series for the same labels, so a race here resolves both to one.
    counter = &owner_.http_requests_.Add({{"route", route_}, {"method", method_}, {"status", std::to_string(status)}});
    counter_slot.store(counter, std::memory_order_release);
  }
  counter->Increment();
  auto& hist_slot = by_class_[status / 100 - 1];
  auto* hist = hist_slot.load(std::memory_order_acquire);
  if (hist == nullptr) {
    hist = &owner_.http_duration_.Add({{"route", route_}, {"status_class", status_class_label(status)}},
                                      latency_buckets());
    hist_slot.store(hist, std::memory_order_release);
  }
  hist->Observe(seconds);
}

http_route_series& metrics::route_series(std::string_view route_pattern, std::string_view method) {
  const auto route = metric_route(route_pattern);
  const auto m = metric_method(method);
  std::lock_guard<std::mutex> lk(series_mu_);
  for (auto& s : route_series_) {
    if (s.route_ == route && s.method_ == m) {
      return s;
    }
  }
  return route_series_.emplace_back(*this, std::string(route), std::string(m));
}

void metrics::observe_http_request(std::string_view route_pattern, std::string_view method, unsigned status,
                                   double seconds) {
  // Label values come from fixed sets only: a client choosing methods, paths or statuses must not be able
  // to create series (each one lives until the process ends).
  const auto route = metric_route(route_pattern);
  if (status < 100 || status > 599) {
    status = 500;
  }
  const std::string status_text = std::to_string(status);
  http_requests_.Add({{"route", std::string(route)}, {"method", std::string(metric_method(method))}, {"status", status_text}})
      .Increment();
  http_duration_.Add({{"route", std::string(route)}, {"status_class", status_text.substr(0, 1) + "xx"}},
                     latency_buckets())
      .Observe(seconds);
}

}  // namespace mercato::telemetry
