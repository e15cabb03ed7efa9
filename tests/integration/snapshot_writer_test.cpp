// The snapshot writer against a real PostgreSQL: group commit, ordering per entity, fencing, events
// and projections in the snapshot's transaction, failure isolation, overload and outage.
#include <doctest/doctest.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <pqxx/pqxx>

#include "actors/protocol/entity_records.hpp"
#include "persistence/migrations.hpp"
#include "persistence/snapshot_writer.hpp"
#include "support/scratch_database.hpp"
#include "telemetry/metrics.hpp"

using namespace mercato;
using persistence::write_outcome;
using namespace std::chrono_literals;

namespace {

constexpr int shards = 8;
constexpr const char* node = "node-a";

std::string new_uuid() {
  static std::mutex m;
  static std::mt19937_64 rng{std::random_device{}()};
  std::uint64_t a;
  std::uint64_t b;
  {
    std::lock_guard<std::mutex> lock{m};
    a = rng();
    b = rng();
  }
  a = (a & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;
  b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  char buf[40];
  std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(a >> 32),
                static_cast<unsigned>((a >> 16) & 0xffff), static_cast<unsigned>(a & 0xffff),
                static_cast<unsigned>(b >> 48), static_cast<unsigned long long>(b & 0xffffffffffffULL));
  return buf;
}

// A projection row of the test tables (key "id", a bigint "version", more bigint columns).
protocol::projection_row proj(const std::string& table, const std::string& id, std::int64_t version,
                              std::vector<std::pair<std::string, std::optional<std::string>>> more = {}) {
  protocol::projection_row r{table, {{"id", protocol::column_type::text, id}}};
  for (auto& [name, value] : more) {
    r.columns.push_back({name, protocol::column_type::bigint, value});
  }
  r.columns.push_back({"version", protocol::column_type::bigint, std::to_string(version)});
  return r;
}

// Collects the outcome of each write by index and checks that every callback runs exactly once.
class acks {
 public:
  explicit acks(std::size_t n) : outcomes_(n, write_outcome::overloaded), calls_(n, 0) {}

  std::function<void(write_outcome)> slot(std::size_t i) {
    return [this, i](write_outcome o) {
      std::lock_guard<std::mutex> lock{m_};
      outcomes_[i] = o;
      ++calls_[i];
      ++total_;
      cv_.notify_all();
    };
  }
  bool wait(std::size_t n, std::chrono::milliseconds timeout = 20s) {
    std::unique_lock<std::mutex> lock{m_};
    return cv_.wait_for(lock, timeout, [&] { return total_ >= n; });
  }
  write_outcome at(std::size_t i) {
    std::lock_guard<std::mutex> lock{m_};
    return outcomes_[i];
  }
  std::size_t count(write_outcome o) {
    std::lock_guard<std::mutex> lock{m_};
    return static_cast<std::size_t>(std::count(outcomes_.begin(), outcomes_.end(), o));
  }
  bool each_called_once(std::size_t n) {
    std::lock_guard<std::mutex> lock{m_};
    return std::all_of(calls_.begin(), calls_.begin() + static_cast<std::ptrdiff_t>(n),
                       [](int c) { return c == 1; });
  }
  std::size_t total() {
    std::lock_guard<std::mutex> lock{m_};
    return total_;
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<write_outcome> outcomes_;
  std::vector<int> calls_;
  std::size_t total_ = 0;
};

persistence::pending_write make_write(const std::string& kind, const std::string& id, std::int64_t version,
                                      std::int64_t epoch, int events = 1) {
  persistence::pending_write w;
  w.snap = persistence::snapshot{kind, id, version, epoch, static_cast<int>(std::hash<std::string>{}(id) % shards),
                                 "{\"id\": \"" + id + "\", \"v\": " + std::to_string(version) +
                                     ", \"pad\": \"" + std::string(120, 'x') + "\"}",
                                 version - 1,  // built on the version before (tests starting higher set 0)
                                 {},
                                 {}};
  for (int e = 0; e < events; ++e) {
    w.events.push_back(persistence::domain_event{
        new_uuid(), "TestHappened", "1", "{\"v\": " + std::to_string(version) + ", \"e\": " + std::to_string(e) + "}",
        "{\"correlation_id\": \"c-" + id + "\", \"source\": \"test\"}"});
  }
  return w;
}

std::int64_t scalar(pqxx::connection& c, const std::string& sql) {
  pqxx::nontransaction tx{c};
  return tx.exec(sql)[0][0].as<std::int64_t>();
}

void exec(pqxx::connection& c, const std::string& sql) {
  pqxx::nontransaction tx{c};
  tx.exec(sql);
}

struct fixture {
  test::scratch_database db;
  pqxx::connection conn{db.dsn()};
  std::int64_t epoch = 0;

  fixture() {
    persistence::apply_migrations(conn, persistence::bundled_migrations());
    epoch = persistence::acquire_all_leases(conn, "cart", shards, node);
  }

  persistence::snapshot_writer_options options() const {
    persistence::snapshot_writer_options o;
    o.dsn = db.dsn();
    o.node_id = node;
    return o;
  }
};

persistence::snapshot_writer_options unreachable_options(std::chrono::milliseconds deadline) {
  persistence::snapshot_writer_options o;
  o.dsn = "postgresql://mercato@127.0.0.1:1/mercato";  // nothing listens on port 1
  o.node_id = node;
  o.commit_deadline = deadline;
  return o;
}

}  // namespace

TEST_CASE("leases: every shard of a kind, a new epoch each time, kinds independent") {
  fixture f;
  CHECK(f.epoch == 1);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM shard_leases WHERE kind = 'cart' AND owner_node = 'node-a' "
                       "AND epoch = 1 AND expires_at > now() + interval '1 year'") == shards);
  CHECK(persistence::acquire_all_leases(f.conn, "cart", shards, node) == 2);
  CHECK(persistence::acquire_all_leases(f.conn, "cart", shards, "node-b") == 3);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM shard_leases WHERE kind = 'cart' AND owner_node = 'node-b' "
                       "AND epoch = 3") == shards);
  CHECK(persistence::acquire_all_leases(f.conn, "order", 4, node) == 1);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM shard_leases") == shards + 4);
}

