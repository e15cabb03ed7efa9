#pragma once
// The node's Prometheus registry and the metric families every module reports into.
// Modules get a reference at construction; /metrics serialises the registry in text format.

#include <memory>
#include <string>
#include <string_view>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace mercato::telemetry {

class metrics {
 public:
  metrics();
  metrics(const metrics&) = delete;
  metrics& operator=(const metrics&) = delete;

  prometheus::Registry& registry() { return *registry_; }

  // Prometheus text exposition format 0.0.4.
  std::string scrape() const;

  void observe_http_request(std::string_view route, std::string_view method, unsigned status, double seconds);

  prometheus::Gauge& http_in_flight;
  prometheus::Gauge& http_connections;
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

  // Entity runtime, by kind.
  prometheus::Gauge& entities_active(const std::string& kind);
  prometheus::Counter& entity_activations(const std::string& kind);
  prometheus::Counter& entity_passivations(const std::string& kind);
  prometheus::Counter& entity_restarts(const std::string& kind);
  prometheus::Counter& entity_poison_dropped(const std::string& kind);

 private:
  explicit metrics(std::shared_ptr<prometheus::Registry> reg);
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& http_requests_;
  prometheus::Family<prometheus::Histogram>& http_duration_;
  prometheus::Family<prometheus::Gauge>& entities_active_;
  prometheus::Family<prometheus::Counter>& entity_activations_;
  prometheus::Family<prometheus::Counter>& entity_passivations_;
  prometheus::Family<prometheus::Counter>& entity_restarts_;
  prometheus::Family<prometheus::Counter>& entity_poison_dropped_;
};

}  // namespace mercato::telemetry
