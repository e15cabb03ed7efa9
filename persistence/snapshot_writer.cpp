#include "persistence/snapshot_writer.hpp"

#include <algorithm>
#include <string_view>
#include <unordered_map>

#include <pqxx/pqxx>

#include "persistence/db_error.hpp"
#include "persistence/pg_pool.hpp"
#include "telemetry/logging.hpp"
#include "telemetry/metrics.hpp"

namespace mercato::persistence {

const char* to_string(write_outcome o) {
  switch (o) {
    case write_outcome::committed: return "committed";
    case write_outcome::fenced: return "fenced";
    case write_outcome::unavailable: return "unavailable";
    case write_outcome::overloaded: return "overloaded";
    case write_outcome::failed: return "failed";
  }
  return "failed";
}

namespace {

using steady = std::chrono::steady_clock;

// Multi-row statements take whole columns as PostgreSQL array literals and unnest them, so one
// statement text (prepared once per connection) serves every batch size. Measured against a single
// jsonb parameter read with jsonb_to_recordset: the same speed, but the array literal escapes every
// value, so a malformed state can never be read as extra rows.
//
// Fencing: a snapshot row is written only if its (kind, shard, owner_epoch) names a live lease of
// this node, and only if its version is newer than the stored one. The lease is read, not locked
// (no FOR SHARE): the version check on the snapshot row itself is what serialises two writers of one
// entity (the row lock taken by ON CONFLICT), so a stale owner racing a lease hand-off can commit at
// most a version the new owner has not written, and the new owner's write of that version is then
// fenced. Not locking keeps lease rows free of multixacts and cannot deadlock with lease takeover.
constexpr const char* upsert_name = "mercato_snapshot_upsert";
constexpr const char* upsert_sql =
    "INSERT INTO entity_snapshots AS s (kind, id, version, owner_epoch, state) "
    "SELECT i.kind, i.id, i.version, i.owner_epoch, i.state "
    "FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::int[], $6::jsonb[]) "
    "  AS i(kind, id, version, owner_epoch, shard, state) "
    "JOIN shard_leases l ON l.kind = i.kind AND l.shard = i.shard AND l.epoch = i.owner_epoch "
    "  AND l.owner_node = $7 AND l.expires_at > now() "
    "ON CONFLICT (kind, id) DO UPDATE SET version = EXCLUDED.version, owner_epoch = EXCLUDED.owner_epoch, "
    "  state = EXCLUDED.state, updated_at = now() "
    "WHERE s.version < EXCLUDED.version "
    "RETURNING s.kind, s.id, s.version";

constexpr const char* outbox_name = "mercato_outbox_insert";
constexpr const char* outbox_retry_name = "mercato_outbox_insert_retry";
constexpr const char* outbox_sql =
    "INSERT INTO outbox (id, aggregate_kind, aggregate_id, event_type, event_version, data, metadata) "
    "SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[])";

// After a commit whose outcome is unknown: which of these entities already hold which version?
constexpr const char* versions_name = "mercato_snapshot_versions";
constexpr const char* versions_sql =
    "SELECT s.kind, s.id, s.version, s.owner_epoch FROM entity_snapshots s "
    "JOIN unnest($1::text[], $2::text[]) AS k(kind, id) ON s.kind = k.kind AND s.id = k.id";

// One column of a multi-row statement as an array literal: {"a","b\"c"} / {1,2}.
class array_literal {
 public:
  explicit array_literal(std::size_t reserve = 0) {
    text_.reserve(reserve + 2);
    text_.push_back('{');
  }
  void add_text(std::string_view s) {
    separate();
    text_.push_back('"');
    for (char c : s) {
      if (c == '"' || c == '\\') {
        text_.push_back('\\');
      }
      text_.push_back(c);
    }
    text_.push_back('"');
  }
  void add_int(std::int64_t v) {
    separate();
    text_ += std::to_string(v);
  }
  const std::string& finish() {
    text_.push_back('}');
    return text_;
  }

