#pragma once
// Durable entity state. Entities hand their new snapshot (with its domain events and projection
// rows) to the writer; the writer group-commits many of them per transaction in multi-row
// statements on its own threads and calls back once the transaction is committed (or failed).
// Knows no CAF types: callbacks are plain functions the actor layer turns into messages.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <pqxx/connection>

#include "actors/protocol/entity_records.hpp"
#include "config/settings.hpp"

namespace mercato::telemetry {
class metrics;
}

namespace mercato::persistence {

using protocol::domain_event;
using protocol::projection_row;

struct snapshot {
  std::string kind;      // "cart"
  std::string id;        // entity id
  std::int64_t version;  // > 0, strictly increasing per entity
  std::int64_t owner_epoch;
  int shard;             // the shard whose lease owner_epoch refers to (not stored: load_snapshot gives -1)
  std::string state_json;
  // The version this state was built on (version - 1 for an entity's own writes). The write lands
  // only if that is the stored version: compare-and-set, so nothing built on a failed or foreign
  // write can be stored.
  std::int64_t base_version = 0;
  // Unique per write ("" = the writer assigns a time-ordered UUID). Stored with the row; an in-doubt
  // COMMIT is resolved by looking for it.
  std::string write_id;
  // Command ids the entity has applied, space separated, newest last (stored with the row so a
  // retried command is recognised after a reload).
  std::string recent_commands;
};

enum class write_outcome {
  committed,    // durable
  fenced,       // rejected: a newer version is stored, or owner_epoch no longer holds the shard lease
  unavailable,  // PostgreSQL could not be reached within the commit deadline
  overloaded,   // the queue was full (returned by enqueue, never via callback)
  outcome_unknown,  // a COMMIT was sent and its outcome could not be learnt before the commit deadline:
                    // the write may or may not be durable (the stored row tells; reload it)
  failed,       // any other error (constraint violation in a projection, ...): the batch was retried
                // without this write, so only this write failed
  // A write that does not commit also settles the writes of the same entity that were queued behind
  // it before its outcome was reported: they get its outcome without being written, since their
  // state builds on it (and a write built on a version that is not stored is fenced anyway).
};

const char* to_string(write_outcome o);

struct pending_write {
  snapshot snap;
  std::vector<domain_event> events;
  std::vector<projection_row> projections;
  // Called exactly once, on a writer thread, after the outcome is known.
  std::function<void(write_outcome)> done;
};

struct snapshot_writer_options {
  std::string dsn;
  std::string node_id;                              // must match shard_leases.owner_node
  unsigned threads = 2;                             // writer threads, one connection each
  std::size_t max_batch = 1000;                     // writes per transaction
  std::size_t statement_cache = 64;                 // batch statements (and, apart, projection statements)
                                                    // kept prepared per connection; past it they start over
  // Wait this long for a batch to fill, unless the lane's last transaction had a single write
  // (postgres.writer_linger_us).
  std::chrono::microseconds linger = config::default_writer_linger;
  std::size_t queue_limit = 100'000;                // pending writes (all threads) before overloaded
  std::chrono::milliseconds commit_deadline{5000};  // keep retrying an outage this long, then unavailable
  // Called on a writer thread after each committed transaction that appended events (the outbox
  // dispatcher's wake-up). Must not block.
  std::function<void()> on_events_committed;
};

// Counters since construction (tests and benchmarks; the metrics carry the same in Prometheus form).
struct snapshot_writer_stats {
  std::uint64_t transactions = 0;   // transactions committed (a batch, or one write when a batch is split)
  std::uint64_t stepwise = 0;       // of those, committed stepwise (BEGIN, a statement per table, COMMIT):
                                    // writes in doubt, or a missing snapshot row; the rest were one statement
  std::uint64_t snapshot_rows = 0;  // entity_snapshots rows inserted or updated
  std::uint64_t events = 0;         // outbox rows inserted
  std::uint64_t committed = 0;      // writes acknowledged with each outcome
  std::uint64_t fenced = 0;
  std::uint64_t failed = 0;
  std::uint64_t unavailable = 0;
  std::uint64_t outcome_unknown = 0;
  std::uint64_t statements_prepared = 0;  // batch and projection statements prepared (all connections)
};

class snapshot_writer {
 public:
  snapshot_writer(snapshot_writer_options opts, telemetry::metrics* metrics);
  ~snapshot_writer();
  snapshot_writer(const snapshot_writer&) = delete;
  snapshot_writer& operator=(const snapshot_writer&) = delete;

  // Never blocks. Writes of one (kind, id) always go to the same thread, in order. Returns
  // write_outcome::overloaded (and does not call `done`) when the queue is full, else committed
  // meaning "accepted"; the real outcome arrives through `done`.
  write_outcome enqueue(pending_write w);

  // Calls `fn` on a writer thread once every write of (kind, id) enqueued before this call has settled
  // (committed or failed), so a read issued from `fn` sees what they left in the database. An
  // activation waits on this: a new incarnation of an entity never reads a snapshot while writes of a
  // stopped one are still in flight. (When stopping, `fn` runs at once.)
  void after_pending(const std::string& kind, const std::string& id, std::function<void()> fn);

  // Commits what is queued (bounded by the commit deadline), then stops the threads. Idempotent;
  // not from inside a `done` callback (it joins the thread running it).
  void stop();

  // Writes accepted and not yet acknowledged (queued or in a transaction), all threads.
  std::size_t queue_depth() const { return depth_.load(std::memory_order_relaxed); }

  snapshot_writer_stats stats() const;

 private:
  struct lane;
  struct batch_item;
  void run_lane(lane& l);
  void process(lane& l, std::vector<batch_item>& batch);
  void finish(batch_item& item, write_outcome o);
  static void run_barrier(std::function<void()>& fn);

  struct stat_counters {
    std::atomic<std::uint64_t> transactions{0}, stepwise{0}, snapshot_rows{0}, events{0};
    std::atomic<std::uint64_t> committed{0}, fenced{0}, failed{0}, unavailable{0}, outcome_unknown{0};
    std::atomic<std::uint64_t> statements_prepared{0};
  };

  snapshot_writer_options opts_;
  telemetry::metrics* metrics_;
  std::atomic<std::size_t> depth_{0};
  std::atomic<bool> stopping_{false};
  std::mutex stop_mutex_;
  stat_counters stats_;
  std::vector<std::unique_ptr<lane>> lanes_;
};

// Reads one snapshot (blocking; call on a pool thread). nullopt when the entity was never stored.
// `shard` is not stored with the snapshot and comes back as -1: the caller's placement knows it.
std::optional<snapshot> load_snapshot(pqxx::connection& conn, const std::string& kind, const std::string& id);

// Takes (or renews) the lease of every shard of `kind` for `node_id` and returns the epoch to write
// with. Until the cluster arrives one node holds them all; a node restarting bumps the epoch, so a
// write from an earlier incarnation of the node is fenced.
std::int64_t acquire_all_leases(pqxx::connection& conn, const std::string& kind, int shards,
                                const std::string& node_id);

}  // namespace mercato::persistence
