#include "cluster/cluster_metrics.hpp"

namespace mercato::cluster {

cluster_metrics::cluster_metrics(prometheus::Registry& r)
    : members(prometheus::BuildGauge()
                  .Name("mercato_cluster_members")
                  .Help("Live cluster nodes as this node sees them (itself included)")
                  .Register(r)
                  .Add({})),
      shards_owned(prometheus::BuildGauge()
                       .Name("mercato_cluster_shards_owned")
                       .Help("Shards whose lease this node holds, by entity kind")
                       .Register(r)),
      shard_moves(prometheus::BuildCounter()
                      .Name("mercato_cluster_shard_moves_total")
                      .Help("Shards taken (in), handed off (out) or lost with an expired lease (lost)")
                      .Register(r)),
      handoff_seconds(prometheus::BuildHistogram()
                          .Name("mercato_cluster_handoff_seconds")
                          .Help("Hand-off of a shard: from holding its messages to releasing its lease")
                          .Register(r)
                          .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5,
                                                                           1, 2.5, 5, 10})),
      forwarded(prometheus::BuildCounter()
                    .Name("mercato_cluster_forwarded_total")
                    .Help("Commands forwarded to the node that owns their entity, by kind")
                    .Register(r)),
      held_expired(prometheus::BuildCounter()
                       .Name("mercato_cluster_held_expired_total")
                       .Help("Commands held for a shard without a live owner for too long (answered 503)")
                       .Register(r)),
      tick_seconds(prometheus::BuildHistogram()
                       .Name("mercato_cluster_tick_seconds")
                       .Help("One coordinator round: heartbeat, lease renewal, placement")
                       .Register(r)
                       .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                                        0.5, 1, 2.5})),
      remote_seconds(prometheus::BuildHistogram()
                         .Name("mercato_cluster_remote_request_seconds")
                         .Help("A request to another node's gateway until its answer (measured each heartbeat)")
                         .Register(r)
                         .Add({}, prometheus::Histogram::BucketBoundaries{0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                                          0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2})),
      remote_timeouts(prometheus::BuildCounter()
                          .Name("mercato_cluster_remote_request_timeouts_total")
                          .Help("Requests to another node's gateway unanswered within 2 s")
                          .Register(r)
                          .Add({})) {}

}  // namespace mercato::cluster
