#pragma once
// The cluster's Prometheus series (registered on the node's registry).

#include <string>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace mercato::cluster {

struct cluster_metrics {
  explicit cluster_metrics(prometheus::Registry& r);
  prometheus::Gauge& members;             // live nodes this node sees (itself included)
  prometheus::Family<prometheus::Gauge>& shards_owned;        // {kind}
  prometheus::Family<prometheus::Counter>& shard_moves;       // {direction: in | out | lost}
  prometheus::Histogram& handoff_seconds;                     // stop serving -> lease released
  prometheus::Family<prometheus::Counter>& forwarded;         // {kind}: commands sent to another node
  prometheus::Family<prometheus::Counter>& held_expired;      // {kind}: held too long, answered unavailable
  prometheus::Histogram& tick_seconds;                        // one coordinator round (heartbeat, renew, place)
  prometheus::Histogram& remote_seconds;                      // a request to a peer's gateway and its answer
  prometheus::Counter& remote_timeouts;                       // such requests unanswered within 2 s
};

}  // namespace mercato::cluster
