#include "persistence/outbox_dispatcher.hpp"

#include <algorithm>
#include <stdexcept>
#include <unordered_set>

#include <pqxx/pqxx>

#include "persistence/db_error.hpp"
#include "persistence/pg_pool.hpp"
#include "telemetry/logging.hpp"
#include "telemetry/metrics.hpp"

namespace mercato::persistence {

namespace {

using steady = std::chrono::steady_clock;

// Session advisory lock: one dispatcher per database. ("mercato" + 02; the migrations use 01.)
constexpr long long dispatch_lock_key = 0x6d6572636174'6f02LL;

// The next undispatched events after the cursor (migration 0024), in (tx, seq) order: only those whose
// transaction is below this statement's snapshot xmin, so every transaction that could still add an event
// at or behind them has ended. The cursor is read here each round, not kept by the dispatcher, so an
// operator who moves it back (to replay events) is heard from the next round on. `lag` is measured by the
// server's clock against the server's occurred_at, so the node's clock never skews it.
// Rows come in tx order, so the ready ones (below the xmin) are a prefix; one row more than a batch is read
// so that a first row that is not ready says "held back" (the round after comes soon, not at the next poll:
// the commit that woke the dispatcher may be the one waiting).
// The ORDER BY names the table's columns (o.tx), not the output column `tx_text`: a bare `tx` there would
// sort by the text. The batch size is part of the text, so the cached generic plan knows the LIMIT and
// keeps to the index.
constexpr const char* select_name = "mercato_outbox_select";
std::string select_sql(std::size_t batch_size) {
  return "SELECT o.seq, o.id::text, o.aggregate_kind, o.aggregate_id, o.event_type, o.event_version, "
         "  to_char(o.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), o.data::text, "
         "  o.metadata::text, EXTRACT(EPOCH FROM clock_timestamp() - o.occurred_at)::float8, o.tx::text AS tx_text, "
         "  o.tx < pg_snapshot_xmin(pg_current_snapshot()) AS ready "
         "FROM outbox o WHERE (o.tx, o.seq) > (SELECT c.tx, c.seq FROM outbox_cursor c) "
         "ORDER BY o.tx, o.seq LIMIT " +
         std::to_string(batch_size + 1);
}

// Delivered: the cursor moves past the batch; the outbox rows themselves are never updated.
constexpr const char* mark_name = "mercato_outbox_mark";
constexpr const char* mark_sql = "UPDATE outbox_cursor SET tx = $1::xid8, seq = $2::bigint";

// The pending count is capped so that a huge backlog cannot make the gauge refresh itself slow. Both count
// the events held back by an open transaction: they are waiting too.
constexpr long long pending_cap = 1'000'000;
constexpr const char* gauges_name = "mercato_outbox_gauges";
constexpr const char* gauges_sql =
    "SELECT (SELECT count(*) FROM (SELECT 1 FROM outbox WHERE (tx, seq) > (SELECT c.tx, c.seq FROM outbox_cursor c) "
    "          LIMIT 1000000) p), "
    "  COALESCE((SELECT EXTRACT(EPOCH FROM clock_timestamp() - occurred_at)::float8 FROM outbox "
    "            WHERE (tx, seq) > (SELECT c.tx, c.seq FROM outbox_cursor c) ORDER BY tx, seq LIMIT 1), 0)";

// True when the cursor or an event carries a transaction id this server has not handed out yet: the
// database was restored from a dump of another cluster (pg_dump keeps the values, not the counter). One
// statement, so the horizon and the rows come from one snapshot.
constexpr const char* foreign_ids_sql =
    "SELECT c.tx >= h.x OR EXISTS (SELECT 1 FROM outbox WHERE tx >= h.x) "
    "FROM outbox_cursor c, (SELECT pg_snapshot_xmax(pg_current_snapshot()) AS x) h";

// Puts such a database back in order (one snapshot, repeatable read): every event it holds gets tx 0, and
// the cursor goes just before the first event that was not delivered by the old cursor's order or was
// written in this cluster (a real id below the horizon); events written after the snapshot keep their
// real ids, after the cursor. Nothing is skipped; some events may be delivered again.
constexpr const char* rebase_first_sql =
    "CREATE TEMP TABLE mercato_outbox_rebase ON COMMIT DROP AS "
    "SELECT min(o.seq) AS first FROM outbox o, outbox_cursor c "
    "WHERE (o.tx, o.seq) > (c.tx, c.seq) "
    "   OR (o.tx <> '0' AND o.tx < pg_snapshot_xmax(pg_current_snapshot()))";
constexpr const char* rebase_events_sql = "UPDATE outbox SET tx = '0' WHERE tx <> '0'";
constexpr const char* rebase_cursor_sql =
    "UPDATE outbox_cursor SET tx = '0', "
    "  seq = COALESCE((SELECT first - 1 FROM mercato_outbox_rebase), (SELECT max(seq) FROM outbox), 0)";

// Copies the events a subscriber gave up on into outbox_parked (migration 0014). Not prepared: it is rare, and
// a database without the table must not stop the dispatcher from connecting. A repeat (the batch was parked
// but not marked before a crash) adds its attempts and keeps the latest error.
constexpr const char* park_sql =
    "INSERT INTO outbox_parked (subscriber, event_id, seq, aggregate_kind, aggregate_id, event_type, event_version, "
    "  occurred_at, data, metadata, attempts, last_error) "
    "SELECT $1, id, seq, aggregate_kind, aggregate_id, event_type, event_version, occurred_at, data, metadata, $3, $4 "
    "FROM outbox WHERE seq = ANY($2::bigint[]) "
    "ON CONFLICT (subscriber, event_id) DO UPDATE SET attempts = outbox_parked.attempts + EXCLUDED.attempts, "
    "  last_error = EXCLUDED.last_error, parked_at = now()";

// Events that occurred more than the retention ago and are behind the cursor (the BRIN index on occurred_at
// of migration 0019 finds the old part of the table; an undispatched event is never deleted).
constexpr const char* purge_sql =
    "DELETE FROM outbox WHERE seq IN (SELECT o.seq FROM outbox o, outbox_cursor c "
    "  WHERE o.occurred_at < now() - $1::bigint * interval '1 second' "
    "    AND (o.tx, o.seq) <= (c.tx, c.seq) ORDER BY o.seq LIMIT $2)";

std::size_t purge_once(pqxx::connection& conn, std::chrono::seconds retention, std::size_t batch) {
  pqxx::nontransaction tx{conn};
  const pqxx::result r = tx.exec_params(purge_sql, static_cast<long long>(retention.count()),
                                        static_cast<long long>(std::max<std::size_t>(batch, 1)));
  return static_cast<std::size_t>(r.affected_rows());
}

std::string seq_array(const std::vector<outbox_event>& events) {
  std::string s = "{";
  for (const auto& e : events) {
    if (s.size() > 1) {
      s.push_back(',');
    }
    s += std::to_string(e.seq);
  }
  s.push_back('}');
  return s;
}

bool contains(const std::vector<std::string>& list, const std::string& value) {
  return list.empty() || std::find(list.begin(), list.end(), value) != list.end();
}

}  // namespace

bool outbox_filter::matches(const outbox_event& e) const {
  return contains(aggregate_kinds, e.aggregate_kind) && contains(event_types, e.event_type);
}

std::size_t purge_dispatched_outbox(pqxx::connection& conn, std::chrono::seconds retention, std::size_t batch) {
  batch = std::max<std::size_t>(batch, 1);
  std::size_t total = 0;
  for (;;) {
    const std::size_t n = purge_once(conn, retention, batch);
    total += n;
    if (n < batch) {
      return total;
    }
  }
}

// Dispatcher-thread state.
struct outbox_dispatcher::session {
  std::unique_ptr<pqxx::connection> conn;
  bool locked = false;
  bool failing = false;        // an error was logged and nothing has succeeded since
  bool lock_wait_logged = false;
  std::chrono::milliseconds db_backoff{0};
  std::chrono::milliseconds subscriber_backoff{0};
  steady::time_point next_sweep{};
  steady::time_point next_refresh{};
  // Per subscriber, the seqs it took while the batch they belong to could not be marked (another
  // subscriber threw): a retry skips them, so a healthy subscriber is not flooded with repeats while a
  // broken one is retried. Cleared when a batch is marked or the connection (and so the lock) is lost.
  std::vector<std::unordered_set<std::int64_t>> taken;
  // Per subscriber, its calls in a row that threw (reset when it takes events, when a batch is marked and
  // when the connection is lost); at opts_.max_attempts its events are parked.
  std::vector<int> attempts;
};

outbox_dispatcher::outbox_dispatcher(outbox_dispatcher_options opts, telemetry::metrics* metrics)
    : opts_(std::move(opts)), metrics_(metrics) {
  opts_.batch_size = std::max<std::size_t>(opts_.batch_size, 1);
  opts_.retention_batch = std::max<std::size_t>(opts_.retention_batch, 1);
  opts_.poll_interval = std::max(opts_.poll_interval, std::chrono::milliseconds(1));
  opts_.min_round_interval = std::max(opts_.min_round_interval, std::chrono::milliseconds(0));
  opts_.lock_retry = std::max(opts_.lock_retry, std::chrono::milliseconds(1));
  opts_.retry_backoff = std::max(opts_.retry_backoff, std::chrono::milliseconds(1));
  opts_.max_retry_backoff = std::max(opts_.max_retry_backoff, opts_.retry_backoff);
}

outbox_dispatcher::~outbox_dispatcher() { stop(); }

void outbox_dispatcher::subscribe(std::string name, handler fn, outbox_filter filter) {
  std::lock_guard<std::mutex> lock{mutex_};
  if (started_) {
    throw std::logic_error("outbox_dispatcher::subscribe after start: " + name);
  }
  if (!fn) {
    throw std::invalid_argument("outbox_dispatcher::subscribe without a function: " + name);
  }
  if (name.empty() || name.size() > 100) {  // outbox_parked.subscriber is VARCHAR(100)
    throw std::invalid_argument("outbox_dispatcher::subscribe: a name needs 1 to 100 characters: " + name);
  }
  subscribers_.push_back(subscriber{std::move(name), std::move(fn), std::move(filter)});
}

void outbox_dispatcher::start() {
  std::lock_guard<std::mutex> guard{stop_mutex_};
  std::lock_guard<std::mutex> lock{mutex_};
  if (started_) {
    return;
  }
  started_ = true;
  if (stopping_) {
    return;  // stopped before it ever started
  }
  thread_ = std::thread([this] { run(); });
}

void outbox_dispatcher::notify() noexcept {
  {
    std::lock_guard<std::mutex> lock{mutex_};
    notified_ = true;
  }
  cv_.notify_one();
}

void outbox_dispatcher::stop() {
  std::lock_guard<std::mutex> guard{stop_mutex_};
  {
    std::lock_guard<std::mutex> lock{mutex_};
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

outbox_dispatcher_stats outbox_dispatcher::stats() const {
  outbox_dispatcher_stats s;
  s.dispatched = dispatched_.load(std::memory_order_relaxed);
  s.batches = batches_.load(std::memory_order_relaxed);
  s.subscriber_failures = subscriber_failures_.load(std::memory_order_relaxed);
  s.retention_deleted = retention_deleted_.load(std::memory_order_relaxed);
  s.parked = parked_.load(std::memory_order_relaxed);
  s.rounds = rounds_.load(std::memory_order_relaxed);
  return s;
}

bool outbox_dispatcher::wait_until(steady::time_point until, bool wake_on_notify) {
  std::unique_lock<std::mutex> lock{mutex_};
  cv_.wait_until(lock, until, [&] { return stopping_ || (wake_on_notify && notified_); });
  return !stopping_;
}

bool outbox_dispatcher::wait_idle(steady::time_point round_started) {
  // A notify() during the gap is kept (notified_ stays set) and ends the second wait at once.
  const auto earliest = round_started + opts_.min_round_interval;
  if (steady::now() < earliest && !wait_until(earliest, false)) {
    return false;
  }
  return wait_until(steady::now() + opts_.poll_interval, true);
}

bool outbox_dispatcher::wait_held_back(steady::time_point round_started) {
  return wait_until(std::max(round_started + opts_.min_round_interval, steady::now() + std::chrono::milliseconds(1)),
                    false);
}

void outbox_dispatcher::run() {
  session s;
  s.db_backoff = opts_.retry_backoff;
  s.subscriber_backoff = opts_.retry_backoff;
  s.taken.resize(subscribers_.size());
  s.attempts.resize(subscribers_.size(), 0);
  auto set_active = [this](bool on) {
    active_.store(on, std::memory_order_relaxed);
    if (metrics_) {
      metrics_->outbox_dispatcher_active.Set(on ? 1 : 0);
      if (!on) {
        // Only the dispatching node reports the backlog, so a sum over nodes counts it once.
        metrics_->outbox_pending.Set(0);
        metrics_->outbox_oldest_pending_seconds.Set(0);
      }
    }
  };

  for (;;) {
    {
      std::lock_guard<std::mutex> lock{mutex_};
      if (stopping_) {
        break;
      }
    }
    bool keep_going = true;
    try {
      keep_going = round(s);
      if (s.failing) {
        telemetry::log_info("outbox dispatcher recovered");
        s.failing = false;
      }
      s.db_backoff = opts_.retry_backoff;
    } catch (...) {
      const db_error err = classify_current_exception();
      if (!s.failing) {
        // Logged once per outage; the recovery is logged too.
        telemetry::log_warn("outbox dispatcher: database error, retrying with backoff",
                            {{"error", err.message}, {"kind", to_string(err.kind)}, {"sqlstate", err.sqlstate}});
        s.failing = true;
      }
      if (err.kind == db_error_kind::unavailable || !s.conn || !s.conn->is_open()) {
        s.conn.reset();  // the server released the lock with the session
      }
      if (!s.conn) {
        if (s.locked) {
          s.locked = false;
          set_active(false);
        }
        for (auto& t : s.taken) {
          t.clear();
        }
        std::fill(s.attempts.begin(), s.attempts.end(), 0);
      }
      keep_going = wait_until(steady::now() + s.db_backoff, false);
      s.db_backoff = std::min(s.db_backoff * 2, opts_.max_retry_backoff);
    }
    if (!keep_going) {
      break;
    }
  }

  // Closing the session releases the advisory lock; a waiting dispatcher takes over.
  s.conn.reset();
  if (s.locked) {
    set_active(false);
    telemetry::log_info("outbox dispatcher stopped and released the dispatch lock");
  }
}

// One step: connect, take the lock, sweep and refresh when due, deliver one batch and mark it. Throws
// database errors (run() backs off); false when stop() was called while waiting.
bool outbox_dispatcher::round(session& s) {
  if (!s.conn) {
    auto c = open_connection(opts_.dsn, opts_.connect_timeout, opts_.statement_timeout);
    c->prepare(select_name, select_sql(opts_.batch_size));
    c->prepare(mark_name, mark_sql);
    c->prepare(gauges_name, gauges_sql);
    s.conn = std::move(c);
  }
  if (!s.locked) {
    bool got = false;
    {
      pqxx::nontransaction tx{*s.conn};
      got = tx.exec_params1("SELECT pg_try_advisory_lock($1)", dispatch_lock_key)[0].as<bool>();
    }
    if (!got) {
      if (!s.lock_wait_logged) {
        telemetry::log_info("outbox dispatcher standing by: another dispatcher holds the dispatch lock");
        s.lock_wait_logged = true;
      }
      return wait_until(steady::now() + opts_.lock_retry, false);
    }
    // Before `locked` is set: if the check throws, the next round takes the (re-entrant) lock and checks again.
    check_foreign_ids(s);
    s.locked = true;
    s.lock_wait_logged = false;
    active_.store(true, std::memory_order_relaxed);
    if (metrics_) {
      metrics_->outbox_dispatcher_active.Set(1);
    }
    telemetry::log_info("outbox dispatcher took the dispatch lock");
    s.next_refresh = steady::time_point{};
  }

  auto now = steady::now();
  if (now >= s.next_sweep) {
    sweep(s);
  }
  if (now >= s.next_refresh) {
    refresh_gauges(s);
    s.next_refresh = now + opts_.pending_refresh;
  }

  const auto round_started = steady::now();
  {
    std::lock_guard<std::mutex> lock{mutex_};
    notified_ = false;  // a notify() from here on wakes the next wait
  }
  std::vector<outbox_event> batch;
  std::vector<double> lag;
  std::string last_tx;
  bool held_back = false;
  {
    pqxx::nontransaction tx{*s.conn};
    const pqxx::result rows = tx.exec_prepared(select_name);
    batch.reserve(rows.size());
    lag.reserve(rows.size());
    for (const auto& r : rows) {
      if (batch.size() == opts_.batch_size) {
        break;
      }
      if (!r[11].as<bool>()) {
        held_back = true;
        break;
      }
      outbox_event e;
      e.seq = r[0].as<std::int64_t>();
      e.id = r[1].c_str();
      e.aggregate_kind = r[2].c_str();
      e.aggregate_id = r[3].c_str();
      e.event_type = r[4].c_str();
      e.event_version = r[5].c_str();
      e.occurred_at = r[6].c_str();
      e.data_json = r[7].c_str();
      e.metadata_json = r[8].c_str();
      lag.push_back(r[9].as<double>());
      batch.push_back(std::move(e));
    }
    if (!batch.empty()) {  // the batch is a prefix of the rows: the cursor goes to its last one's tx
      last_tx = rows[static_cast<pqxx::result::size_type>(batch.size() - 1)][10].c_str();
    }
  }
  if (batch.empty()) {
    rounds_.fetch_add(1, std::memory_order_relaxed);
    return held_back ? wait_held_back(round_started) : wait_idle(round_started);
  }

  const auto delivery_started = steady::now();
  std::vector<outbox_event> subset;
  bool all_taken = true;
  for (std::size_t i = 0; i < subscribers_.size(); ++i) {
    auto& sub = subscribers_[i];
    auto& taken = s.taken[i];
    subset.clear();
    for (const auto& e : batch) {
      if (sub.filter.matches(e) && taken.count(e.seq) == 0) {
        subset.push_back(e);
      }
    }
    if (subset.empty()) {
      continue;
    }
    std::string error;
    try {
      sub.fn(subset);
      for (const auto& e : subset) {
        taken.insert(e.seq);
      }
      s.attempts[i] = 0;
      continue;
    } catch (const std::exception& e) {
      error = e.what();
    } catch (...) {
      error = "unknown exception";
    }
    subscriber_failures_.fetch_add(1, std::memory_order_relaxed);
    if (metrics_) {
      metrics_->outbox_subscriber_failures(sub.name).Increment();
    }
    const int attempts = ++s.attempts[i];
    if (opts_.max_attempts > 0 && attempts >= opts_.max_attempts) {
      // Given up: parked for this subscriber, taken as far as the batch is concerned. A database error
      // here propagates (run() backs off) and the subscriber is called again: never lost.
      park(s, sub, subset, attempts, error);
      for (const auto& e : subset) {
        taken.insert(e.seq);
      }
      s.attempts[i] = 0;
      continue;
    }
    all_taken = false;
    telemetry::log_warn("outbox subscriber failed; the batch will be delivered again",
                        {{"subscriber", sub.name},
                         {"error", error},
                         {"first_seq", subset.front().seq},
                         {"events", subset.size()},
                         {"attempt", attempts},
                         {"max_attempts", opts_.max_attempts},
                         {"retry_in_ms", s.subscriber_backoff.count()}});
  }
  rounds_.fetch_add(1, std::memory_order_relaxed);  // after the subscribers saw the batch
  if (!all_taken) {
    const auto wait = s.subscriber_backoff;
    s.subscriber_backoff = std::min(s.subscriber_backoff * 2, opts_.max_retry_backoff);
    return wait_until(steady::now() + wait, false);
  }
  s.subscriber_backoff = opts_.retry_backoff;
  const double delivery_seconds = std::chrono::duration<double>(steady::now() - delivery_started).count();

  {
    pqxx::nontransaction tx{*s.conn};
    tx.exec_prepared(mark_name, last_tx, batch.back().seq);
  }
  for (auto& t : s.taken) {
    t.clear();
  }
  std::fill(s.attempts.begin(), s.attempts.end(), 0);
  dispatched_.fetch_add(batch.size(), std::memory_order_relaxed);
  batches_.fetch_add(1, std::memory_order_relaxed);
  if (metrics_) {
    metrics_->outbox_dispatched.Increment(static_cast<double>(batch.size()));
    for (double l : lag) {
      metrics_->outbox_dispatch_lag_seconds.Observe(std::max(0.0, l) + delivery_seconds);
    }
  }
  if (batch.size() >= opts_.batch_size) {
    return true;  // more may be waiting: go again at once
  }
  return held_back ? wait_held_back(round_started) : wait_idle(round_started);
}

// On taking the lock: puts a database restored from another cluster back in order (rare; logged). Throws
// database errors like round().
void outbox_dispatcher::check_foreign_ids(session& s) {
  bool foreign = false;
  {
    pqxx::nontransaction tx{*s.conn};
    foreign = tx.exec1(foreign_ids_sql)[0].as<bool>();
  }
  if (foreign) {
    pqxx::transaction<pqxx::isolation_level::repeatable_read> tx{*s.conn};
    tx.exec(rebase_first_sql);
    tx.exec(rebase_events_sql);
    tx.exec(rebase_cursor_sql);
    tx.commit();
    telemetry::log_error(
        "outbox: transaction ids from another cluster (a restored dump); events renumbered to tx 0, "
        "undelivered ones will be delivered, some delivered ones again");
  }
}

void outbox_dispatcher::park(session& s, const subscriber& sub, const std::vector<outbox_event>& events,
                             int attempts, const std::string& error) {
  {
    pqxx::nontransaction tx{*s.conn};
    tx.exec_params(park_sql, sub.name, seq_array(events), attempts, error);
  }
  parked_.fetch_add(events.size(), std::memory_order_relaxed);
  if (metrics_) {
    metrics_->outbox_parked(sub.name).Increment(static_cast<double>(events.size()));
  }
  telemetry::log_error("outbox subscriber gave up on events; parked for it in outbox_parked",
                       {{"subscriber", sub.name},
                        {"error", error},
                        {"attempts", attempts},
                        {"first_seq", events.front().seq},
                        {"first_event_id", events.front().id},
                        {"events", events.size()}});
}

void outbox_dispatcher::refresh_gauges(session& s) {
  if (!metrics_) {
    return;
  }
  pqxx::nontransaction tx{*s.conn};
  const pqxx::result r = tx.exec_prepared(gauges_name);
  metrics_->outbox_pending.Set(static_cast<double>(std::min(r[0][0].as<long long>(), pending_cap)));
  metrics_->outbox_oldest_pending_seconds.Set(std::max(0.0, r[0][1].as<double>()));
}

// A bounded slice of the retention sweep: at most 10 statements, so dispatching never waits long
// behind it. If rows are left, the next round continues; else the next sweep is one interval away.
void outbox_dispatcher::sweep(session& s) {
  constexpr int max_statements = 10;
  for (int i = 0; i < max_statements; ++i) {
    const std::size_t n = purge_once(*s.conn, opts_.retention, opts_.retention_batch);
    if (n > 0) {
      retention_deleted_.fetch_add(n, std::memory_order_relaxed);
      if (metrics_) {
        metrics_->outbox_retention_deleted.Increment(static_cast<double>(n));
      }
    }
    if (n < opts_.retention_batch) {
      s.next_sweep = steady::now() + opts_.retention_interval;
      return;
    }
  }
}

}  // namespace mercato::persistence
