// The outbox dispatcher's bounded retries against a real PostgreSQL: a subscriber that keeps throwing is
// retried `max_attempts` times with backoff, then the events it could not take are parked for it
// (outbox_parked, with the last error and a copy of the event) and the batch is marked for the others, so one
// broken subscriber never stops the rest; a subscriber that recovers within its attempts parks nothing.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <pqxx/pqxx>

#include "persistence/migrations.hpp"
#include "persistence/outbox_dispatcher.hpp"
#include "support/scratch_database.hpp"
#include "telemetry/metrics.hpp"

using namespace mercato;
using persistence::outbox_event;
using namespace std::chrono_literals;

namespace {

using steady = std::chrono::steady_clock;

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

std::vector<std::string> insert_events(pqxx::connection& c, int n, const std::string& kind = "order") {
  std::vector<std::string> ids;
  pqxx::work tx{c};
  for (int i = 0; i < n; ++i) {
    ids.push_back(tx.exec_params1("INSERT INTO outbox (id, aggregate_kind, aggregate_id, event_type, data, metadata) "
                                  "VALUES (gen_random_uuid(), $1, $2, 'TestHappened', jsonb_build_object('n', $3::int), "
                                  "'{\"source\": \"test\"}') RETURNING id::text",
                                  kind, "agg-" + std::to_string(i % 3), i + 1)[0]
                      .as<std::string>());
  }
  tx.commit();
  return ids;
}

class recorder {
 public:
  persistence::outbox_dispatcher::handler fn() {
    return [this](const std::vector<outbox_event>& batch) {
      std::lock_guard<std::mutex> lock{m_};
      for (const auto& e : batch) {
        ids_.push_back(e.id);
      }
      ++calls_;
    };
  }
  std::vector<std::string> ids() {
    std::lock_guard<std::mutex> lock{m_};
    return ids_;
  }
  int calls() {
    std::lock_guard<std::mutex> lock{m_};
    return calls_;
  }

 private:
  std::mutex m_;
  std::vector<std::string> ids_;
  int calls_ = 0;
};

struct fixture {
  test::scratch_database db;
  pqxx::connection conn{db.dsn()};

  fixture() { persistence::apply_migrations(conn, persistence::bundled_migrations()); }

  persistence::outbox_dispatcher_options options(int max_attempts) const {
    persistence::outbox_dispatcher_options o;
    o.dsn = db.dsn();
    o.poll_interval = 20ms;
    o.lock_retry = 20ms;
    o.retry_backoff = 20ms;
    o.max_retry_backoff = 200ms;
    o.pending_refresh = 20ms;
    o.max_attempts = max_attempts;
    return o;
  }

  std::int64_t pending() { return scalar(conn, "SELECT count(*) FROM outbox_undispatched"); }
};

}  // namespace

TEST_CASE("a subscriber that always throws does not block another; its events end parked with the error") {
  fixture f;
  telemetry::metrics m;
  const auto first = insert_events(f.conn, 10);

  std::mutex mu;
  std::vector<std::vector<std::string>> broken_calls;
  recorder healthy;
  persistence::outbox_dispatcher d{f.options(3), &m};
  d.subscribe("broken", [&](const std::vector<outbox_event>& batch) {
    std::lock_guard<std::mutex> lock{mu};
    std::vector<std::string> got;
    for (const auto& e : batch) {
      got.push_back(e.id);
    }
    broken_calls.push_back(got);
    throw std::runtime_error("smtp relay refused the connection");
  });
  d.subscribe("healthy", healthy.fn());
  d.start();

  // The batch is marked although "broken" never took it.
  REQUIRE(eventually([&] { return f.pending() == 0; }));
  CHECK(healthy.ids() == first);
  CHECK(healthy.calls() == 1);  // its retries did not repeat the batch to the others
  {
    std::lock_guard<std::mutex> lock{mu};
    REQUIRE(broken_calls.size() == 3);  // max_attempts calls, then parked
    for (const auto& call : broken_calls) {
      CHECK(call == first);
    }
  }
  {
    pqxx::nontransaction tx{f.conn};
    const auto rows = tx.exec(
        "SELECT p.event_id::text, p.attempts, p.last_error, p.event_type, p.aggregate_kind, p.data = o.data::jsonb, "
        "       p.seq = o.seq "
        "FROM outbox_parked p JOIN outbox o ON o.id = p.event_id WHERE p.subscriber = 'broken' ORDER BY p.seq");
    REQUIRE(rows.size() == first.size());
    for (std::size_t i = 0; i < rows.size(); ++i) {
      CAPTURE(i);
      CHECK(rows[i][0].as<std::string>() == first[i]);
      CHECK(rows[i][1].as<int>() == 3);
      CHECK(rows[i][2].as<std::string>() == "smtp relay refused the connection");
      CHECK(rows[i][3].as<std::string>() == "TestHappened");
      CHECK(rows[i][4].as<std::string>() == "order");
      CHECK(rows[i][5].as<bool>());  // the event is copied: it outlives the outbox's retention
      CHECK(rows[i][6].as<bool>());
    }
  }
  CHECK(scalar(f.conn, "SELECT count(*) FROM outbox_parked WHERE subscriber <> 'broken'") == 0);
  CHECK(m.outbox_parked("broken").Value() == 10);
  CHECK(m.outbox_parked("healthy").Value() == 0);
  CHECK(m.outbox_subscriber_failures("broken").Value() == 3);
  CHECK(d.stats().parked == 10);
  // Counted once the batch's queue rows are deleted, so just after pending() reads 0 it may still be 0.
  CHECK(eventually([&] { return d.stats().dispatched == 10; }));

  // The next events: the healthy subscriber gets them too, the broken one is tried again and parks them.
  const auto second = insert_events(f.conn, 4);
  d.notify();
  REQUIRE(eventually([&] { return f.pending() == 0 && healthy.ids().size() == 14; }));
  d.stop();
  auto all = first;
  all.insert(all.end(), second.begin(), second.end());
  CHECK(healthy.ids() == all);
  CHECK(scalar(f.conn, "SELECT count(*) FROM outbox_parked WHERE subscriber = 'broken'") == 14);
  CHECK(m.outbox_parked("broken").Value() == 14);
  std::lock_guard<std::mutex> lock{mu};
  CHECK(broken_calls.size() == 6);
}