 private:
  void separate() {
    if (text_.size() > 1) {
      text_.push_back(',');
    }
  }
  std::string text_;
};

std::string entity_key(std::string_view kind, std::string_view id) {
  std::string k;
  k.reserve(kind.size() + id.size() + 1);
  k.append(kind).push_back('\0');
  k.append(id);
  return k;
}

std::uint64_t fnv1a(std::string_view a, std::string_view b) {
  std::uint64_t h = 1469598103934665603ULL;
  auto mix = [&h](std::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ULL;
    }
  };
  mix(a);
  mix(std::string_view("\0", 1));
  mix(b);
  return h;
}

std::string_view json_or_empty_object(const std::string& s) { return s.empty() ? std::string_view("{}") : s; }

// A lane's connection, opened lazily, with the batch statements prepared on it.
struct connection_slot {
  std::unique_ptr<pqxx::connection> conn;
  bool down = false;  // the last attempt failed because PostgreSQL was unreachable
  db_error last_error{db_error_kind::unavailable, "postgresql unreachable", {}};

  void ensure(const snapshot_writer_options& opts) {
    if (conn && conn->is_open()) {
      return;
    }
    conn.reset();
    const auto connect_timeout = std::min(opts.commit_deadline, std::chrono::milliseconds(2000));
    const auto statement_timeout = std::max(opts.commit_deadline, std::chrono::milliseconds(1000));
    auto c = open_connection(opts.dsn, connect_timeout, statement_timeout);
    c->prepare(upsert_name, upsert_sql);
    c->prepare(outbox_name, outbox_sql);
    c->prepare(outbox_retry_name, std::string(outbox_sql) + " ON CONFLICT (id) DO NOTHING");
    c->prepare(versions_name, versions_sql);
    conn = std::move(c);
  }
};

struct attempt_result {
  std::vector<write_outcome> outcomes;  // one per write, in order
  std::size_t snapshot_rows = 0;
  std::size_t events = 0;
};

// One transaction for `writes` (in enqueue order). Throws whatever libpqxx throws; `in_commit` tells
// the caller whether the failure happened during COMMIT (outcome unknown). With `maybe_applied` (a
// previous attempt of these writes failed in COMMIT) a snapshot the upsert skips because the stored
// row already has this write's version and epoch counts as committed by that attempt: its events and
// projections were committed with it and are not written again.
attempt_result write_batch(pqxx::connection& conn, const std::string& node_id,
                           const std::vector<const pending_write*>& writes, bool maybe_applied, bool& in_commit) {
  const std::size_t n = writes.size();

  // Group the writes by entity. The newest version (`top`) carries the snapshot row; a write that
  // does not raise the version over the writes of its entity before it is stale and fenced.
  std::unordered_map<std::string, std::size_t> group_of_key;
  group_of_key.reserve(n * 2);
  std::vector<std::size_t> top;        // group -> index of its newest write
  std::vector<std::size_t> group(n);   // write -> group
  std::vector<char> stale(n, 0);
  for (std::size_t i = 0; i < n; ++i) {
    const auto& s = writes[i]->snap;
    auto [it, inserted] = group_of_key.emplace(entity_key(s.kind, s.id), top.size());
    if (inserted) {
      top.push_back(i);
    } else if (s.version > writes[top[it->second]]->snap.version) {
      top[it->second] = i;
    } else {
      stale[i] = 1;
    }
    group[i] = it->second;
  }
  const std::size_t groups = top.size();

  enum : char { g_fenced = 0, g_applied = 1, g_already = 2 };
  std::vector<char> state(groups, g_fenced);

  pqxx::work tx{conn};
  {
    std::size_t state_bytes = 0;
    for (auto t : top) {
      state_bytes += writes[t]->snap.state_json.size() + 8;
    }
    array_literal kinds(groups * 8), ids(groups * 24), versions(groups * 8), epochs(groups * 4), shards(groups * 4),
        states(state_bytes + state_bytes / 4);
    for (auto t : top) {
      const auto& s = writes[t]->snap;
      kinds.add_text(s.kind);
      ids.add_text(s.id);
      versions.add_int(s.version);
      epochs.add_int(s.owner_epoch);
      shards.add_int(s.shard);
      states.add_text(s.state_json);
    }
    const pqxx::result rows = tx.exec_prepared(upsert_name, kinds.finish(), ids.finish(), versions.finish(),
                                               epochs.finish(), shards.finish(), states.finish(), node_id);
    for (const auto& row : rows) {
      auto it = group_of_key.find(entity_key(row[0].c_str(), row[1].c_str()));
      if (it != group_of_key.end() && row[2].as<std::int64_t>() == writes[top[it->second]]->snap.version) {
        state[it->second] = g_applied;
      }
    }
  }

  if (maybe_applied) {
    array_literal kinds, ids;
    bool any = false;
    for (std::size_t g = 0; g < groups; ++g) {
      if (state[g] == g_fenced) {
        kinds.add_text(writes[top[g]]->snap.kind);
        ids.add_text(writes[top[g]]->snap.id);
        any = true;
      }
    }
    if (any) {
      const pqxx::result rows = tx.exec_prepared(versions_name, kinds.finish(), ids.finish());
      for (const auto& row : rows) {
        auto it = group_of_key.find(entity_key(row[0].c_str(), row[1].c_str()));
        if (it == group_of_key.end() || state[it->second] != g_fenced) {
          continue;
        }
        const auto& s = writes[top[it->second]]->snap;
        if (row[2].as<std::int64_t>() == s.version && row[3].as<std::int64_t>() == s.owner_epoch) {
          state[it->second] = g_already;
        }
      }
    }
  }

  // Events of every write whose entity row was applied now, in enqueue order (outbox.seq follows).
  attempt_result result;
  {
    std::size_t count = 0;
    std::size_t bytes = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (!stale[i] && state[group[i]] == g_applied) {
        for (const auto& e : writes[i]->events) {
          ++count;
          bytes += e.data_json.size() + e.metadata_json.size();
        }
      }
    }
    if (count > 0) {
      array_literal ids(count * 40), kinds(count * 8), agg_ids(count * 24), types(count * 20), versions(count * 4),
          data(bytes), metadata(bytes / 2);
      for (std::size_t i = 0; i < n; ++i) {
        if (stale[i] || state[group[i]] != g_applied) {
          continue;
        }
        const auto& s = writes[i]->snap;
        for (const auto& e : writes[i]->events) {
          ids.add_text(e.id);
          kinds.add_text(s.kind);
          agg_ids.add_text(s.id);
          types.add_text(e.event_type);
          versions.add_text(e.event_version);
          data.add_text(json_or_empty_object(e.data_json));
          metadata.add_text(json_or_empty_object(e.metadata_json));
        }
      }
      tx.exec_prepared(maybe_applied ? outbox_retry_name : outbox_name, ids.finish(), kinds.finish(),
                       agg_ids.finish(), types.finish(), versions.finish(), data.finish(), metadata.finish());
      result.events = count;
    }
  }

