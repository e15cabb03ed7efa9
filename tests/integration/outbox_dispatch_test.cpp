// The outbox dispatcher against a real PostgreSQL: every committed event delivered at least once and in
// order per aggregate (also when a lower seq commits after a higher one), resume after kill -9 from the
// durable mark, retention, redelivery after a subscriber throws, one dispatcher per database, and
// connection loss. Every test needs PostgreSQL: scratch_database throws (the test fails) without it.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pqxx/pqxx>

#include "persistence/migrations.hpp"
#include "persistence/outbox_dispatcher.hpp"
#include "support/scratch_database.hpp"
#include "telemetry/metrics.hpp"

extern char** environ;

using namespace mercato;
using persistence::outbox_event;
using namespace std::chrono_literals;

namespace {

using steady = std::chrono::steady_clock;

// Polls `cond` until it holds or `timeout` passes (for conditions only the database can tell).
bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds timeout = 30s) {
  const auto until = steady::now() + timeout;
  while (!cond()) {
    if (steady::now() >= until) {
      return false;
    }
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

std::int64_t scalar(pqxx::connection& c, const std::string& sql) {
  pqxx::nontransaction tx{c};
  return tx.exec(sql)[0][0].as<std::int64_t>();
}

struct inserted {
  std::string id;
  std::int64_t seq = 0;
};

// One outbox row the way the snapshot writer appends it; data carries the aggregate's event number.
inserted insert_event(pqxx::transaction_base& tx, const std::string& kind, const std::string& aggregate, int n,
                      const std::string& type = "TestHappened") {
  const auto r = tx.exec_params1(
      "INSERT INTO outbox (id, aggregate_kind, aggregate_id, event_type, data, metadata) "
      "VALUES (gen_random_uuid(), $1, $2, $3, jsonb_build_object('n', $4::int), '{\"source\": \"test\"}') "
      "RETURNING id::text, seq",
      kind, aggregate, type, n);
  return {r[0].as<std::string>(), r[1].as<std::int64_t>()};
}

int event_number(const outbox_event& e) {
  // data_json is {"n": 12}
  const auto colon = e.data_json.find(':');
  return std::atoi(e.data_json.c_str() + colon + 1);
}

// Collects what a subscriber was given, in delivery order.
class recorder {
 public:
  persistence::outbox_dispatcher::handler fn() {
    return [this](const std::vector<outbox_event>& batch) {
      std::lock_guard<std::mutex> lock{m_};
      for (const auto& e : batch) {
        got_.push_back(e);
        ids_.insert(e.id);
      }
      ++calls_;
      cv_.notify_all();
    };
  }
  bool wait_for_ids(const std::vector<std::string>& ids, std::chrono::milliseconds timeout = 30s) {
    std::unique_lock<std::mutex> lock{m_};
    return cv_.wait_for(lock, timeout, [&] {
      return std::all_of(ids.begin(), ids.end(), [&](const std::string& id) { return ids_.count(id) > 0; });
    });
  }
  bool has(const std::string& id) {
    std::lock_guard<std::mutex> lock{m_};
    return ids_.count(id) > 0;
  }
  std::vector<outbox_event> events() {
    std::lock_guard<std::mutex> lock{m_};
    return got_;
  }
  int calls() {
    std::lock_guard<std::mutex> lock{m_};
    return calls_;
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<outbox_event> got_;
  std::set<std::string> ids_;
  int calls_ = 0;
};

struct fixture {
  test::scratch_database db;
  pqxx::connection conn{db.dsn()};

  explicit fixture(bool migrate = true) {
    if (migrate) {
      persistence::apply_migrations(conn, persistence::bundled_migrations());
    }
  }

  persistence::outbox_dispatcher_options options() const {
    persistence::outbox_dispatcher_options o;
    o.dsn = db.dsn();
    o.poll_interval = 20ms;
    o.lock_retry = 20ms;
    o.retry_backoff = 20ms;
    o.max_retry_backoff = 200ms;
    o.pending_refresh = 20ms;
    return o;
  }

  std::int64_t pending() { return scalar(conn, "SELECT count(*) FROM outbox_undispatched"); }
};

// Per aggregate, the event numbers in delivery order must never skip ahead: each one is either a repeat
// (at least once) or the next one. With `last` given, every aggregate must have reached its last number.
void check_order_per_aggregate(const std::vector<outbox_event>& delivered, const std::map<std::string, int>& last) {
  std::map<std::string, int> highest;
  for (const auto& e : delivered) {
    const int n = event_number(e);
    int& hi = highest[e.aggregate_id];
    CAPTURE(e.aggregate_id);
    CAPTURE(n);
    CHECK(n <= hi + 1);
    hi = std::max(hi, n);
  }
  for (const auto& [aggregate, n] : last) {
    CAPTURE(aggregate);
    CHECK(highest[aggregate] == n);
  }
}

}  // namespace

TEST_CASE("an event whose lower seq commits after a higher one is still delivered; the later one waits for it") {
  fixture f;
  telemetry::metrics m;
  recorder rec;
  persistence::outbox_dispatcher d{f.options(), &m};
  d.subscribe("recorder", rec.fn());
  d.start();

  pqxx::connection c1{f.db.dsn()};
  pqxx::connection c2{f.db.dsn()};
  pqxx::work t1{c1};
  const auto a = insert_event(t1, "cart", "cart-a", 1);  // takes the lower seq (and tx), commits last
  inserted b;
  {
    pqxx::work t2{c2};
    b = insert_event(t2, "cart", "cart-b", 1);
    t2.commit();
  }
  REQUIRE(a.seq < b.seq);
  // b is committed and visible, but t1 is still open with a lower transaction id: delivering b now would
  // move the cursor past a. Two whole rounds that began after b's commit deliver nothing.
  const auto rounds = d.stats().rounds;
  d.notify();
  REQUIRE(eventually([&] {
    d.notify();
    return d.stats().rounds >= rounds + 2;
  }));
  CHECK_FALSE(rec.has(b.id));
  CHECK_FALSE(rec.has(a.id));  // not committed yet: invisible, and not lost for that
  CHECK(f.pending() == 1);     // b, held back
  t1.commit();
  d.notify();
  REQUIRE(rec.wait_for_ids({a.id, b.id}, 10s));

  const auto got = rec.events();
  REQUIRE(got.size() == 2);
  CHECK(got[0].id == a.id);  // in (transaction, seq) order
  CHECK(got[1].id == b.id);
  CHECK(got[0].seq == a.seq);
  CHECK(got[0].aggregate_kind == "cart");
  CHECK(got[0].aggregate_id == "cart-a");
  CHECK(got[0].event_type == "TestHappened");
  CHECK(got[0].event_version == "1");
  CHECK(got[0].data_json == "{\"n\": 1}");
  CHECK(got[0].metadata_json == "{\"source\": \"test\"}");
  CHECK(got[0].occurred_at.size() == 27);  // 2024-05-01T12:00:00.123456Z
  CHECK(got[0].occurred_at.back() == 'Z');
  CHECK(eventually([&] { return f.pending() == 0; }));
  d.stop();
  CHECK(m.outbox_dispatched.Value() == 2);
  CHECK(m.outbox_dispatch_lag_seconds.Collect().histogram.sample_count == 2);
}

TEST_CASE("events go in the numeric order of their transaction ids, one batch after another") {
  fixture f;
  // Ids whose text order differs from their order (10 < 100 < 9 as text), each below every real id.
  std::vector<std::string> ids;
  {
    pqxx::work tx{f.conn};
    for (const char* t : {"100", "10", "9"}) {
      const auto e = insert_event(tx, "cart", std::string("t-") + t, 1);
      tx.exec_params("UPDATE outbox SET tx = $1::xid8 WHERE seq = $2", std::string(t), e.seq);
      ids.push_back(e.id);
    }
    tx.commit();
  }
  recorder rec;
  auto o = f.options();
  o.batch_size = 1;  // the cursor moves between every two
  persistence::outbox_dispatcher d{o, nullptr};
  d.subscribe("recorder", rec.fn());
  d.start();
  REQUIRE(rec.wait_for_ids(ids));
  REQUIRE(eventually([&] { return f.pending() == 0; }));
  d.stop();
  const auto got = rec.events();
  REQUIRE(got.size() == 3);
  CHECK(got[0].id == ids[2]);  // tx 9
  CHECK(got[1].id == ids[1]);  // tx 10
  CHECK(got[2].id == ids[0]);  // tx 100
  CHECK(scalar(f.conn, "SELECT seq FROM outbox_cursor") == got[2].seq);
}

TEST_CASE("events held back by an open transaction go out soon after it ends, without a notify or a poll") {
  fixture f;
  recorder rec;
  auto o = f.options();
  o.poll_interval = 60s;  // only notify() and the held-back retry start a round here
  persistence::outbox_dispatcher d{o, nullptr};
  d.subscribe("recorder", rec.fn());
  d.start();
  pqxx::connection c1{f.db.dsn()};
  pqxx::work t1{c1};
  const auto a = insert_event(t1, "cart", "held-a", 1);
  std::string b;
  {
    pqxx::work tx{f.conn};
    b = insert_event(tx, "cart", "held-b", 1).id;
    tx.commit();
  }
  const auto rounds = d.stats().rounds;
  d.notify();  // the only wake-up: b is held back by t1
  REQUIRE(eventually([&] { return d.stats().rounds >= rounds + 3; }, 10s));
  CHECK_FALSE(rec.has(b));
  t1.commit();  // no notify
  CHECK(rec.wait_for_ids({a.id, b}, 10s));
  d.stop();
}

TEST_CASE("an open transaction that only reads holds nothing back") {
  fixture f;
  recorder rec;
  persistence::outbox_dispatcher d{f.options(), nullptr};
  d.subscribe("recorder", rec.fn());
  d.start();
  pqxx::connection reader{f.db.dsn()};
  pqxx::work open_read{reader};
  open_read.exec("SELECT count(*) FROM outbox");  // a snapshot held, no transaction id
  std::string id;
  {
    pqxx::work tx{f.conn};
    id = insert_event(tx, "cart", "cart-r", 1).id;
    tx.commit();
  }
  d.notify();
  CHECK(rec.wait_for_ids({id}, 10s));
  d.stop();
}

TEST_CASE("delivering never rewrites an event row: the cursor moves, the event stays as written") {
  fixture f;
  recorder rec;
  std::vector<std::string> ids;
  {
    pqxx::work tx{f.conn};
    for (int i = 0; i < 20; ++i) {
      ids.push_back(insert_event(tx, "cart", "cart-w", i + 1).id);
    }
    tx.commit();
  }
  REQUIRE(f.pending() == 20);  // every event of the multi-row transaction is after the cursor
  // The physical position of a row version: an UPDATE (the old dispatch mark) moves it, nothing else does.
  const auto positions = [&] {
    pqxx::nontransaction tx{f.conn};
    std::map<std::string, std::string> at;
    for (const auto& r : tx.exec("SELECT id::text, ctid::text, xmin::text FROM outbox")) {
      at[r[0].c_str()] = std::string(r[1].c_str()) + "/" + r[2].c_str();
    }
    return at;
  };
  const auto before = positions();
  persistence::outbox_dispatcher d{f.options(), nullptr};
  d.subscribe("recorder", rec.fn());
  d.start();
  REQUIRE(rec.wait_for_ids(ids));
  REQUIRE(eventually([&] { return f.pending() == 0; }));
  d.stop();
  CHECK(positions() == before);
}

TEST_CASE("commits that each wake the dispatcher are delivered in rounds at least min_round_interval apart") {
  fixture f;
  telemetry::metrics m;
  auto o = f.options();
  o.min_round_interval = 1000ms;
  o.poll_interval = 60s;  // only notify() starts a round here
  std::mutex mu;
  std::condition_variable cv;
  std::vector<steady::time_point> rounds;  // one per subscriber call (every event matches)
  std::size_t delivered = 0;
  persistence::outbox_dispatcher d{o, &m};
  d.subscribe("timer", [&](const std::vector<outbox_event>& batch) {
    std::lock_guard<std::mutex> lock{mu};
    rounds.push_back(steady::now());
    delivered += batch.size();
    cv.notify_all();
  });
  d.start();
  auto wait_delivered = [&](std::size_t n) {
    std::unique_lock<std::mutex> lock{mu};
    return cv.wait_for(lock, 30s, [&] { return delivered >= n; });
  };

  // A first event starts a round at once; the next 30 are committed one by one, each with its notify(),
  // while the gap after that round runs.
  {
    pqxx::work tx{f.conn};
    insert_event(tx, "cart", "gap-0", 1);
    tx.commit();
  }
  d.notify();
  REQUIRE(wait_delivered(1));
  constexpr int commits = 30;
  for (int i = 1; i <= commits; ++i) {
    pqxx::work tx{f.conn};
    insert_event(tx, "cart", "gap-" + std::to_string(i), 1);
    tx.commit();
    d.notify();
  }
  REQUIRE(wait_delivered(1 + commits));
  CHECK(eventually([&] { return f.pending() == 0; }));  // marked right after the subscriber took them

  std::lock_guard<std::mutex> lock{mu};
  CAPTURE(rounds.size());
  // Thirty wake-ups became a few rounds (at one round per wake-up there would be 31)...
  CHECK(rounds.size() < 10);
  // ...and no round followed the one before it sooner than the interval (a subscriber is called one read
  // after its round started, so the calls are the interval apart give or take that read: half is margin).
  for (std::size_t i = 1; i < rounds.size(); ++i) {
    CAPTURE(i);
    CHECK(rounds[i] - rounds[i - 1] >= 500ms);
  }
}

TEST_CASE("undelivered events deleted by hand are not delivered; later events still flow") {
  fixture f;
  recorder rec;
  {
    pqxx::work tx{f.conn};
    for (int i = 0; i < 3; ++i) {
      insert_event(tx, "cart", "gone", i + 1);
    }
    tx.commit();
  }
  {
    pqxx::work tx{f.conn};
    tx.exec("DELETE FROM outbox WHERE aggregate_id = 'gone'");
    tx.commit();
  }
  REQUIRE(f.pending() == 0);
  auto options = f.options();
  options.batch_size = 2;
  persistence::outbox_dispatcher d{options, nullptr};
  d.subscribe("recorder", rec.fn());
  d.start();
  std::string later;
  {
    pqxx::work tx{f.conn};
    later = insert_event(tx, "cart", "later", 1).id;
    tx.commit();
  }
  d.notify();
  REQUIRE(rec.wait_for_ids({later}));
  CHECK(eventually([&] { return f.pending() == 0; }));
  d.stop();
  CHECK(rec.events().size() == 1);
}

TEST_CASE("a database restored from another cluster's dump: undelivered events are delivered, new ones flow") {
  fixture f;
  // The old cluster's ids were far ahead of this server's counter: its cursor and events carry them.
  std::vector<std::string> delivered_there;
  std::vector<std::string> undelivered;
  {
    pqxx::work tx{f.conn};
    for (int i = 0; i < 3; ++i) {
      delivered_there.push_back(insert_event(tx, "cart", "old", i + 1).id);
    }
    for (int i = 0; i < 2; ++i) {
      undelivered.push_back(insert_event(tx, "cart", "old", i + 4).id);
    }
    tx.exec("UPDATE outbox SET tx = '900000000000'");
    tx.exec_params("UPDATE outbox_cursor SET tx = '900000000000', seq = (SELECT seq FROM outbox WHERE id = $1::uuid)",
                   delivered_there.back());
    tx.commit();
  }
  REQUIRE(f.pending() == 2);
  recorder rec;
  persistence::outbox_dispatcher d{f.options(), nullptr};
  d.subscribe("recorder", rec.fn());
  d.start();
  REQUIRE(rec.wait_for_ids(undelivered));
  std::string fresh;
  {
    pqxx::work tx{f.conn};
    fresh = insert_event(tx, "cart", "new", 1).id;
    tx.commit();
  }
  d.notify();
  REQUIRE(rec.wait_for_ids({fresh}));
  REQUIRE(eventually([&] { return f.pending() == 0; }));
  d.stop();
  for (const auto& id : delivered_there) {
    CHECK_FALSE(rec.has(id));  // behind the old cursor: not delivered again
  }
  CHECK(rec.events().size() == 3);
  CHECK(scalar(f.conn, "SELECT count(*) FROM outbox WHERE tx = '0'") == 5);
}

TEST_CASE("concurrent transactions: every committed event delivered, in order per aggregate") {
  fixture f;
  telemetry::metrics m;
  recorder rec;
  auto opts = f.options();
  opts.batch_size = 37;
  persistence::outbox_dispatcher d{opts, &m};
  d.subscribe("recorder", rec.fn());
  d.start();

  // Each writer owns its aggregates and commits their events one transaction after another, as a
  // snapshot writer lane does; the writers run at once, so seqs and commits interleave across them.
  constexpr int writers = 4;
  constexpr int aggregates_per_writer = 5;
  constexpr int transactions = 120;
  std::mutex ids_mutex;
  std::vector<std::string> ids;
  std::map<std::string, int> last;
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&, w] {
      pqxx::connection c{f.db.dsn()};
      std::mt19937 rng(static_cast<unsigned>(w * 7919 + 1));
      std::map<std::string, int> counter;
      std::vector<std::string> mine;
      for (int t = 0; t < transactions; ++t) {
        pqxx::work tx{c};
        const int touched = 1 + static_cast<int>(rng() % 3);
        for (int k = 0; k < touched; ++k) {
          const std::string aggregate =
              "w" + std::to_string(w) + "-" + std::to_string(rng() % aggregates_per_writer);
          const int events = 1 + static_cast<int>(rng() % 2);
          for (int e = 0; e < events; ++e) {
            mine.push_back(insert_event(tx, "cart", aggregate, ++counter[aggregate]).id);
          }
        }
        if (rng() % 4 == 0) {
          std::this_thread::sleep_for(std::chrono::microseconds(rng() % 2000));  // hold it open a while
        }
        tx.commit();
        if (t % 3 == 0) {
          d.notify();
        }
      }
      std::lock_guard<std::mutex> lock{ids_mutex};
      ids.insert(ids.end(), mine.begin(), mine.end());
      for (const auto& [aggregate, n] : counter) {
        last[aggregate] = n;
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  d.notify();

  REQUIRE(rec.wait_for_ids(ids, 60s));
  CHECK(eventually([&] { return f.pending() == 0; }));
  d.stop();
  const auto got = rec.events();
  check_order_per_aggregate(got, last);
  // Nothing failed, so nothing was delivered twice.
  std::set<std::string> unique;
  for (const auto& e : got) {
    unique.insert(e.id);
  }
  CHECK(unique.size() == ids.size());
  CHECK(got.size() == ids.size());
  CHECK(d.stats().dispatched == ids.size());
  CHECK(d.stats().subscriber_failures == 0);
  CHECK(m.outbox_dispatched.Value() == static_cast<double>(ids.size()));
  CHECK(scalar(f.conn, "SELECT count(*) FROM outbox WHERE seq NOT IN (SELECT seq FROM outbox_undispatched)") ==
        static_cast<std::int64_t>(ids.size()));
}

namespace {

pid_t spawn_child(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) {
    argv.push_back(const_cast<char*>(a.c_str()));
  }
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ);
  REQUIRE_MESSAGE(rc == 0, "posix_spawn " << args[0] << " failed: " << rc);
  return pid;
}

int wait_child(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      return -1;
    }
  }
  return status;
}

