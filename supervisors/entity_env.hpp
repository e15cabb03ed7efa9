#pragma once
// What every entity of one kind on this node shares: where it loads from, where it writes to,
// which lease epoch it writes under, and the runtime's limits.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

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

// The shard of an entity id: stable across nodes and versions (FNV-1a, not std::hash).
int shard_of(const std::string& id, int shards);

}  // namespace mercato::supervisors