TEST_CASE("many writes from many entities commit in few grouped transactions") {
  fixture f;
  telemetry::metrics m;
  auto opts = f.options();
  opts.threads = 2;
  constexpr int entities = 500;
  constexpr int versions = 10;
  constexpr std::size_t total = entities * versions;
  acks a{total};
  {
    persistence::snapshot_writer w{opts, &m};
    std::size_t i = 0;
    for (int v = 1; v <= versions; ++v) {
      for (int e = 0; e < entities; ++e, ++i) {
        auto pw = make_write("cart", "cart-" + std::to_string(e), v, f.epoch);
        pw.done = a.slot(i);
        REQUIRE(w.enqueue(std::move(pw)) == write_outcome::committed);
      }
    }
    REQUIRE(a.wait(total));
    CHECK(a.count(write_outcome::committed) == total);
    CHECK(a.each_called_once(total));
    const auto s = w.stats();
    CHECK(s.committed == total);
    CHECK(s.events == total);
    CHECK(s.snapshot_rows <= total);
    CHECK(s.transactions >= 2);
    CHECK(s.transactions <= total / 20);  // grouped: in practice a handful of transactions
    CHECK(s.stepwise == 0);  // nothing in doubt, no row missing: every batch was one statement
    MESSAGE("transactions: " << s.transactions << ", snapshot rows: " << s.snapshot_rows);
    // The callbacks run before the write leaves the queue count: wait for the count to settle.
    for (int k = 0; k < 200 && w.queue_depth() != 0; ++k) {
      std::this_thread::sleep_for(5ms);
    }
    CHECK(w.queue_depth() == 0);
    CHECK(m.snapshot_batch_size.Collect().histogram.sample_count == s.transactions);
    CHECK(m.snapshot_commit_seconds.Collect().histogram.sample_count == s.transactions);
    CHECK(m.snapshot_queue_depth.Value() == 0);
  }
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM entity_snapshots WHERE kind = 'cart'") == entities);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM entity_snapshots WHERE version = 10 AND owner_epoch = 1 "
                       "AND (state->>'v')::int = 10") == entities);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM outbox WHERE aggregate_kind = 'cart' AND event_type = 'TestHappened' "
                       "AND metadata->>'source' = 'test'") == static_cast<std::int64_t>(total));
}

TEST_CASE("one entity's versions 1..50 enqueued at once: all committed, newest stored, events in order") {
  fixture f;
  exec(f.conn, "CREATE TABLE proj_latest (id TEXT PRIMARY KEY, version BIGINT NOT NULL)");
  auto opts = f.options();
  opts.threads = 3;
  constexpr std::size_t n = 50;
  acks a{n};
  persistence::snapshot_writer w{opts, nullptr};
  for (std::size_t v = 1; v <= n; ++v) {
    auto pw = make_write("cart", "hot", static_cast<std::int64_t>(v), f.epoch);
    pw.projections.push_back(proj("proj_latest", "hot", static_cast<std::int64_t>(v)));
    pw.done = a.slot(v - 1);
    REQUIRE(w.enqueue(std::move(pw)) == write_outcome::committed);
  }
  REQUIRE(a.wait(n));
  CHECK(a.count(write_outcome::committed) == n);
  CHECK(a.each_called_once(n));
  CHECK(scalar(f.conn, "SELECT version FROM entity_snapshots WHERE kind = 'cart' AND id = 'hot'") == 50);
  CHECK(scalar(f.conn, "SELECT (state->>'v')::int FROM entity_snapshots WHERE kind = 'cart' AND id = 'hot'") == 50);
  CHECK(scalar(f.conn, "SELECT version FROM proj_latest WHERE id = 'hot'") == 50);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM outbox WHERE aggregate_id = 'hot'") == 50);
  // outbox.seq follows the versions: event i+1 was appended after event i.
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM (SELECT (data->>'v')::int AS v, "
                       "row_number() OVER (ORDER BY seq) AS r FROM outbox WHERE aggregate_id = 'hot') x "
                       "WHERE v = r") == 50);
}

TEST_CASE("a batch writes one snapshot row per entity and applies only the newest version's projections") {
  fixture f;
  // proj_latest is the query table; its trigger logs every row written to it, so the log shows which
  // versions' projections were applied.
  exec(f.conn, R"SQL(
    CREATE TABLE proj_log (id TEXT NOT NULL, version BIGINT NOT NULL);
    CREATE TABLE proj_latest (id TEXT PRIMARY KEY, version BIGINT NOT NULL);
    CREATE FUNCTION log_proj() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO proj_log VALUES (NEW.id, NEW.version); RETURN NULL; END $$;
    CREATE TRIGGER log_proj AFTER INSERT OR UPDATE ON proj_latest FOR EACH ROW EXECUTE FUNCTION log_proj();
  )SQL");
  auto opts = f.options();
  opts.threads = 1;
  opts.max_batch = 4;
  opts.linger = std::chrono::seconds(10);  // the batch closes when it is full, not on time
  acks a{4};
  persistence::snapshot_writer w{opts, nullptr};
  for (std::int64_t v = 1; v <= 3; ++v) {
    auto pw = make_write("cart", "multi", v, f.epoch, 2);
    pw.projections.push_back(proj("proj_latest", "multi", v));
    pw.done = a.slot(static_cast<std::size_t>(v - 1));
    REQUIRE(w.enqueue(std::move(pw)) == write_outcome::committed);
  }
  auto other = make_write("cart", "other", 1, f.epoch, 0);
  other.projections.push_back(proj("proj_latest", "other", 7));
  other.done = a.slot(3);
  REQUIRE(w.enqueue(std::move(other)) == write_outcome::committed);
  REQUIRE(a.wait(4));
  CHECK(a.count(write_outcome::committed) == 4);
  const auto s = w.stats();
  CHECK(s.transactions == 1);
  CHECK(s.snapshot_rows == 2);
  CHECK(s.events == 6);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM proj_log") == 2);
  CHECK(scalar(f.conn, "SELECT version FROM proj_log WHERE id = 'multi'") == 3);
  CHECK(scalar(f.conn, "SELECT version FROM proj_log WHERE id = 'other'") == 7);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM outbox WHERE aggregate_id = 'multi'") == 6);
}