struct delivery {
  std::int64_t seq;
  std::string id;
  std::string aggregate;
};

// The complete lines of a child's output file (a line cut by SIGKILL is not a delivery it finished).
std::vector<delivery> read_deliveries(const std::string& path) {
  std::ifstream in(path);
  std::stringstream all;
  all << in.rdbuf();
  const std::string text = all.str();
  std::vector<delivery> out;
  std::size_t start = 0;
  for (;;) {
    const auto end = text.find('\n', start);
    if (end == std::string::npos) {
      break;
    }
    std::istringstream line(text.substr(start, end - start));
    delivery d;
    if (line >> d.seq >> d.id >> d.aggregate) {
      out.push_back(d);
    }
    start = end + 1;
  }
  return out;
}

}  // namespace

TEST_CASE("kill -9 mid-stream: a new dispatcher resumes from the durable mark") {
  fixture f;
  constexpr int aggregates = 10;
  constexpr int per_aggregate = 300;
  std::map<std::string, std::map<std::string, int>> number;  // aggregate -> id -> n
  std::map<std::string, std::string> aggregate_of;
  {
    // 100 transactions of 30 events, each aggregate's events in order.
    int n = 0;
    while (n < per_aggregate) {
      pqxx::work tx{f.conn};
      for (int k = 0; k < 3; ++k) {
        ++n;
        for (int a = 0; a < aggregates; ++a) {
          const std::string aggregate = "cart-" + std::to_string(a);
          const auto e = insert_event(tx, "cart", aggregate, n);
          number[aggregate][e.id] = n;
          aggregate_of[e.id] = aggregate;
        }
      }
      tx.commit();
    }
  }
  const std::size_t total = aggregates * per_aggregate;
  REQUIRE(aggregate_of.size() == total);

  const std::string dir = std::string(MERCATO_BINARY_DIR) + "/tests";
  const std::string file1 = dir + "/outbox_child_" + f.db.name() + "_1.txt";
  const std::string file2 = dir + "/outbox_child_" + f.db.name() + "_2.txt";
  std::remove(file1.c_str());
  std::remove(file2.c_str());

  // Run 1: a slow subscriber (20 events per batch, 10 ms each), killed after 300 deliveries.
  const pid_t first = spawn_child({MERCATO_OUTBOX_CHILD_PATH, f.db.dsn(), file1, "20", "10"});
  const bool reached = eventually([&] { return read_deliveries(file1).size() >= 300; });
  ::kill(first, SIGKILL);
  const int status1 = wait_child(first);
  REQUIRE(reached);
  REQUIRE(WIFSIGNALED(status1));
  CHECK(WTERMSIG(status1) == SIGKILL);

  std::set<std::string> marked;  // dispatched before the kill: no process dispatches now
  {
    pqxx::nontransaction tx{f.conn};
    for (const auto& r : tx.exec("SELECT id::text FROM outbox WHERE seq NOT IN (SELECT seq FROM outbox_undispatched)")) {
      marked.insert(r[0].as<std::string>());
    }
  }
  REQUIRE(marked.size() < total);  // it was killed mid-stream
  const auto run1 = read_deliveries(file1);
  std::set<std::string> run1_ids;
  for (const auto& d : run1) {
    run1_ids.insert(d.id);
  }
  for (const auto& id : marked) {
    CAPTURE(id);
    CHECK(run1_ids.count(id) == 1);  // marked only after the subscriber took it
  }

  // Run 2: takes the lock the killed session held, and finishes.
  const pid_t second = spawn_child({MERCATO_OUTBOX_CHILD_PATH, f.db.dsn(), file2, "50", "0"});
  const bool finished = eventually([&] { return f.pending() == 0; }, 60s);
  ::kill(second, SIGTERM);
  const int status2 = wait_child(second);
  REQUIRE(finished);
  CHECK(WIFEXITED(status2));
  CHECK(WEXITSTATUS(status2) == 0);
  const auto run2 = read_deliveries(file2);

  // Nothing marked before the kill is delivered again; everything is delivered at least once.
  std::set<std::string> all_ids = run1_ids;
  for (const auto& d : run2) {
    CAPTURE(d.id);
    CHECK(marked.count(d.id) == 0);
    all_ids.insert(d.id);
  }
  CHECK(all_ids.size() == total);
  for (const auto& [id, aggregate] : aggregate_of) {
    if (all_ids.count(id) == 0) {
      FAIL_CHECK("never delivered: " << id << " of " << aggregate);
    }
  }

  // Within each run, every aggregate's events arrive in order and without gaps; run 2 starts no later
  // than where run 1 stopped.
  auto per_aggregate_runs = [&](const std::vector<delivery>& run) {
    std::map<std::string, std::vector<int>> seen;
    for (const auto& d : run) {
      REQUIRE(aggregate_of.count(d.id) == 1);
      CHECK(d.aggregate == aggregate_of[d.id]);
      seen[d.aggregate].push_back(number[d.aggregate][d.id]);
    }
    return seen;
  };
  const auto seen1 = per_aggregate_runs(run1);
  const auto seen2 = per_aggregate_runs(run2);
  for (int a = 0; a < aggregates; ++a) {
    const std::string aggregate = "cart-" + std::to_string(a);
    CAPTURE(aggregate);
    int end1 = 0;
    if (auto it = seen1.find(aggregate); it != seen1.end()) {
      for (std::size_t i = 0; i < it->second.size(); ++i) {
        CHECK(it->second[i] == static_cast<int>(i) + 1);
      }
      end1 = static_cast<int>(it->second.size());
    }
    if (auto it = seen2.find(aggregate); it != seen2.end()) {
      const int start2 = it->second.front();
      CHECK(start2 <= end1 + 1);
      for (std::size_t i = 0; i < it->second.size(); ++i) {
        CHECK(it->second[i] == start2 + static_cast<int>(i));
      }
      CHECK(it->second.back() == per_aggregate);
    } else {
      CHECK(end1 == per_aggregate);
    }
  }
  std::remove(file1.c_str());
  std::remove(file2.c_str());
}

