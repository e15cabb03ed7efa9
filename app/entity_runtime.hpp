#pragma once
// The entity runtime assembled: one CAF actor system, the snapshot writer, and a router (with its
// hosts) per entity kind. The node, the tests and the benchmarks all build it here, so what is tested
// and benched is what runs.

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <pqxx/connection>

#include "cluster/coordinator.hpp"
#include "cluster/shard_front.hpp"
#include "config/settings.hpp"
#include "persistence/outbox_dispatcher.hpp"
#include "persistence/snapshot_writer.hpp"
#include "supervisors/entity_env.hpp"

namespace mercato::persistence {
class pg_pool;
}
namespace mercato::telemetry {
class metrics;
}

namespace mercato::app {

struct entity_runtime_options {
  std::string dsn;
  std::string node_id = "node-1";
  int shards = 64;                     // per kind
  std::size_t scheduler_threads = 0;   // CAF workers; 0: CAF's default, one per core but at least 4
  std::chrono::microseconds scheduler_poll_sleep = config::default_scheduler_poll_sleep;
  int hosts_per_kind = 0;              // 0: one per scheduler worker
  supervisors::runtime_limits limits;
  persistence::snapshot_writer_options writer;  // dsn and node_id are taken from above
  // Committed domain events go to the subscribers (the writer wakes the dispatcher after each commit
  // that appended events). Off only where nothing may consume the outbox (a benchmark of the writer).
  bool dispatch_outbox = true;
  persistence::outbox_dispatcher_options outbox;  // dsn is taken from above
  // Cluster membership (dsn and node_id are taken from above; port 0: any free port). Even one node is
  // a cluster of one: it takes its shards' leases through the coordinator and renews them.
  cluster::coordinator_options cluster;
  cluster::front_options front;
  // Committed events another node relayed (live updates, cache invalidation); may be empty.
  std::function<void(const std::vector<persistence::outbox_event>&)> on_relayed;
};

class entity_runtime {
 public:
  // `pool` (activations read snapshots there) must outlive the runtime; `metrics` may be null.
  entity_runtime(entity_runtime_options opts, persistence::pg_pool& pool, telemetry::metrics* metrics);
  ~entity_runtime();
  entity_runtime(const entity_runtime&) = delete;
  entity_runtime& operator=(const entity_runtime&) = delete;

  // Subscribes to the committed domain events (before start_outbox()).
  void subscribe(std::string name, persistence::outbox_dispatcher::handler fn, persistence::outbox_filter filter = {});
  // Starts delivering committed events to the subscribers (idempotent; no-op without dispatch_outbox).
  void start_outbox();

  // Publishes the node's gateway and starts the cluster member, which registers the node (once
  // `cluster.may_join` says so) and takes the leases of the shards placed here. Until a shard's lease is
  // held its messages wait at the front door and every write of it is fenced.
  void start_cluster();
  // Blocks until the node holds every shard placed on it (tests, tools); returns whether it does.
  bool await_leases(std::chrono::milliseconds timeout);
  bool leases_held() const;
  std::uint16_t cluster_port() const;
  cluster::coordinator* coordinator();
  // Sends committed events to the other nodes' gateways (their hubs and caches).
  void relay(const std::vector<persistence::outbox_event>& events);

  // The front door of a kind ("cart"): (to_entity_atom, id, command) -> the entity's answer, wherever
  // in the cluster the entity lives.
  caf::actor router(std::string_view kind) const;
  const supervisors::entity_env& env(std::string_view kind) const;
  caf::actor_system& system();
  persistence::snapshot_writer& writer();

  // Hands this node's shards to the other nodes (when there are any), answers everything pending
  // (shutting_down), stops every actor, drains the writer, stops the outbox dispatcher (what it did not
  // mark is delivered by the next one), then leaves the cluster. Idempotent.
  void stop();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace mercato::app
