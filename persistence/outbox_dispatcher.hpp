#pragma once
// Delivers the domain events committed to the outbox to subscribers inside the node, at least once,
// in commit order per aggregate, and removes dispatched events after a retention period.
//
// The durable cursor is one row, `outbox_cursor (tx, seq)` (migration 0024). Each event carries the id of
// the transaction that wrote it (`tx`, xid8), and events are read in (tx, seq) order, only those whose
// transaction is below the reading statement's snapshot xmin: every transaction below it has ended, so no
// event can still appear behind the cursor (a BIGSERIAL alone would not do: a lower seq can commit after a
// higher one). A transaction that wrote and stays open holds back later events until it ends. The outbox
// rows themselves are written once and never updated. One thread with its own connection holds a
// PostgreSQL session advisory lock (one dispatcher per database: the others wait and take over when its
// connection goes away), reads the next events after the cursor, hands them to every subscriber, then
// moves the cursor past them ("marks" them). A batch is marked only after every subscriber took it, so a
// crash or a throwing subscriber means redelivery, never loss.
// A subscriber that keeps throwing is retried with backoff `max_attempts` times; then the events it could
// not take are parked for it (table outbox_parked, with the last error) and the batch is marked for the
// others, so one broken subscriber delays the others by its retries at most and never stops them.
//
// Knows no CAF types and no transport: a subscriber is a plain function; the actor layer, the live-updates
// hub or a cluster link turn the events into whatever they need.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <pqxx/connection>

namespace mercato::telemetry {
class metrics;
}