TEST_CASE("retention deletes dispatched events older than the retention, never undispatched ones") {
  fixture f;
  auto seed = [&] {
    pqxx::work tx{f.conn};
    for (int i = 0; i < 10; ++i) {
      const auto e = insert_event(tx, "cart", "old", i + 1);
      tx.exec_params("UPDATE outbox SET occurred_at = now() - interval '2 hours' WHERE seq = $1", e.seq);
    }
    for (int i = 0; i < 5; ++i) {
      const auto e = insert_event(tx, "cart", "recent", i + 1);
      tx.exec_params("UPDATE outbox SET occurred_at = now() - interval '10 seconds' WHERE seq = $1", e.seq);
    }
    // Dispatched: the cursor is past the old and the recent ones (one transaction: in seq order).
    tx.exec("UPDATE outbox_cursor SET (tx, seq) = (SELECT tx, max(seq) FROM outbox GROUP BY tx)");
    for (int i = 0; i < 5; ++i) {
      const auto e = insert_event(tx, "cart", "stuck", i + 1);
      tx.exec_params("UPDATE outbox SET occurred_at = now() - interval '2 days' WHERE seq = $1", e.seq);
    }
    tx.commit();
  };
  auto count = [&](const std::string& aggregate) {
    return scalar(f.conn, "SELECT count(*) FROM outbox WHERE aggregate_id = '" + aggregate + "'");
  };
  seed();

  SUBCASE("the sweep itself, in small batches") {
    CHECK(persistence::purge_dispatched_outbox(f.conn, std::chrono::seconds(3600), 3) == 10);
    CHECK(count("old") == 0);
    CHECK(count("recent") == 5);
    CHECK(count("stuck") == 5);
    CHECK(persistence::purge_dispatched_outbox(f.conn, std::chrono::seconds(1), 3) == 5);
    CHECK(count("recent") == 0);
    CHECK(count("stuck") == 5);
    CHECK(f.pending() == 5);
  }

  SUBCASE("the dispatcher sweeps on its interval, also while delivery keeps failing") {
    telemetry::metrics m;
    auto opts = f.options();
    opts.retention = std::chrono::seconds(60);
    opts.retention_interval = std::chrono::seconds(1);
    opts.retention_batch = 3;
    persistence::outbox_dispatcher d{opts, &m};
    // The stuck events stay undispatched: their only subscriber always refuses them.
    d.subscribe("broken", [](const std::vector<outbox_event>&) { throw std::runtime_error("down"); });
    d.start();
    CHECK(eventually([&] { return count("old") == 0; }));
    CHECK(eventually([&] { return d.stats().subscriber_failures >= 2; }));
    d.stop();
    CHECK(count("recent") == 5);
    CHECK(count("stuck") == 5);
    CHECK(f.pending() == 5);
    CHECK(d.stats().retention_deleted == 10);
    CHECK(m.outbox_retention_deleted.Value() == 10);
    CHECK(m.outbox_pending.Value() == 0);  // it no longer holds the lock, so it reports nothing
  }

  SUBCASE("events the dispatcher delivered are gone one retention later") {
    auto opts = f.options();
    opts.retention = std::chrono::seconds(1);
    opts.retention_interval = std::chrono::seconds(1);
    recorder rec;
    persistence::outbox_dispatcher d{opts, nullptr};
    d.subscribe("recorder", rec.fn());
    d.start();
    CHECK(eventually([&] { return scalar(f.conn, "SELECT count(*) FROM outbox") == 0; }));
    d.stop();
    CHECK(rec.events().size() == 5);  // the stuck ones; the others were dispatched before it started
  }
}