TEST_CASE("a stale version is fenced and never overwrites, nor appends its events") {
  fixture f;
  telemetry::metrics m;
  persistence::snapshot_writer w{f.options(), &m};
  acks a{3};
  auto v5 = make_write("cart", "c1", 5, f.epoch);
  v5.snap.base_version = 0;
  v5.done = a.slot(0);
  REQUIRE(w.enqueue(std::move(v5)) == write_outcome::committed);
  REQUIRE(a.wait(1));
  CHECK(a.at(0) == write_outcome::committed);

  auto v3 = make_write("cart", "c1", 3, f.epoch);
  const std::string stale_event = v3.events[0].id;
  v3.done = a.slot(1);
  REQUIRE(w.enqueue(std::move(v3)) == write_outcome::committed);
  auto again = make_write("cart", "c1", 5, f.epoch);  // same version again, other content
  again.snap.state_json = "{\"other\": true}";
  again.done = a.slot(2);
  REQUIRE(w.enqueue(std::move(again)) == write_outcome::committed);
  REQUIRE(a.wait(3));
  CHECK(a.at(1) == write_outcome::fenced);
  CHECK(a.at(2) == write_outcome::fenced);
  CHECK(scalar(f.conn, "SELECT version FROM entity_snapshots WHERE id = 'c1'") == 5);
  CHECK(scalar(f.conn, "SELECT (state->>'v')::int FROM entity_snapshots WHERE id = 'c1'") == 5);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM outbox WHERE aggregate_id = 'c1'") == 1);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM outbox WHERE id = '" + stale_event + "'") == 0);
  CHECK(w.stats().fenced == 2);
  CHECK(m.snapshot_fenced.Value() == 2);
}

TEST_CASE("a write with an old owner epoch, another node's lease or no lease is fenced") {
  fixture f;
  persistence::snapshot_writer w{f.options(), nullptr};
  acks a{6};
  auto first = make_write("cart", "c1", 1, f.epoch);
  first.done = a.slot(0);
  REQUIRE(w.enqueue(std::move(first)) == write_outcome::committed);
  REQUIRE(a.wait(1));
  CHECK(a.at(0) == write_outcome::committed);

  // The node restarts (or another incarnation takes over): the old epoch no longer holds the shards.
  const auto epoch2 = persistence::acquire_all_leases(f.conn, "cart", shards, node);
  REQUIRE(epoch2 == f.epoch + 1);
  auto old_epoch = make_write("cart", "c1", 2, f.epoch);
  old_epoch.done = a.slot(1);
  REQUIRE(w.enqueue(std::move(old_epoch)) == write_outcome::committed);
  REQUIRE(a.wait(2));
  CHECK(a.at(1) == write_outcome::fenced);
  CHECK(scalar(f.conn, "SELECT version FROM entity_snapshots WHERE id = 'c1'") == 1);

  auto new_epoch = make_write("cart", "c1", 2, epoch2);
  new_epoch.done = a.slot(2);
  REQUIRE(w.enqueue(std::move(new_epoch)) == write_outcome::committed);
  REQUIRE(a.wait(3));
  CHECK(a.at(2) == write_outcome::committed);
  CHECK(scalar(f.conn, "SELECT owner_epoch FROM entity_snapshots WHERE id = 'c1'") == epoch2);

  // Leases of kind "order" belong to another node; kind "payment" has no leases at all.
  const auto other_epoch = persistence::acquire_all_leases(f.conn, "order", shards, "node-b");
  auto foreign = make_write("order", "o1", 1, other_epoch);
  foreign.done = a.slot(3);
  auto unleased = make_write("payment", "p1", 1, 1);
  unleased.done = a.slot(4);
  auto bad_shard = make_write("cart", "c2", 1, epoch2);
  bad_shard.snap.shard = shards + 3;
  bad_shard.done = a.slot(5);
  REQUIRE(w.enqueue(std::move(foreign)) == write_outcome::committed);
  REQUIRE(w.enqueue(std::move(unleased)) == write_outcome::committed);
  REQUIRE(w.enqueue(std::move(bad_shard)) == write_outcome::committed);
  REQUIRE(a.wait(6));
  CHECK(a.at(3) == write_outcome::fenced);
  CHECK(a.at(4) == write_outcome::fenced);
  CHECK(a.at(5) == write_outcome::fenced);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM entity_snapshots") == 1);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM outbox") == 2);
}

