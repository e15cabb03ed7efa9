#pragma once
// What every entity of one kind on this node shares: where it loads from, where it writes to,
// which lease epoch it writes under, and the runtime's limits.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <caf/actor_addr.hpp>
#include <caf/atom.hpp>

namespace mercato::persistence {
class pg_pool;
class snapshot_writer;
}  // namespace mercato::persistence
namespace mercato::telemetry {
class metrics;
}

namespace mercato::supervisors {

struct runtime_limits {
  std::chrono::milliseconds passivate_after{60'000};   // idle time before an entity stops
  std::chrono::milliseconds idle_scan_interval{5'000}; // how often a host looks for idle entities
  // Parking: an entity quiet this long (and with every write acknowledged) stops its actor; its
  // committed state stays in the host's table, and the next message re-creates the actor from it
  // without a database read. 0 turns parking off (an actor per entity until passivation).
  std::chrono::milliseconds park_after{5'000};
  // How often a host looks for entities to park. Each scan parks everything that went quiet since the
  // last one: once a second, that was ~7,000 carts at 7,000 adds/s, and the host's mailbox held the
  // hand-offs in front of the next requests (a 100-200 ms stall every second; bench/results.md).
  std::chrono::milliseconds park_scan_interval{100};
  // A parked entity's state (a few hundred bytes) is dropped once it has been idle this long, or
  // earlier, oldest first, while a host holds more than max_parked of them (0: no cap; the entity
  // runtime takes max_parked per node and kind and gives each host its share). Until then the entity
  // comes back without a database read. Carts are the common case: a shopper's next add usually comes
  // minutes after the last one, well past passivate_after.
  std::chrono::milliseconds keep_parked{30 * 60'000};
  std::size_t max_parked = 0;
  // The same for the bytes the parked states take (their encodings, recent command ids, id and table
  // node, as the host counts them: mercato_entities_parked_bytes): a host keeps at most this many,
  // dropping the least recently used first (0: no cap; the runtime divides the node's budget per kind).
  std::size_t max_parked_bytes = 0;
  int poison_attempts = 3;                             // K: crashes of one message before it is dropped
  int restart_intensity = 20;                          // N restarts ...
  std::chrono::milliseconds restart_window{10'000};    // ... within T escalate to the host's supervisor
  std::chrono::milliseconds backoff_initial{10};
  std::chrono::milliseconds backoff_max{2'000};
  std::chrono::milliseconds load_timeout{10'000};      // an activation that cannot load by then fails
  bool fault_injection = false;                        // tests: entities honour fault_atom
};

// This node's lease of one shard, as the cluster coordinator last renewed it. Entities write under
// `epoch`; the front door routes to local entities only while `serving_until` (steady clock) lies ahead,
// which the coordinator sets a safety margin short of the lease's expiry in the database.
struct shard_lease {
  std::atomic<std::int64_t> epoch{0};          // 0: not held (every write is fenced)
  std::atomic<std::int64_t> serving_until{0};  // steady_clock nanoseconds since its epoch
};

struct entity_env {
  explicit entity_env(int shard_count = 64)
      : shards(shard_count), leases(std::make_unique<shard_lease[]>(static_cast<std::size_t>(shard_count))) {}
  std::string kind;
  const int shards;
  // One per shard: the epoch snapshots of that shard are written under, and until when to serve it.
  std::unique_ptr<shard_lease[]> leases;
  // The kind's front door on this node (cluster/shard_front): commands of a shard that is being
  // dropped (handed off or lost) go back there, to wait for the shard's next owner.
  caf::actor_addr front;
  persistence::pg_pool* pool = nullptr;
  persistence::snapshot_writer* writer = nullptr;
  telemetry::metrics* metrics = nullptr;
  runtime_limits limits;

  std::int64_t epoch_of(int shard) const { return leases[static_cast<std::size_t>(shard)].epoch.load(std::memory_order_acquire); }
  // The lease is held and not (locally) near its expiry: entities of the shard may be served.
  bool serving(int shard) const;
  // Sets (or clears, with epoch 0) this node's lease of `shard`.
  void hold(int shard, std::int64_t epoch, std::chrono::steady_clock::time_point until);
  void extend(int shard, std::chrono::steady_clock::time_point until);
};

// Runtime-internal messages between a host and its entities (never sent across nodes; every
// argument is a CAF built-in type).
using load_atom = caf::atom_constant<caf::atom("ent_load")>;      // host -> new entity: read your snapshot
using restore_atom = caf::atom_constant<caf::atom("ent_rstore")>; // host -> new entity: (version, state json) from the parked table
using park_atom = caf::atom_constant<caf::atom("ent_park")>;      // host -> entity: hand over your state and stop
using parked_atom = caf::atom_constant<caf::atom("ent_parked")>;  // entity -> host: (id, version, state json), then it stops
using gone_atom = caf::atom_constant<caf::atom("ent_gone")>;      // entity's exit hook -> host: (actor id, id, reason)
using park_tick_atom = caf::atom_constant<caf::atom("park_tick")>; // host: periodic park scan
// Stopping after a failed write or a crash, without dropping a reply: the entity tells its host
// (stopping_atom, id); the host holds new commands and answers (release_atom) behind every command it
// forwarded before; meanwhile the entity hands each command it receives back (requeue_atom, id,
// command, promise) or answers it with an error, and stops once released and its writes are settled.
using stopping_atom = caf::atom_constant<caf::atom("ent_stop")>;  // entity -> host: (id)
using release_atom = caf::atom_constant<caf::atom("ent_rel")>;    // host -> entity: nothing more comes
using requeue_atom = caf::atom_constant<caf::atom("ent_requeu")>; // entity -> host: (id, command, promise)
using drained_atom = caf::atom_constant<caf::atom("ent_drain")>;  // to self: the mailbox is answered
// (drop_shard_atom, int32 shard) -> uint64: router and hosts stop every entity of the shard (after its
// pending writes settle), drop its parked state, and hand commands still waiting back to the front door.
using drop_shard_atom = caf::atom_constant<caf::atom("ent_dropsh")>;

// The shard of an entity id: stable across nodes and versions (FNV-1a, not std::hash).
int shard_of(const std::string& id, int shards);

}  // namespace mercato::supervisors