TEST_CASE("a subscriber that throws gets the batch again; the batch is marked only after it took it") {
  fixture f;
  telemetry::metrics m;
  std::vector<std::string> ids;
  {
    pqxx::work tx{f.conn};
    for (int i = 0; i < 20; ++i) {
      ids.push_back(insert_event(tx, i % 2 ? "cart" : "order", "agg-" + std::to_string(i % 4), i / 4 + 1).id);
    }
    tx.commit();
  }

  pqxx::connection observer{f.db.dsn()};
  std::mutex mu;
  std::vector<std::vector<std::string>> flaky_calls;
  std::vector<std::int64_t> dispatched_during_call;
  recorder steady_sub;
  recorder orders_only;
  persistence::outbox_dispatcher d{f.options(), &m};
  d.subscribe("steady", steady_sub.fn());
  d.subscribe("flaky", [&](const std::vector<outbox_event>& batch) {
    std::lock_guard<std::mutex> lock{mu};
    std::vector<std::string> got;
    for (const auto& e : batch) {
      got.push_back(e.id);
    }
    flaky_calls.push_back(got);
    dispatched_during_call.push_back(scalar(observer, "SELECT count(*) FROM outbox WHERE seq NOT IN (SELECT seq FROM outbox_undispatched)"));
    if (flaky_calls.size() <= 2) {
      throw std::runtime_error("not yet");
    }
  });
  d.subscribe("orders", orders_only.fn(), persistence::outbox_filter{{"order"}, {}});
  d.start();
  REQUIRE(eventually([&] { return f.pending() == 0; }));
  d.stop();

  std::lock_guard<std::mutex> lock{mu};
  REQUIRE(flaky_calls.size() == 3);
  for (const auto& call : flaky_calls) {
    CHECK(call == ids);  // the whole batch, in seq order, every time
  }
  CHECK(dispatched_during_call == std::vector<std::int64_t>{0, 0, 0});
  // The others took it the first time; a retry does not repeat it to them.
  CHECK(steady_sub.events().size() == ids.size());
  CHECK(steady_sub.calls() == 1);
  const auto orders = orders_only.events();
  CHECK(orders.size() == 10);
  CHECK(std::all_of(orders.begin(), orders.end(), [](const outbox_event& e) { return e.aggregate_kind == "order"; }));
  CHECK(d.stats().subscriber_failures == 2);
  CHECK(m.outbox_subscriber_failures("flaky").Value() == 2);
  CHECK(m.outbox_subscriber_failures("steady").Value() == 0);
  CHECK(d.stats().dispatched == ids.size());
}