TEST_CASE("a failing projection fails only its own write; the rest of the batch commits") {
  fixture f;
  telemetry::metrics m;
  exec(f.conn, "CREATE TABLE proj_stock (id TEXT PRIMARY KEY, qty INT NOT NULL CHECK (qty >= 0), version BIGINT)");
  auto opts = f.options();
  opts.threads = 1;
  opts.max_batch = 4;
  opts.linger = std::chrono::seconds(10);
  persistence::snapshot_writer w{opts, &m};
  acks a{4};
  const int qty[] = {1, -1, 2, 3};
  for (std::size_t i = 0; i < 4; ++i) {
    const std::string id = "p" + std::to_string(i);
    auto pw = make_write("cart", id, 1, f.epoch);
    pw.projections.push_back(proj("proj_stock", id, 1, {{"qty", std::to_string(qty[i])}}));
    pw.done = a.slot(i);
    REQUIRE(w.enqueue(std::move(pw)) == write_outcome::committed);
  }
  REQUIRE(a.wait(4));
  CHECK(a.at(0) == write_outcome::committed);
  CHECK(a.at(1) == write_outcome::failed);
  CHECK(a.at(2) == write_outcome::committed);
  CHECK(a.at(3) == write_outcome::committed);
  CHECK(a.each_called_once(4));
  // Snapshot, events and projection of the failed write are all absent; the others are complete.
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM entity_snapshots WHERE id = 'p1'") == 0);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM outbox WHERE aggregate_id = 'p1'") == 0);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM entity_snapshots WHERE id IN ('p0', 'p2', 'p3')") == 3);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM outbox WHERE aggregate_id IN ('p0', 'p2', 'p3')") == 3);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM proj_stock") == 3);
  CHECK(w.stats().failed == 1);
  CHECK(m.snapshot_failed.Value() == 1);

  // A malformed state is isolated the same way.
  acks b{2};
  auto bad = make_write("cart", "bad", 1, f.epoch);
  bad.snap.state_json = "{not json";
  bad.done = b.slot(0);
  auto good = make_write("cart", "good", 1, f.epoch);
  good.done = b.slot(1);
  REQUIRE(w.enqueue(std::move(bad)) == write_outcome::committed);
  REQUIRE(w.enqueue(std::move(good)) == write_outcome::committed);
  w.stop();  // drains: the two-write batch closes without waiting out the linger
  REQUIRE(b.wait(2, 1s));
  CHECK(b.at(0) == write_outcome::failed);
  CHECK(b.at(1) == write_outcome::committed);
}

TEST_CASE("values with quotes, backslashes, braces and unicode survive the array encoding") {
  fixture f;
  persistence::snapshot_writer w{f.options(), nullptr};
  acks a{1};
  const std::string id = "we\"ird\\ {id}, NULL";
  auto pw = make_write("cart", id, 1, f.epoch);
  const std::string state = R"({"s": "a\"b\\c {x,y} \u00e9 NULL", "n": null})";
  pw.snap.state_json = state;
  pw.events[0].data_json = R"({"q": "\"}{,"})";
  pw.events[0].metadata_json = "";
  pw.done = a.slot(0);
  REQUIRE(w.enqueue(std::move(pw)) == write_outcome::committed);
  REQUIRE(a.wait(1));
  REQUIRE(a.at(0) == write_outcome::committed);
  auto snap = persistence::load_snapshot(f.conn, "cart", id);
  REQUIRE(snap);
  CHECK(snap->state_json == state);  // stored as json: the text as written, escapes and key order kept
  pqxx::nontransaction tx{f.conn};
  auto r = tx.exec_params("SELECT data->>'q', metadata::text FROM outbox WHERE aggregate_id = $1", id);
  REQUIRE(r.size() == 1);
  CHECK(std::string(r[0][0].c_str()) == "\"}{,");
  CHECK(std::string(r[0][1].c_str()) == R"({"aggregate_version": 1})");  // stamped by the writer
}

TEST_CASE("load_snapshot round trip") {
  fixture f;
  CHECK_FALSE(persistence::load_snapshot(f.conn, "cart", "nope").has_value());
  persistence::snapshot_writer w{f.options(), nullptr};
  acks a{1};
  auto pw = make_write("cart", "c9", 7, f.epoch);
  pw.snap.base_version = 0;
  // Not in jsonb's rendering (keys sorted, a space after each colon): the snapshot comes back as the
  // node wrote it (migration 0023).
  const std::string state = R"({"items":[{"sku":"X","qty":2}],"a":1})";
  pw.snap.state_json = state;
  pw.done = a.slot(0);
  REQUIRE(w.enqueue(std::move(pw)) == write_outcome::committed);
  REQUIRE(a.wait(1));
  auto snap = persistence::load_snapshot(f.conn, "cart", "c9");
  REQUIRE(snap);
  CHECK(snap->kind == "cart");
  CHECK(snap->id == "c9");
  CHECK(snap->version == 7);
  CHECK(snap->owner_epoch == f.epoch);
  CHECK(snap->shard == -1);
  CHECK(snap->state_json == state);
  CHECK_FALSE(persistence::load_snapshot(f.conn, "order", "c9").has_value());
}

TEST_CASE("stop drains the queue, then refuses new writes") {
  fixture f;
  auto opts = f.options();
  opts.threads = 2;
  constexpr std::size_t n = 2000;
  acks a{n};
  persistence::snapshot_writer w{opts, nullptr};
  for (std::size_t i = 0; i < n; ++i) {
    auto pw = make_write("cart", "d" + std::to_string(i % 300), static_cast<std::int64_t>(i / 300 + 1), f.epoch);
    pw.done = a.slot(i);
    REQUIRE(w.enqueue(std::move(pw)) == write_outcome::committed);
  }
  w.stop();
  CHECK(a.total() == n);
  CHECK(a.count(write_outcome::committed) == n);
  CHECK(w.queue_depth() == 0);
  bool called = false;
  auto late = make_write("cart", "late", 1, f.epoch);
  late.done = [&called](write_outcome) { called = true; };
  CHECK(w.enqueue(std::move(late)) == write_outcome::overloaded);
  w.stop();  // idempotent
  CHECK_FALSE(called);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM entity_snapshots") == 300);
}