TEST_CASE("a subscriber that recovers within max_attempts parks nothing and gets every event") {
  fixture f;
  telemetry::metrics m;
  const auto ids = insert_events(f.conn, 6);
  int calls = 0;
  std::mutex mu;
  recorder flaky_took;
  auto record = flaky_took.fn();
  persistence::outbox_dispatcher d{f.options(3), &m};
  d.subscribe("flaky", [&](const std::vector<outbox_event>& batch) {
    {
      std::lock_guard<std::mutex> lock{mu};
      if (++calls < 3) {
        throw std::runtime_error("not yet");
      }
    }
    record(batch);
  });
  d.start();
  REQUIRE(eventually([&] { return f.pending() == 0; }));
  d.stop();
  CHECK(flaky_took.ids() == ids);
  CHECK(calls == 3);
  CHECK(scalar(f.conn, "SELECT count(*) FROM outbox_parked") == 0);
  CHECK(m.outbox_parked("flaky").Value() == 0);
  CHECK(d.stats().parked == 0);
  CHECK(m.outbox_subscriber_failures("flaky").Value() == 2);
}

TEST_CASE("only the events a subscriber was given are parked for it; max_attempts 0 never parks") {
  fixture f;
  const auto orders = insert_events(f.conn, 3, "order");
  const auto carts = insert_events(f.conn, 2, "cart");
  REQUIRE(carts.size() == 2);

  SUBCASE("a filtered subscriber parks its own events only") {
    recorder all;
    persistence::outbox_dispatcher d{f.options(1), nullptr};
    d.subscribe("orders-broken", [](const std::vector<outbox_event>&) { throw std::logic_error("bug"); },
                persistence::outbox_filter{{"order"}, {}});
    d.subscribe("all", all.fn());
    d.start();
    REQUIRE(eventually([&] { return f.pending() == 0; }));
    d.stop();
    CHECK(all.ids().size() == 5);
    pqxx::nontransaction tx{f.conn};
    std::set<std::string> parked;
    for (const auto& r : tx.exec("SELECT event_id::text, attempts, last_error FROM outbox_parked")) {
      parked.insert(r[0].as<std::string>());
      CHECK(r[1].as<int>() == 1);
      CHECK(r[2].as<std::string>() == "bug");
    }
    CHECK(parked == std::set<std::string>(orders.begin(), orders.end()));
  }

  SUBCASE("a name that outbox_parked cannot hold is refused at subscribe") {
    persistence::outbox_dispatcher d{f.options(1), nullptr};
    CHECK_THROWS_AS(d.subscribe(std::string(101, 'x'), [](const std::vector<outbox_event>&) {}),
                    std::invalid_argument);
    CHECK_THROWS_AS(d.subscribe("", [](const std::vector<outbox_event>&) {}), std::invalid_argument);
    d.subscribe(std::string(100, 'x'), [](const std::vector<outbox_event>&) {});
  }

  SUBCASE("without a bound the batch waits for the subscriber and nothing is parked") {
    std::atomic<int> calls{0};
    persistence::outbox_dispatcher d{f.options(0), nullptr};
    d.subscribe("broken", [&](const std::vector<outbox_event>&) {
      ++calls;
      throw std::runtime_error("down");
    });
    d.start();
    REQUIRE(eventually([&] { return calls.load() >= 6; }));
    d.stop();
    CHECK(f.pending() == 5);
    CHECK(scalar(f.conn, "SELECT count(*) FROM outbox_parked") == 0);
    CHECK(d.stats().parked == 0);
  }
}