  // Projections follow the newest state of each entity written now.
  for (std::size_t g = 0; g < groups; ++g) {
    if (state[g] != g_applied) {
      continue;
    }
    ++result.snapshot_rows;
    for (const auto& p : writes[top[g]]->projections) {
      tx.exec_params(p.sql, pqxx::prepare::make_dynamic_params(p.params));
    }
  }

  in_commit = true;
  tx.commit();
  in_commit = false;

  result.outcomes.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    result.outcomes[i] = (!stale[i] && state[group[i]] != g_fenced) ? write_outcome::committed : write_outcome::fenced;
  }
  return result;
}

bool is_transient(const db_error& err) {
  return err.kind == db_error_kind::unavailable || err.kind == db_error_kind::timeout ||
         err.sqlstate == "40001" || err.sqlstate == "40P01";  // serialization failure, deadlock
}

enum class try_status { committed, unavailable, error };

struct try_result {
  try_status status = try_status::error;
  attempt_result result;
  db_error error;
};

// Runs write_batch until it commits, fails for a non-transient reason, or `deadline` passes while
// PostgreSQL stays unreachable (reconnecting with backoff 50 ms doubling to 1 s).
try_result commit_with_retry(connection_slot& slot, const snapshot_writer_options& opts, telemetry::metrics* metrics,
                             const std::vector<const pending_write*>& writes, steady::time_point deadline,
                             bool& maybe_applied) {
  auto backoff = std::chrono::milliseconds(50);
  db_error& last = slot.last_error;
  bool warned = false;
  for (;;) {
    // The lane already knows PostgreSQL is gone and these writes are out of time: do not wait for
    // another connect (a drain after an outage must not cost one connect timeout per batch).
    if (slot.down && steady::now() >= deadline) {
      return {try_status::unavailable, {}, last};
    }
    bool in_commit = false;
    try {
      slot.ensure(opts);
      const auto started = steady::now();
      auto r = write_batch(*slot.conn, opts.node_id, writes, maybe_applied, in_commit);
      if (metrics) {
        metrics->snapshot_commit_seconds.Observe(std::chrono::duration<double>(steady::now() - started).count());
        metrics->snapshot_batch_size.Observe(static_cast<double>(writes.size()));
      }
      if (slot.down) {
        telemetry::log_info("snapshot writer reconnected to postgresql");
      }
      slot.down = false;
      return {try_status::committed, std::move(r), {}};
    } catch (...) {
      last = classify_current_exception();
      if (in_commit) {
        maybe_applied = true;  // COMMIT may have happened: the next attempt checks stored versions
      }
      if (!is_transient(last)) {
        return {try_status::error, {}, last};
      }
      if (last.kind == db_error_kind::unavailable) {
        slot.conn.reset();
        slot.down = true;
      }
    }
    const auto now = steady::now();
    if (now >= deadline) {
      return {try_status::unavailable, {}, last};
    }
    if (!warned) {
      telemetry::log_warn("snapshot batch not committed, retrying",
                          {{"writes", writes.size()}, {"error", last.message}, {"kind", to_string(last.kind)}});
      warned = true;
    }
    std::this_thread::sleep_for(std::min<steady::duration>(backoff, deadline - now));
    backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
  }
}

}  // namespace