TEST_CASE("the queue limit answers overloaded without blocking") {
  telemetry::metrics m;
  auto opts = unreachable_options(800ms);  // the lane is stuck retrying, so nothing leaves the queue
  opts.threads = 1;
  opts.max_batch = 1;
  opts.queue_limit = 5;
  persistence::snapshot_writer w{opts, &m};
  acks a{20};
  std::size_t accepted = 0;
  std::size_t refused = 0;
  const auto started = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < 20; ++i) {
    auto pw = make_write("cart", "q" + std::to_string(i), 1, 1);
    pw.done = a.slot(i);
    (w.enqueue(std::move(pw)) == write_outcome::committed ? accepted : refused)++;
  }
  CHECK(std::chrono::steady_clock::now() - started < 200ms);
  CHECK(accepted == 5);
  CHECK(refused == 15);
  CHECK(w.queue_depth() == 5);
  CHECK(m.snapshot_overloaded.Value() == 15);
  CHECK(m.snapshot_queue_depth.Value() == 5);
  REQUIRE(a.wait(5, 10s));
  std::this_thread::sleep_for(100ms);
  CHECK(a.total() == 5);  // refused writes never get a callback
  CHECK(a.count(write_outcome::unavailable) == 5);
}

TEST_CASE("PostgreSQL unreachable: writes fail as unavailable after about the commit deadline") {
  telemetry::metrics m;
  auto opts = unreachable_options(300ms);
  opts.threads = 2;
  persistence::snapshot_writer w{opts, &m};
  constexpr std::size_t n = 10;
  acks a{n};
  const auto started = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < n; ++i) {
    auto pw = make_write("cart", "u" + std::to_string(i), 1, 1);
    pw.done = a.slot(i);
    REQUIRE(w.enqueue(std::move(pw)) == write_outcome::committed);
  }
  REQUIRE(a.wait(n, 10s));
  const auto elapsed = std::chrono::steady_clock::now() - started;
  CHECK(a.count(write_outcome::unavailable) == n);
  CHECK(a.each_called_once(n));
  CHECK(elapsed >= 280ms);
  CHECK(elapsed < 1500ms);
  CHECK(w.stats().unavailable == n);
  CHECK(m.snapshot_failed.Value() == n);
}

TEST_CASE("a lost connection is reopened and the batch retried") {
  fixture f;
  persistence::snapshot_writer w{f.options(), nullptr};
  acks a{2};
  auto first = make_write("cart", "r1", 1, f.epoch);
  first.done = a.slot(0);
  REQUIRE(w.enqueue(std::move(first)) == write_outcome::committed);
  REQUIRE(a.wait(1));
  CHECK(a.at(0) == write_outcome::committed);
  // Kill the writer's connections (as a PostgreSQL restart would).
  CHECK(scalar(f.conn, "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()") >= 1);
  auto second = make_write("cart", "r1", 2, f.epoch);
  second.done = a.slot(1);
  REQUIRE(w.enqueue(std::move(second)) == write_outcome::committed);
  REQUIRE(a.wait(2));
  CHECK(a.at(1) == write_outcome::committed);
  CHECK(scalar(f.conn, "SELECT version FROM entity_snapshots WHERE id = 'r1'") == 2);
}

TEST_CASE("a write whose outcome failed takes the writes of its entity queued behind it along") {
  fixture f;
  auto opts = f.options();
  opts.threads = 1;
  opts.max_batch = 4;
  opts.linger = std::chrono::seconds(10);
  persistence::snapshot_writer w{opts, nullptr};
  acks a{4};
  for (std::int64_t v = 1; v <= 3; ++v) {
    auto pw = make_write("cart", "x", v, f.epoch);
    if (v == 2) {
      pw.events[0].id = "not-a-uuid";  // rejected by the outbox: this write fails
    }
    pw.done = a.slot(static_cast<std::size_t>(v - 1));
    REQUIRE(w.enqueue(std::move(pw)) == write_outcome::committed);
  }
  auto y = make_write("cart", "y", 1, f.epoch);
  y.done = a.slot(3);
  REQUIRE(w.enqueue(std::move(y)) == write_outcome::committed);
  REQUIRE(a.wait(4));
  CHECK(a.at(0) == write_outcome::committed);
  CHECK(a.at(1) == write_outcome::failed);
  CHECK(a.at(2) == write_outcome::failed);  // built on version 2: never stored without it
  CHECK(a.at(3) == write_outcome::committed);
  CHECK(scalar(f.conn, "SELECT version FROM entity_snapshots WHERE id = 'x'") == 1);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM outbox WHERE aggregate_id = 'x'") == 1);
  CHECK(w.stats().failed == 2);

  // The entity restarts from version 1: its new writes are not affected.
  acks b{1};
  auto again = make_write("cart", "x", 2, f.epoch);
  again.done = b.slot(0);
  REQUIRE(w.enqueue(std::move(again)) == write_outcome::committed);
  w.stop();
  REQUIRE(b.wait(1, 1s));
  CHECK(b.at(0) == write_outcome::committed);
  CHECK(scalar(f.conn, "SELECT version FROM entity_snapshots WHERE id = 'x'") == 2);
}

// A deferred trigger that kills its own backend inside COMMIT: the first `times` commits that write
// entity_snapshots die there (the transaction is not committed, and the client cannot tell).
void kill_in_commit(pqxx::connection& c, int times) {
  exec(c, R"SQL(
    CREATE SEQUENCE kill_count;
    CREATE FUNCTION kill_in_commit() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF nextval('kill_count') <= )SQL" + std::to_string(times) + R"SQL( THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
        PERFORM pg_sleep(1);
      END IF;
      RETURN NULL;
    END $$;
    CREATE CONSTRAINT TRIGGER kill_in_commit AFTER INSERT OR UPDATE ON entity_snapshots
      DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION kill_in_commit();
  )SQL");
}

