#pragma once
// What every entity of one kind on this node shares: where it loads from, where it writes to,
// which lease epoch it writes under, and the runtime's limits.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

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
  std::chrono::milliseconds park_scan_interval{1'000}; // how often a host looks for entities to park
  int poison_attempts = 3;                             // K: crashes of one message before it is dropped
  int restart_intensity = 20;                          // N restarts ...
  std::chrono::milliseconds restart_window{10'000};    // ... within T escalate to the host's supervisor
  std::chrono::milliseconds backoff_initial{10};
  std::chrono::milliseconds backoff_max{2'000};
  std::chrono::milliseconds load_timeout{10'000};      // an activation that cannot load by then fails
  bool fault_injection = false;                        // tests: entities honour fault_atom
};

struct entity_env {
  std::string kind;
  int shards = 64;
  // Lease epoch snapshots are written under; 0 until the node holds its leases (writes are fenced).
  std::atomic<std::int64_t> epoch{0};
  persistence::pg_pool* pool = nullptr;
  persistence::snapshot_writer* writer = nullptr;
  telemetry::metrics* metrics = nullptr;
  runtime_limits limits;
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

// The shard of an entity id: stable across nodes and versions (FNV-1a, not std::hash).
int shard_of(const std::string& id, int shards);

}  // namespace mercato::supervisors