struct snapshot_writer::batch_item {
  pending_write w;
  steady::time_point enqueued_at;
};

struct snapshot_writer::lane {
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<batch_item> queue;
  bool stopping = false;
  std::thread thread;

  // Lane thread only from here on.
  connection_slot slot;

  // A write that did not commit takes the writes of its entity queued behind it down with it: their
  // state was computed on top of it, so committing them would store a change whose write failed (and
  // whose caller was told so) without its events. Only writes enqueued before the failure was
  // reported are affected; an entity that has seen the failure restarts from the stored snapshot.
  struct failure {
    std::int64_t version;
    write_outcome outcome;
    steady::time_point reported_at;
  };
  std::unordered_map<std::string, failure> failed_entities;
  std::deque<std::pair<steady::time_point, std::string>> failure_order;

  // Writes leave the queue in order, so a newer failure of an entity replaces the older one: every
  // write enqueued before the older one was reported has been handled already.
  void record_failure(std::string key, std::int64_t version, write_outcome o) {
    const auto now = steady::now();
    failed_entities.insert_or_assign(key, failure{version, o, now});
    failure_order.emplace_back(now, std::move(key));
  }

  // Writes leave the queue in order: once the oldest write at hand was enqueued after a failure was
  // reported, no write that failure concerns is left.
  void forget_failures_before(steady::time_point oldest_enqueued) {
    while (!failure_order.empty() && failure_order.front().first < oldest_enqueued) {
      auto it = failed_entities.find(failure_order.front().second);
      if (it != failed_entities.end() && it->second.reported_at == failure_order.front().first) {
        failed_entities.erase(it);
      }
      failure_order.pop_front();
    }
  }