namespace mercato::persistence {

// One outbox row as subscribers see it. Handlers deduplicate by `id` (delivery is at least once).
struct outbox_event {
  std::int64_t seq = 0;         // outbox.seq: increasing per aggregate, NOT a global commit order
  std::string id;               // event UUID
  std::string aggregate_kind;   // "cart"
  std::string aggregate_id;
  std::string event_type;       // "CartItemAdded"
  std::string event_version;    // "1"
  std::string occurred_at;      // RFC 3339 UTC with microseconds: 2024-05-01T12:00:00.123456Z
  std::string data_json;        // JSON object text
  std::string metadata_json;    // JSON object text
};

// Which events a subscriber receives; an empty list matches everything.
struct outbox_filter {
  std::vector<std::string> aggregate_kinds;
  std::vector<std::string> event_types;
  bool matches(const outbox_event& e) const;
};

struct outbox_dispatcher_options {
  std::string dsn;
  std::chrono::milliseconds poll_interval{100};     // look for new events this often without notify()
  // After a round that emptied the queue, the next one starts no sooner than this after it started, however
  // often notify() is called: under load every commit of the snapshot writer notifies (hundreds a second),
  // and a round per commit costs PostgreSQL a read and a delete for a handful of events each. Bounds the
  // rounds to 1000 / interval a second at the price of up to this much delivery latency; 0: a round per notify.
  std::chrono::milliseconds min_round_interval{20};
  std::size_t batch_size = 500;                     // events read, delivered and marked per round
  std::chrono::seconds retention{7 * 24 * 3600};    // dispatched events that occurred longer ago are deleted
  std::chrono::seconds retention_interval{60};      // how often the retention sweep runs
  std::size_t retention_batch = 1000;               // rows per DELETE statement of the sweep
  std::chrono::milliseconds lock_retry{1000};       // while another dispatcher holds the lock
  std::chrono::milliseconds retry_backoff{100};     // first wait after a failure (doubles)...
  std::chrono::milliseconds max_retry_backoff{10'000};  // ...up to this
  // Calls in a row that may throw on the same events before they are parked for that subscriber
  // (outbox_parked) and count as taken; 0: never park (retry for ever, the batch waits for it).
  int max_attempts = 0;
  std::chrono::milliseconds pending_refresh{1000};  // pending-events gauges are refreshed this often
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds statement_timeout{10'000};
};

// Counters since construction (tests; the metrics carry the same in Prometheus form).
struct outbox_dispatcher_stats {
  std::uint64_t dispatched = 0;           // events marked dispatched by this dispatcher
  std::uint64_t batches = 0;              // batches marked
  std::uint64_t subscriber_failures = 0;  // subscriber calls that threw (the batch was redelivered)
  std::uint64_t retention_deleted = 0;    // rows deleted by the retention sweep
  std::uint64_t parked = 0;               // events parked for a subscriber after max_attempts failures
  std::uint64_t rounds = 0;               // rounds done: a read of the outbox and its delivery, if any
};

class outbox_dispatcher {
 public:
  using handler = std::function<void(const std::vector<outbox_event>&)>;

  outbox_dispatcher(outbox_dispatcher_options opts, telemetry::metrics* metrics);
  ~outbox_dispatcher();  // stop()
  outbox_dispatcher(const outbox_dispatcher&) = delete;
  outbox_dispatcher& operator=(const outbox_dispatcher&) = delete;

  // Before start() only (throws std::logic_error afterwards). `fn` runs on the dispatcher thread with
  // the matching events of a batch, in seq order (never with an empty vector); it must hand off and
  // return quickly. If it throws, the batch is not marked and the subscribers that did not take it yet get
  // it again after a backoff, so handlers must be idempotent by event id; after `max_attempts` throws in a
  // row its events are parked for it under `name` instead. Names appear in logs, metric labels and
  // outbox_parked (1 to 100 characters, else std::invalid_argument).
  void subscribe(std::string name, handler fn, outbox_filter filter = {});

  // Starts the dispatcher thread. Idempotent; a stopped dispatcher does not start again.
  void start();

  // Wakes the dispatcher now instead of at the next poll (call after committing outbox rows). Cheap,
  // never blocks on I/O, any thread, also before start() and after stop().
  void notify() noexcept;

  // Finishes the batch being delivered (delivers and marks it), then joins the thread and closes the
  // connection, which releases the lock. Idempotent; not from inside a subscriber.
  void stop();

  // True while this dispatcher holds the dispatch lock (it is the one dispatching).
  bool active() const { return active_.load(std::memory_order_relaxed); }

  outbox_dispatcher_stats stats() const;

 private:
  struct subscriber {
    std::string name;
    handler fn;
    outbox_filter filter;
  };
  struct session;

  void run();
  bool round(session& s);
  void park(session& s, const subscriber& sub, const std::vector<outbox_event>& events, int attempts,
            const std::string& error);
  void check_foreign_ids(session& s);
  void refresh_gauges(session& s);
  void sweep(session& s);
  // Waits until `until`, stop() or (when `wake_on_notify`) notify(). False when stopping.
  bool wait_until(std::chrono::steady_clock::time_point until, bool wake_on_notify);
  // Between rounds when the queue is drained: min_round_interval after `round_started`, then until the poll
  // interval or notify(). False when stopping.
  bool wait_idle(std::chrono::steady_clock::time_point round_started);
  // After a round that found events held back by an open transaction: min_round_interval after
  // `round_started`, not the poll interval (nothing notifies when that transaction ends). False when stopping.
  bool wait_held_back(std::chrono::steady_clock::time_point round_started);

  outbox_dispatcher_options opts_;
  telemetry::metrics* metrics_;
  std::vector<subscriber> subscribers_;

  std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mutex_
  bool notified_ = false;  // guarded by mutex_
  bool started_ = false;   // guarded by mutex_
  std::thread thread_;
  std::mutex stop_mutex_;

  std::atomic<bool> active_{false};
  std::atomic<std::uint64_t> dispatched_{0}, batches_{0}, subscriber_failures_{0}, retention_deleted_{0},
      parked_{0}, rounds_{0};
};

// Deletes dispatched events that occurred more than `retention` ago, `batch` rows per statement, until
// none is left; never touches an undispatched event. Returns the rows deleted. Blocking.
std::size_t purge_dispatched_outbox(pqxx::connection& conn, std::chrono::seconds retention, std::size_t batch);

}  // namespace mercato::persistence