TEST_CASE("a connection lost during COMMIT is resolved by write id, never by version and epoch") {
  fixture f;
  // A stale row of an earlier incarnation holds k0 with the very version and epoch the writer is
  // about to write (another write id). An in-doubt COMMIT must not take it for its own.
  exec(f.conn, "INSERT INTO entity_snapshots (kind, id, version, owner_epoch, state, write_id) "
               "VALUES ('cart', 'k0', 1, " + std::to_string(f.epoch) + ", '{}', gen_random_uuid())");
  kill_in_commit(f.conn, 1);
  auto opts = f.options();
  opts.threads = 1;
  opts.max_batch = 3;
  opts.linger = std::chrono::seconds(10);
  persistence::snapshot_writer w{opts, nullptr};
  acks a{3};
  for (std::size_t i = 0; i < 3; ++i) {
    auto pw = make_write("cart", "k" + std::to_string(i), 1, f.epoch);
    pw.done = a.slot(i);
    REQUIRE(w.enqueue(std::move(pw)) == write_outcome::committed);
  }
  REQUIRE(a.wait(3));
  CHECK(a.at(0) == write_outcome::fenced);  // the stored row is not this write: never acknowledged
  CHECK(a.at(1) == write_outcome::committed);
  CHECK(a.at(2) == write_outcome::committed);
  CHECK(scalar(f.conn, "SELECT nextval('kill_count')") > 2);  // the trigger did fire again on the retry
  CHECK(w.stats().stepwise >= 1);  // the retry asked the stored write ids first, stepwise
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM entity_snapshots") == 3);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM outbox") == 2);  // k1 and k2 once each
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM outbox WHERE aggregate_id = 'k0'") == 0);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM entity_snapshots WHERE id = 'k0' AND state::jsonb = '{}'::jsonb") == 1);
}

TEST_CASE("an in-doubt COMMIT that did land is taken as committed by its write id; nothing is doubled") {
  fixture f;
  // Stands in for a COMMIT that went through although the client saw the connection drop: the row
  // and the event of this very write (same write id, same event id) are stored already.
  const std::string write_id = new_uuid();
  auto pw = make_write("cart", "landed", 1, f.epoch);
  pw.snap.write_id = write_id;
  exec(f.conn, "INSERT INTO entity_snapshots (kind, id, version, owner_epoch, state, write_id) VALUES ('cart', "
               "'landed', 1, " + std::to_string(f.epoch) + ", '{\"v\": 1}', '" + write_id + "')");
  exec(f.conn, "INSERT INTO outbox (id, aggregate_kind, aggregate_id, event_type, data, metadata) VALUES ('" +
                   pw.events[0].id + "', 'cart', 'landed', 'TestHappened', '{}', '{}')");
  kill_in_commit(f.conn, 1);
  auto opts = f.options();
  opts.threads = 1;
  opts.max_batch = 2;  // both writes in one batch: the batch closes when it is full
  opts.linger = std::chrono::seconds(10);
  persistence::snapshot_writer w{opts, nullptr};
  acks a{2};
  pw.done = a.slot(0);
  REQUIRE(w.enqueue(std::move(pw)) == write_outcome::committed);
  // A second entity in the same lane makes the first attempt write a row, so the trigger kills it.
  auto other = make_write("cart", "other", 1, f.epoch);
  other.done = a.slot(1);
  REQUIRE(w.enqueue(std::move(other)) == write_outcome::committed);
  REQUIRE(a.wait(2));
  CHECK(a.at(0) == write_outcome::committed);
  CHECK(a.at(1) == write_outcome::committed);
  CHECK(scalar(f.conn, "SELECT nextval('kill_count')") > 1);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM outbox WHERE aggregate_id = 'landed'") == 1);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM outbox WHERE aggregate_id = 'other'") == 1);
}

TEST_CASE("a COMMIT whose outcome cannot be learnt before the deadline is outcome_unknown, not failed") {
  fixture f;
  kill_in_commit(f.conn, 1'000'000);  // every COMMIT dies
  auto opts = f.options();
  opts.threads = 1;
  opts.commit_deadline = 1500ms;
  persistence::snapshot_writer w{opts, nullptr};
  acks a{1};
  auto pw = make_write("cart", "doubt", 1, f.epoch);
  pw.done = a.slot(0);
  REQUIRE(w.enqueue(std::move(pw)) == write_outcome::committed);
  REQUIRE(a.wait(1));
  CHECK(a.at(0) == write_outcome::outcome_unknown);
  CHECK(w.stats().outcome_unknown == 1);
  CHECK(w.stats().unavailable == 0);
}

TEST_CASE("a write stacked on a failed one never lands, even when it reaches the writer after the failure") {
  fixture f;
  auto opts = f.options();
  opts.threads = 1;
  persistence::snapshot_writer w{opts, nullptr};
  acks a{3};
  auto v1 = make_write("cart", "s", 1, f.epoch);
  v1.done = a.slot(0);
  REQUIRE(w.enqueue(std::move(v1)) == write_outcome::committed);
  REQUIRE(a.wait(1));
  auto v2 = make_write("cart", "s", 2, f.epoch);
  v2.events[0].id = "not-a-uuid";  // rejected by the outbox: this write fails
  v2.done = a.slot(1);
  REQUIRE(w.enqueue(std::move(v2)) == write_outcome::committed);
  REQUIRE(a.wait(2));
  REQUIRE(a.at(1) == write_outcome::failed);
  // Built on version 2 by an entity that had not yet heard of the failure: newer than the stored
  // version 1, so a "newer than stored" rule would store it, with v2's change and without v2's events.
  auto v3 = make_write("cart", "s", 3, f.epoch);
  v3.done = a.slot(2);
  REQUIRE(w.enqueue(std::move(v3)) == write_outcome::committed);
  REQUIRE(a.wait(3));
  CHECK(a.at(2) == write_outcome::fenced);
  CHECK(scalar(f.conn, "SELECT version FROM entity_snapshots WHERE id = 's'") == 1);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM outbox WHERE aggregate_id = 's'") == 1);
}