  std::optional<write_outcome> failed_before(const batch_item& item) const;
};

snapshot_writer::snapshot_writer(snapshot_writer_options opts, telemetry::metrics* metrics)
    : opts_(std::move(opts)), metrics_(metrics) {
  opts_.threads = std::max(1u, opts_.threads);
  opts_.max_batch = std::max<std::size_t>(1, opts_.max_batch);
  lanes_.reserve(opts_.threads);
  for (unsigned i = 0; i < opts_.threads; ++i) {
    lanes_.push_back(std::make_unique<lane>());
  }
  for (auto& l : lanes_) {
    l->thread = std::thread([this, lp = l.get()] { run_lane(*lp); });
  }
}

snapshot_writer::~snapshot_writer() { stop(); }

write_outcome snapshot_writer::enqueue(pending_write w) {
  auto refuse = [this] {
    if (metrics_) {
      metrics_->snapshot_overloaded.Increment();
    }
    return write_outcome::overloaded;
  };
  if (stopping_.load(std::memory_order_acquire)) {
    return refuse();
  }
  if (depth_.fetch_add(1, std::memory_order_relaxed) >= opts_.queue_limit) {
    depth_.fetch_sub(1, std::memory_order_relaxed);
    return refuse();
  }
  if (metrics_) {
    metrics_->snapshot_queue_depth.Increment();
  }
  lane& l = *lanes_[fnv1a(w.snap.kind, w.snap.id) % lanes_.size()];
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock{l.mutex};
    if (l.stopping) {
      depth_.fetch_sub(1, std::memory_order_relaxed);
      if (metrics_) {
        metrics_->snapshot_queue_depth.Decrement();
      }
      return refuse();
    }
    l.queue.push_back(batch_item{std::move(w), steady::now()});
    // The lane sleeps until a first write arrives, then lingers until the batch is full.
    wake = l.queue.size() == 1 || l.queue.size() == opts_.max_batch;
  }
  if (wake) {
    l.cv.notify_one();
  }
  return write_outcome::committed;
}

void snapshot_writer::stop() {
  std::lock_guard<std::mutex> guard{stop_mutex_};
  stopping_.store(true, std::memory_order_release);
  for (auto& l : lanes_) {
    {
      std::lock_guard<std::mutex> lock{l->mutex};
      l->stopping = true;
    }
    l->cv.notify_all();
  }
  for (auto& l : lanes_) {
    if (l->thread.joinable()) {
      l->thread.join();
    }
  }
}

snapshot_writer_stats snapshot_writer::stats() const {
  snapshot_writer_stats s;
  s.transactions = stats_.transactions.load(std::memory_order_relaxed);
  s.snapshot_rows = stats_.snapshot_rows.load(std::memory_order_relaxed);
  s.events = stats_.events.load(std::memory_order_relaxed);
  s.committed = stats_.committed.load(std::memory_order_relaxed);
  s.fenced = stats_.fenced.load(std::memory_order_relaxed);
  s.failed = stats_.failed.load(std::memory_order_relaxed);
  s.unavailable = stats_.unavailable.load(std::memory_order_relaxed);
  return s;
}

void snapshot_writer::run_lane(lane& l) {
  // Connect early so the first batch does not pay for it; failures are retried per batch.
  try {
    l.slot.ensure(opts_);
  } catch (...) {
    l.slot.conn.reset();
  }
  std::vector<batch_item> batch;
  batch.reserve(std::min<std::size_t>(opts_.max_batch, 4096));
  for (;;) {
    batch.clear();
    {
      std::unique_lock<std::mutex> lock{l.mutex};
      l.cv.wait(lock, [&l] { return l.stopping || !l.queue.empty(); });
      if (l.queue.empty()) {
        return;  // stopping, and everything is drained
      }
      if (!l.stopping && l.queue.size() < opts_.max_batch && opts_.linger.count() > 0) {
        const auto until = l.queue.front().enqueued_at + opts_.linger;
        l.cv.wait_until(lock, until, [&] { return l.stopping || l.queue.size() >= opts_.max_batch; });
      }
      const std::size_t take = std::min(opts_.max_batch, l.queue.size());
      for (std::size_t i = 0; i < take; ++i) {
        batch.push_back(std::move(l.queue.front()));
        l.queue.pop_front();
      }
    }
    process(l, batch);
  }
}