TEST_CASE("one dispatcher per database; another takes over when it stops") {
  fixture f;
  recorder rec1;
  recorder rec2;
  persistence::outbox_dispatcher d1{f.options(), nullptr};
  persistence::outbox_dispatcher d2{f.options(), nullptr};
  d1.subscribe("one", rec1.fn());
  d2.subscribe("two", rec2.fn());
  d1.start();
  REQUIRE(eventually([&] { return d1.active(); }));
  d2.start();

  auto insert_some = [&](int from) {
    std::vector<std::string> ids;
    pqxx::work tx{f.conn};
    for (int i = 0; i < 10; ++i) {
      ids.push_back(insert_event(tx, "cart", "c", from + i).id);
    }
    tx.commit();
    return ids;
  };
  const auto first = insert_some(1);
  REQUIRE(rec1.wait_for_ids(first));
  CHECK(rec2.events().empty());
  CHECK_FALSE(d2.active());

  d1.stop();
  REQUIRE(eventually([&] { return d2.active(); }));
  const auto second = insert_some(11);
  REQUIRE(rec2.wait_for_ids(second));
  d2.stop();
  CHECK(rec1.events().size() == 10);  // a clean stop marks what it delivered
  CHECK(rec2.events().size() == 10);
  auto all = rec1.events();
  const auto more = rec2.events();
  all.insert(all.end(), more.begin(), more.end());
  check_order_per_aggregate(all, {{"c", 20}});
}

