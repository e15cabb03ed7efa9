#pragma once
// The node's Prometheus registry and the metric families every module reports into.
// Modules get a reference at construction; /metrics serialises the registry in text format.

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace mercato::telemetry {

// The label value of an HTTP method: one of RFC 9110's methods, else "other".
std::string_view metric_method(std::string_view method);

class metrics;

// The series of one (route, method) in mercato_http_requests_total and mercato_http_request_duration_seconds,
// each resolved (mutex + label hash in the registry) the first time its status or status class is seen and
// then read lock-free, so a request costs two atomic loads instead of two registry lookups. Owned by
// `metrics` (metrics::route_series), alive as long as it is.
class http_route_series {
 public:
  http_route_series(metrics& owner, std::string route, std::string method);
  void observe(unsigned status, double seconds);
  const metrics* owner() const { return &owner_; }

 private:
  friend class metrics;
  metrics& owner_;
  const std::string route_;
  const std::string method_;
  std::array<std::atomic<prometheus::Counter*>, 500> by_status_{};   // status - 100
  std::array<std::atomic<prometheus::Histogram*>, 5> by_class_{};    // 1xx .. 5xx
};

class metrics {
 public:
  metrics();
  metrics(const metrics&) = delete;
  metrics& operator=(const metrics&) = delete;

  prometheus::Registry& registry() { return *registry_; }

  // Prometheus text exposition format 0.0.4.
  std::string scrape() const;

  // `route` must be a route pattern or "unmatched"; methods outside RFC 9110's set count as "other".
  void observe_http_request(std::string_view route, std::string_view method, unsigned status, double seconds);
  // The pre-resolved series of one route pattern and method (same labels as observe_http_request); the
  // same object for the same pair. Takes a mutex: call once per route and keep the pointer.
  http_route_series& route_series(std::string_view route, std::string_view method);

  // mercato_stage_seconds{stage}: where an add-to-cart spends its time (README lists the stages).
  enum class stage { admission, handler, writer_queue, writer_commit };
  prometheus::Histogram& stage_seconds(stage s) { return *stages_[static_cast<std::size_t>(s)]; }

  prometheus::Gauge& http_in_flight;
  prometheus::Gauge& http_connections;
  prometheus::Counter& http_connections_refused;
  prometheus::Gauge& db_pool_size;
  prometheus::Gauge& db_pool_in_use;
  prometheus::Gauge& db_queue_depth;
  prometheus::Counter& db_failures;
  prometheus::Gauge& db_up;

  // Snapshot writer (group commit of entity state).
  prometheus::Histogram& snapshot_batch_size;
  prometheus::Histogram& snapshot_commit_seconds;
  prometheus::Gauge& snapshot_queue_depth;
  prometheus::Counter& snapshot_fenced;
  prometheus::Counter& snapshot_failed;
  prometheus::Counter& snapshot_overloaded;

  // Outbox dispatcher. The backlog gauges are reported by the node holding the dispatch lock (0 elsewhere).
  prometheus::Counter& outbox_dispatched;
  prometheus::Gauge& outbox_pending;
  prometheus::Gauge& outbox_oldest_pending_seconds;
  prometheus::Histogram& outbox_dispatch_lag_seconds;
  prometheus::Counter& outbox_retention_deleted;
  prometheus::Gauge& outbox_dispatcher_active;
  prometheus::Counter& outbox_subscriber_failures(const std::string& subscriber);
  prometheus::Counter& outbox_parked(const std::string& subscriber);  // events given up on, by subscriber

  // Housekeeping (app/housekeeping): periodic sweeps and the cart gauges of the business metrics.
  prometheus::Counter& reservations_expired;       // inventory entities nudged to drop expired reservations
  prometheus::Counter& idempotency_keys_deleted;
  prometheus::Gauge& carts_active;                 // open carts with items, changed within abandoned_after
  prometheus::Gauge& carts_abandoned;              // open carts with items, unchanged for abandoned_after
  prometheus::Gauge& cart_abandonment_ratio;       // abandoned / (abandoned + active); 0 with no carts

  // The catalog cache's own counters (monotonic since start) and sizes, as the cache reports them.
  struct cache_counts {
    std::uint64_t l1_hits = 0;
    std::uint64_t l1_misses = 0;
    std::uint64_t l2_hits = 0;
    std::uint64_t l2_misses = 0;
    std::uint64_t l2_errors = 0;
    std::uint64_t loads = 0;
    std::uint64_t l1_evictions = 0;
    std::uint64_t remote_invalidations = 0;
    std::uint64_t lines_hits = 0;    // add-to-cart's product lines (http/product_lines.hpp)
    std::uint64_t lines_misses = 0;
    std::size_t l1_entries = 0;
    std::size_t l1_bytes = 0;
  };
  // Brings the cache series up to date (counters advance by the difference to the last report; the
  // hit ratio and the L1 size are set). Called by the /metrics handler before it scrapes, so the
  // cache knows nothing of Prometheus. Thread-safe.
  void report_cache(const cache_counts& c);

  // Entity runtime, by kind.
  prometheus::Gauge& entities_active(const std::string& kind);
  prometheus::Gauge& entities_parked(const std::string& kind);
  prometheus::Gauge& entities_parked_bytes(const std::string& kind);
  prometheus::Counter& entity_activations(const std::string& kind);
  prometheus::Counter& entity_passivations(const std::string& kind);
  prometheus::Counter& entity_restarts(const std::string& kind);
  prometheus::Counter& entity_poison_dropped(const std::string& kind);

 private:
  friend class http_route_series;
  explicit metrics(std::shared_ptr<prometheus::Registry> reg);
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& http_requests_;
  prometheus::Family<prometheus::Histogram>& http_duration_;
  prometheus::Family<prometheus::Gauge>& entities_active_;
  prometheus::Family<prometheus::Gauge>& entities_parked_;
  prometheus::Family<prometheus::Gauge>& entities_parked_bytes_;
  prometheus::Family<prometheus::Counter>& entity_activations_;
  prometheus::Family<prometheus::Counter>& entity_passivations_;
  prometheus::Family<prometheus::Counter>& entity_restarts_;
  prometheus::Family<prometheus::Counter>& entity_poison_dropped_;
  prometheus::Family<prometheus::Counter>& outbox_subscriber_failures_;
  prometheus::Family<prometheus::Counter>& outbox_parked_;

  // Catalog cache: mercato_cache_requests_total{level, result} and friends.
  prometheus::Family<prometheus::Counter>& cache_requests_;
  prometheus::Counter& cache_l1_hit_;
  prometheus::Counter& cache_l1_miss_;
  prometheus::Counter& cache_l2_hit_;
  prometheus::Counter& cache_l2_miss_;
  prometheus::Counter& cache_l2_error_;
  prometheus::Counter& cache_lines_hit_;
  prometheus::Counter& cache_lines_miss_;
  prometheus::Counter& cache_loads_;
  prometheus::Counter& cache_l1_evictions_;
  prometheus::Counter& cache_remote_invalidations_;
  prometheus::Gauge& cache_hit_ratio_;
  prometheus::Gauge& cache_l1_entries_;
  prometheus::Gauge& cache_l1_bytes_;
  std::mutex cache_mu_;
  cache_counts cache_last_;  // guarded by cache_mu_

  prometheus::Family<prometheus::Histogram>& stage_seconds_;
  std::array<prometheus::Histogram*, 4> stages_{};  // by stage, resolved in the constructor
  std::mutex series_mu_;
  std::deque<http_route_series> route_series_;  // guarded by series_mu_; deque: elements never move
};

}  // namespace mercato::telemetry