std::optional<write_outcome> snapshot_writer::lane::failed_before(const batch_item& item) const {
  if (failed_entities.empty()) {
    return std::nullopt;
  }
  auto it = failed_entities.find(entity_key(item.w.snap.kind, item.w.snap.id));
  if (it == failed_entities.end() || item.enqueued_at >= it->second.reported_at ||
      item.w.snap.version <= it->second.version) {
    return std::nullopt;
  }
  return it->second.outcome;
}

void snapshot_writer::process(lane& l, std::vector<batch_item>& batch) {
  l.forget_failures_before(batch.front().enqueued_at);
  auto settle = [this, &l](batch_item& item, write_outcome o) {
    if (o == write_outcome::committed) {
      finish(item, o);
      return;
    }
    std::string key = entity_key(item.w.snap.kind, item.w.snap.id);
    const std::int64_t version = item.w.snap.version;
    finish(item, o);  // reported to the entity from here on
    l.record_failure(std::move(key), version, o);
  };

  std::vector<batch_item*> live;
  std::vector<const pending_write*> writes;
  live.reserve(batch.size());
  writes.reserve(batch.size());
  auto oldest = batch.front().enqueued_at;
  for (auto& item : batch) {
    if (auto o = l.failed_before(item)) {
      finish(item, *o);
      continue;
    }
    live.push_back(&item);
    writes.push_back(&item.w);
    oldest = std::min(oldest, item.enqueued_at);
  }
  if (live.empty()) {
    return;
  }

  bool maybe_applied = false;
  auto r = commit_with_retry(l.slot, opts_, metrics_, writes, oldest + opts_.commit_deadline, maybe_applied);
  if (r.status == try_status::committed) {
    stats_.transactions.fetch_add(1, std::memory_order_relaxed);
    stats_.snapshot_rows.fetch_add(r.result.snapshot_rows, std::memory_order_relaxed);
    stats_.events.fetch_add(r.result.events, std::memory_order_relaxed);
    for (std::size_t i = 0; i < live.size(); ++i) {
      settle(*live[i], r.result.outcomes[i]);
    }
    return;
  }
  if (r.status == try_status::unavailable) {
    telemetry::log_warn("snapshot batch failed: postgresql unavailable past the commit deadline",
                        {{"writes", live.size()}, {"error", r.error.message}});
    for (auto* item : live) {
      settle(*item, write_outcome::unavailable);
    }
    return;
  }

  // Something in the batch is rejected (a projection breaks a constraint, a malformed state, ...):
  // commit each write alone so only the offending one fails (and, through failed_before, the
  // writes of its entity behind it).
  if (live.size() > 1) {
    telemetry::log_warn("snapshot batch failed, retrying write by write",
                        {{"writes", live.size()}, {"error", r.error.message}, {"sqlstate", r.error.sqlstate}});
  }
  for (auto* item : live) {
    if (auto o = l.failed_before(*item)) {
      finish(*item, *o);
      continue;
    }
    std::vector<const pending_write*> one{&item->w};
    bool one_maybe_applied = maybe_applied;
    auto r1 = commit_with_retry(l.slot, opts_, metrics_, one, item->enqueued_at + opts_.commit_deadline,
                                one_maybe_applied);
    switch (r1.status) {
      case try_status::committed:
        stats_.transactions.fetch_add(1, std::memory_order_relaxed);
        stats_.snapshot_rows.fetch_add(r1.result.snapshot_rows, std::memory_order_relaxed);
        stats_.events.fetch_add(r1.result.events, std::memory_order_relaxed);
        settle(*item, r1.result.outcomes[0]);
        break;
      case try_status::unavailable:
        settle(*item, write_outcome::unavailable);
        break;
      case try_status::error:
        telemetry::log_warn("snapshot write failed",
                            {{"kind", item->w.snap.kind}, {"id", item->w.snap.id}, {"version", item->w.snap.version},
                             {"error", r1.error.message}, {"sqlstate", r1.error.sqlstate}});
        settle(*item, write_outcome::failed);
        break;
    }
  }
}