TEST_CASE("a lost connection is re-opened, the lock taken again, and dispatch goes on") {
  fixture f;
  telemetry::metrics m;
  recorder rec;
  persistence::outbox_dispatcher d{f.options(), &m};
  d.subscribe("recorder", rec.fn());
  d.start();
  REQUIRE(eventually([&] { return d.active(); }));
  CHECK(m.outbox_dispatcher_active.Value() == 1);

  // Kill every other session of the scratch database: the dispatcher's, which holds the lock.
  CHECK(scalar(f.conn, "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()) t") >= 1);
  std::vector<std::string> ids;
  {
    pqxx::work tx{f.conn};
    for (int i = 0; i < 5; ++i) {
      ids.push_back(insert_event(tx, "cart", "c", i + 1).id);
    }
    tx.commit();
  }
  d.notify();
  REQUIRE(rec.wait_for_ids(ids));
  CHECK(d.active());
  d.stop();
  CHECK_FALSE(d.active());
  CHECK(m.outbox_dispatcher_active.Value() == 0);
}

TEST_CASE("a dispatcher started before the schema exists waits for it") {
  fixture f{false};
  recorder rec;
  persistence::outbox_dispatcher d{f.options(), nullptr};
  d.subscribe("recorder", rec.fn());
  d.start();
  persistence::apply_migrations(f.conn, persistence::bundled_migrations());
  std::string id;
  {
    pqxx::work tx{f.conn};
    id = insert_event(tx, "cart", "c", 1).id;
    tx.commit();
  }
  REQUIRE(rec.wait_for_ids({id}));
  d.stop();
}

TEST_CASE("PostgreSQL unreachable: no crash, stop returns; start and stop are idempotent") {
  persistence::outbox_dispatcher_options opts;
  opts.dsn = "postgresql://mercato@127.0.0.1:1/mercato";  // nothing listens on port 1
  opts.retry_backoff = 10ms;
  persistence::outbox_dispatcher d{opts, nullptr};
  d.subscribe("x", [](const std::vector<outbox_event>&) {});
  d.start();
  d.start();
  d.notify();
  CHECK_THROWS_AS(d.subscribe("late", [](const std::vector<outbox_event>&) {}), std::logic_error);
  const auto t0 = steady::now();
  d.stop();
  d.stop();
  CHECK(steady::now() - t0 < 5s);
  CHECK_FALSE(d.active());
  d.start();  // a stopped dispatcher stays stopped
  CHECK_FALSE(d.active());
  d.stop();
}