TEST_CASE("a write built on a version is never stored where that version is missing") {
  fixture f;
  persistence::snapshot_writer w{f.options(), nullptr};
  acks a{1};
  auto pw = make_write("cart", "gone", 4, f.epoch);  // base 3, but no row exists
  pw.done = a.slot(0);
  REQUIRE(w.enqueue(std::move(pw)) == write_outcome::committed);
  REQUIRE(a.wait(1));
  CHECK(a.at(0) == write_outcome::fenced);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM entity_snapshots") == 0);
}

TEST_CASE("a missing row met by the one-statement batch rolls it back whole; stepwise, the rest commits") {
  fixture f;
  exec(f.conn, "CREATE TABLE proj_gone (id TEXT PRIMARY KEY, version BIGINT NOT NULL)");
  auto opts = f.options();
  opts.threads = 1;
  opts.max_batch = 2;  // both writes in one batch: it closes when it is full
  opts.linger = std::chrono::seconds(10);
  persistence::snapshot_writer w{opts, nullptr};
  acks a{2};
  auto gone = make_write("cart", "gone", 4, f.epoch);  // base 3, but no row exists
  gone.projections.push_back(proj("proj_gone", "gone", 4));
  gone.done = a.slot(0);
  auto fine = make_write("cart", "fine", 1, f.epoch);
  fine.projections.push_back(proj("proj_gone", "fine", 1));
  fine.done = a.slot(1);
  REQUIRE(w.enqueue(std::move(gone)) == write_outcome::committed);
  REQUIRE(w.enqueue(std::move(fine)) == write_outcome::committed);
  REQUIRE(a.wait(2));
  CHECK(a.at(0) == write_outcome::fenced);
  CHECK(a.at(1) == write_outcome::committed);
  const auto s = w.stats();
  CHECK(s.transactions == 1);
  CHECK(s.stepwise == 1);  // the one statement raised for "gone" and stored nothing; the stepwise run did it
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM entity_snapshots WHERE id = 'gone'") == 0);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM entity_snapshots WHERE id = 'fine'") == 1);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM outbox WHERE aggregate_id = 'gone'") == 0);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM outbox WHERE aggregate_id = 'fine'") == 1);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM proj_gone WHERE id = 'gone'") == 0);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM proj_gone WHERE id = 'fine'") == 1);
}

TEST_CASE("projection rows as data: NULLs, quotes and a newer stored row are handled by the writer") {
  fixture f;
  exec(f.conn, "CREATE TABLE proj_typed (id TEXT PRIMARY KEY, owner UUID, note TEXT, at TIMESTAMPTZ, "
               "version BIGINT NOT NULL)");
  exec(f.conn, "INSERT INTO proj_typed VALUES ('newer', NULL, 'kept', now(), 99)");
  persistence::snapshot_writer w{f.options(), nullptr};
  acks a{2};
  using protocol::column_type;
  for (std::size_t i = 0; i < 2; ++i) {
    const std::string id = i == 0 ? "p" : "newer";
    auto pw = make_write("cart", id, 1, f.epoch);
    pw.projections.push_back({"proj_typed",
                              {{"id", column_type::text, id},
                               {"owner", column_type::uuid, std::nullopt},
                               {"note", column_type::text, std::string("a \"quoted\", {braced} NULL\\")},
                               {"at", column_type::timestamptz, std::string("2026-01-02T03:04:05Z")},
                               {"version", column_type::bigint, std::string("1")}}});
    pw.done = a.slot(i);
    REQUIRE(w.enqueue(std::move(pw)) == write_outcome::committed);
  }
  REQUIRE(a.wait(2));
  CHECK(a.at(0) == write_outcome::committed);
  CHECK(a.at(1) == write_outcome::committed);
  pqxx::nontransaction tx{f.conn};
  auto r = tx.exec("SELECT owner IS NULL, note, extract(epoch from at)::bigint FROM proj_typed WHERE id = 'p'");
  REQUIRE(r.size() == 1);
  CHECK(r[0][0].as<bool>());
  CHECK(std::string(r[0][1].c_str()) == "a \"quoted\", {braced} NULL\\");
  CHECK(r[0][2].as<std::int64_t>() == 1767323045);
  CHECK(std::string(tx.exec("SELECT note FROM proj_typed WHERE id = 'newer'")[0][0].c_str()) == "kept");
}

TEST_CASE("a batch of many entities writes each projection table in one statement; an older row never wins") {
  fixture f;
  // A statement-level trigger logs each INSERT statement run on the projection tables (ON CONFLICT DO UPDATE
  // is still one INSERT statement), so the log counts statements, not rows.
  exec(f.conn, R"SQL(
    CREATE TABLE proj_stock_a (id TEXT PRIMARY KEY, qty BIGINT, version BIGINT NOT NULL);
    CREATE TABLE proj_latest_b (id TEXT PRIMARY KEY, version BIGINT NOT NULL);
    CREATE TABLE stmt_log (tbl TEXT NOT NULL);
    CREATE FUNCTION log_stmt() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO stmt_log VALUES (TG_TABLE_NAME); RETURN NULL; END $$;
    CREATE TRIGGER log_a AFTER INSERT ON proj_stock_a FOR EACH STATEMENT EXECUTE FUNCTION log_stmt();
    CREATE TRIGGER log_b AFTER INSERT ON proj_latest_b FOR EACH STATEMENT EXECUTE FUNCTION log_stmt();
    INSERT INTO proj_stock_a VALUES ('e3', 1000, 99);
    INSERT INTO proj_latest_b VALUES ('e5', 42);
  )SQL");
  exec(f.conn, "TRUNCATE stmt_log");
  auto opts = f.options();
  opts.threads = 1;
  constexpr std::size_t n = 10;
  opts.max_batch = n;
  opts.linger = std::chrono::seconds(10);  // one batch: it closes when full
  acks a{n};
  {
    persistence::snapshot_writer w{opts, nullptr};
    for (std::size_t i = 0; i < n; ++i) {
      const std::string id = "e" + std::to_string(i);
      auto pw = make_write("cart", id, 1, f.epoch);
      pw.projections.push_back(proj("proj_stock_a", id, 2, {{"qty", std::to_string(i)}}));
      pw.projections.push_back(proj("proj_latest_b", id, 2));
      pw.done = a.slot(i);
      REQUIRE(w.enqueue(std::move(pw)) == write_outcome::committed);
    }
    REQUIRE(a.wait(n));
    CHECK(a.count(write_outcome::committed) == n);
    CHECK(w.stats().transactions == 1);
  }
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM stmt_log WHERE tbl = 'proj_stock_a'") == 1);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM stmt_log WHERE tbl = 'proj_latest_b'") == 1);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM stmt_log") == 2);
  // Every entity's rows landed, except where the stored row was newer (e3 in a, e5 in b).
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM proj_stock_a") == static_cast<std::int64_t>(n));
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM proj_stock_a WHERE id <> 'e3' AND version = 2 "
                       "AND qty = substr(id, 2)::bigint") == static_cast<std::int64_t>(n - 1));
  CHECK(scalar(f.conn, "SELECT qty * 1000 + version FROM proj_stock_a WHERE id = 'e3'") == 1000 * 1000 + 99);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM proj_latest_b WHERE version = 2") == static_cast<std::int64_t>(n - 1));
  CHECK(scalar(f.conn, "SELECT version FROM proj_latest_b WHERE id = 'e5'") == 42);
}