void snapshot_writer::finish(batch_item& item, write_outcome o) {
  switch (o) {
    case write_outcome::committed: stats_.committed.fetch_add(1, std::memory_order_relaxed); break;
    case write_outcome::fenced:
      stats_.fenced.fetch_add(1, std::memory_order_relaxed);
      if (metrics_) {
        metrics_->snapshot_fenced.Increment();
      }
      break;
    case write_outcome::unavailable:
    case write_outcome::failed:
    case write_outcome::overloaded:
      (o == write_outcome::failed ? stats_.failed : stats_.unavailable).fetch_add(1, std::memory_order_relaxed);
      if (metrics_) {
        metrics_->snapshot_failed.Increment();
      }
      break;
  }
  if (item.w.done) {
    try {
      item.w.done(o);
    } catch (const std::exception& e) {
      telemetry::log_error("snapshot write callback threw", {{"error", e.what()}});
    } catch (...) {
      telemetry::log_error("snapshot write callback threw");
    }
  }
  // Free what the write holds before it counts as gone from the queue.
  item.w = pending_write{};
  depth_.fetch_sub(1, std::memory_order_relaxed);
  if (metrics_) {
    metrics_->snapshot_queue_depth.Decrement();
  }
}

std::optional<snapshot> load_snapshot(pqxx::connection& conn, const std::string& kind, const std::string& id) {
  pqxx::nontransaction tx{conn};
  const pqxx::result r =
      tx.exec_params("SELECT version, owner_epoch, state::text FROM entity_snapshots WHERE kind = $1 AND id = $2",
                     kind, id);
  if (r.empty()) {
    return std::nullopt;
  }
  snapshot s;
  s.kind = kind;
  s.id = id;
  s.version = r[0][0].as<std::int64_t>();
  s.owner_epoch = r[0][1].as<std::int64_t>();
  s.shard = -1;
  s.state_json = r[0][2].c_str();
  return s;
}

std::int64_t acquire_all_leases(pqxx::connection& conn, const std::string& kind, int shards,
                                const std::string& node_id) {
  if (shards <= 0) {
    throw std::invalid_argument("acquire_all_leases: shards must be positive");
  }
  pqxx::work tx{conn};
  // Two nodes (or two incarnations) taking the leases of one kind at once must get different epochs.
  const auto lock_key = static_cast<std::int64_t>(fnv1a("mercato.shard_leases", kind));
  tx.exec_params("SELECT pg_advisory_xact_lock($1)", lock_key);
  const auto epoch =
      tx.exec_params1("SELECT COALESCE(MAX(epoch), 0) + 1 FROM shard_leases WHERE kind = $1", kind)[0]
          .as<std::int64_t>();
  tx.exec_params(
      "INSERT INTO shard_leases (kind, shard, owner_node, epoch, expires_at) "
      "SELECT $1, g, $2, $3, now() + interval '100 years' FROM generate_series(0, $4 - 1) AS g "
      "ON CONFLICT (kind, shard) DO UPDATE SET owner_node = EXCLUDED.owner_node, epoch = EXCLUDED.epoch, "
      "  expires_at = EXCLUDED.expires_at",
      kind, node_id, epoch, shards);
  tx.commit();
  return epoch;
}

}  // namespace mercato::persistence
