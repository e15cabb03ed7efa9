#pragma once
// The entity runtime assembled: one CAF actor system, the snapshot writer, and a router (with its
// hosts) per entity kind. The node, the tests and the benchmarks all build it here, so what is tested
// and benched is what runs.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <pqxx/connection>

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
  std::size_t scheduler_threads = 0;   // CAF workers; 0: one per core
  int hosts_per_kind = 0;              // 0: one per scheduler worker
  supervisors::runtime_limits limits;
  persistence::snapshot_writer_options writer;  // dsn and node_id are taken from above
  // Committed domain events go to the subscribers (the writer wakes the dispatcher after each commit
  // that appended events). Off only where nothing may consume the outbox (a benchmark of the writer).
  bool dispatch_outbox = true;
  persistence::outbox_dispatcher_options outbox;  // dsn is taken from above
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

  // Takes the shard leases of every kind for this node (blocking: call at start-up or on a pool
  // thread). Until then every write is fenced.
  void take_leases(pqxx::connection& conn);
  bool leases_held() const;

  // The front door of a kind ("cart"): (to_entity_atom, id, command) -> the entity's answer.
  caf::actor router(std::string_view kind) const;
  const supervisors::entity_env& env(std::string_view kind) const;
  caf::actor_system& system();
  persistence::snapshot_writer& writer();

  // Answers everything pending (shutting_down), stops every actor, drains the writer, then stops the
  // outbox dispatcher (what it did not mark is delivered by the next one). Idempotent.
  void stop();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace mercato::app