TEST_CASE("after a transaction of one write, the next write does not wait out the linger") {
  fixture f;
  auto opts = f.options();
  opts.threads = 1;
  opts.max_batch = 100;
  opts.linger = std::chrono::hours(1);  // a write that waited it out would not commit during the test
  // Declared before the writer, which may still call into them while it stops.
  acks a{2};
  std::mutex m;
  std::condition_variable cv;
  bool holding = false;
  bool release = false;
  persistence::snapshot_writer w{opts, nullptr};

  // The lane is held inside a barrier's callback while a second barrier and one write queue behind
  // it. A barrier at the front closes the batch at once, so that write commits alone.
  w.after_pending("cart", "hold", [&] {
    std::unique_lock<std::mutex> lock{m};
    holding = true;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
  });
  {
    std::unique_lock<std::mutex> lock{m};
    REQUIRE(cv.wait_for(lock, 20s, [&] { return holding; }));
  }
  w.after_pending("cart", "alone", [] {});
  auto alone = make_write("cart", "alone", 1, f.epoch);
  alone.done = a.slot(0);
  REQUIRE(w.enqueue(std::move(alone)) == write_outcome::committed);
  {
    std::lock_guard<std::mutex> lock{m};
    release = true;
  }
  cv.notify_all();
  REQUIRE(a.wait(1));
  CHECK(a.at(0) == write_outcome::committed);
  CHECK(w.stats().transactions == 1);

  // The lane's last transaction found no company, so the next write starts at once instead of
  // waiting the hour for a batch to fill.
  auto next = make_write("cart", "next", 1, f.epoch);
  next.done = a.slot(1);
  REQUIRE(w.enqueue(std::move(next)) == write_outcome::committed);
  REQUIRE(a.wait(2, 60s));
  CHECK(a.at(1) == write_outcome::committed);
  CHECK(w.stats().transactions == 2);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM entity_snapshots WHERE id IN ('alone', 'next')") == 2);
}

TEST_CASE("projection shapes met in either order share one batch statement; a full statement cache starts over") {
  fixture f;
  exec(f.conn, R"SQL(
    CREATE TABLE proj_order_a (id TEXT PRIMARY KEY, version BIGINT NOT NULL);
    CREATE TABLE proj_order_b (id TEXT PRIMARY KEY, version BIGINT NOT NULL);
  )SQL");
  // One lane; a batch closes when it holds two writes, so each pair below is one batch, in that order.
  auto run = [&](std::size_t cache_limit, const std::vector<std::vector<std::pair<std::string, std::string>>>& batches) {
    auto opts = f.options();
    opts.threads = 1;
    opts.max_batch = 2;
    opts.linger = std::chrono::seconds(10);
    opts.statement_cache = cache_limit;
    std::vector<std::uint64_t> prepared;
    persistence::snapshot_writer w{opts, nullptr};
    for (const auto& batch : batches) {
      acks a{batch.size()};
      for (std::size_t i = 0; i < batch.size(); ++i) {
        const auto& [id, table] = batch[i];
        auto pw = make_write("cart", id, 1, f.epoch);
        pw.projections.push_back(proj(table, id, 1));
        pw.done = a.slot(i);
        REQUIRE(w.enqueue(std::move(pw)) == write_outcome::committed);
      }
      REQUIRE(a.wait(batch.size()));
      CHECK(a.count(write_outcome::committed) == batch.size());
      prepared.push_back(w.stats().statements_prepared);
    }
    CHECK(w.stats().stepwise == 0);  // every batch was the one statement
    return prepared;
  };
  // a then b, b then a: the same statement (the shapes go in their own order, not the order met).
  auto shared = run(64, {{{"s1", "proj_order_a"}, {"s2", "proj_order_b"}}, {{"s3", "proj_order_b"}, {"s4", "proj_order_a"}}});
  CHECK(shared == std::vector<std::uint64_t>{1, 1});
  // With room for one statement: a new shape set deallocates the one kept and prepares its own; coming
  // back to the first set prepares it again under the same name, which only works if it was deallocated.
  auto cycled = run(1, {{{"c1", "proj_order_a"}, {"c2", "proj_order_b"}},
                        {{"c3", "proj_order_a"}, {"c4", "proj_order_a"}},
                        {{"c5", "proj_order_b"}, {"c6", "proj_order_a"}}});
  CHECK(cycled == std::vector<std::uint64_t>{1, 2, 3});
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM proj_order_a") == 6);
  CHECK(scalar(f.conn, "SELECT COUNT(*) FROM proj_order_b") == 4);
}
