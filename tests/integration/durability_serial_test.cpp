// Nothing acknowledged is lost: across kill -9 of the process that ran the entities, and across a
// PostgreSQL stop/start under load (which is why this file runs alone: *_serial_test).
#include <doctest/doctest.h>

#include <atomic>
#include <csignal>
#include <condition_variable>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pqxx/pqxx>

#include "persistence/migrations.hpp"
#include "support/cart_runtime.hpp"
#include "support/node_process.hpp"
#include "support/scratch_database.hpp"

using namespace mercato;
using namespace mercato::test;
using namespace std::chrono_literals;

namespace {

protocol::cart_open plain_open() {
  protocol::cart_open c;
  c.owner_user_id = test_owner;
  c.meta.user_id = test_owner;
  return c;
}

// Without request ids, unlike support's add_cmd: many commands here reuse a product.
protocol::cart_add_item plain_add(int n) {
  protocol::cart_add_item c;
  c.line = demo_line(n % 50, 1);
  c.meta.user_id = test_owner;
  return c;
}

// Stored version and the total quantity in the stored state of each cart.
std::map<std::string, std::pair<std::int64_t, std::int64_t>> stored(const std::string& dsn) {
  std::map<std::string, std::pair<std::int64_t, std::int64_t>> out;
  pqxx::connection conn{dsn};
  pqxx::nontransaction tx{conn};
  for (const auto& r : tx.exec(
           "SELECT id, version, (SELECT COALESCE(SUM((i->>'quantity')::bigint), 0) "
           "FROM json_array_elements(state->'items') i) FROM entity_snapshots WHERE kind = 'cart'")) {
    out[r[0].as<std::string>()] = {r[1].as<std::int64_t>(), r[2].as<std::int64_t>()};
  }
  return out;
}

int services(const std::string& verb) {
  const char* profile = std::getenv("MERCATO_TEST_PROFILE");
  return run_command(services_script() + " " + verb + " --profile " + (profile ? profile : "test") + " >&2");
}

}  // namespace

TEST_CASE("acknowledged commands survive kill -9 of the node") {
  scratch_database db;
  {
    pqxx::connection conn{db.dsn()};
    persistence::apply_migrations(conn, persistence::bundled_migrations());
  }
  constexpr int carts = 4;
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // The "node": it reports every acknowledged version, then keeps going until it is killed.
    ::close(fds[0]);
    cart_runtime rt{{db.dsn()}};
    std::vector<std::thread> senders;
    for (int c = 0; c < carts; ++c) {
      senders.emplace_back([&, c] {
        const std::string id = "cart-k" + std::to_string(c);
        if (!rt.ask(id, plain_open())) {
          return;
        }
        for (int i = 0; i < 100'000; ++i) {
          if (auto r = rt.ask(id, plain_add(i))) {
            const std::string line = id + " " + std::to_string(r->version) + "\n";
            if (::write(fds[1], line.data(), line.size()) < 0) {
              return;
            }
          }
        }
      });
    }
    for (auto& t : senders) {
      t.join();
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  std::map<std::string, std::int64_t> acked;
  std::string pending;
  int lines = 0;
  char buf[4096];
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (lines < 400 && std::chrono::steady_clock::now() < deadline) {
    const auto n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) {
      break;
    }
    pending.append(buf, static_cast<std::size_t>(n));
    std::size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      std::istringstream line{pending.substr(0, nl)};
      pending.erase(0, nl + 1);
      std::string id;
      std::int64_t v = 0;
      line >> id >> v;
      acked[id] = std::max(acked[id], v);
      ++lines;
    }
  }
  REQUIRE(::kill(child, SIGKILL) == 0);
  int status = 0;
  ::waitpid(child, &status, 0);
  CHECK(WIFSIGNALED(status));
  // Acknowledgements written just before the kill are still in the pipe.
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) {
    pending.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  std::istringstream rest{pending};
  std::string id;
  std::int64_t v = 0;
  while (rest >> id >> v) {
    acked[id] = std::max(acked[id], v);
  }
  REQUIRE(lines >= 400);
  REQUIRE(acked.size() == carts);

  auto after = stored(db.dsn());
  for (const auto& [cart, version] : acked) {
    CAPTURE(cart);
    REQUIRE(after.count(cart) == 1);
    CHECK(after[cart].first >= version);
    // Every stored version is exactly one applied command: open + (version - 1) single-unit adds.
    CHECK(after[cart].second == after[cart].first - 1);
  }
  // A new node reads the same state back.
  cart_runtime rt{{db.dsn()}};
  for (const auto& [cart, version] : acked) {
    auto got = rt.ask(cart, get_cmd());
    REQUIRE(got);
    CHECK(got->version >= version);
  }
}

TEST_CASE("PostgreSQL stopped and started under load: commands succeed again after; nothing lost or doubled") {
  scratch_database db;
  {
    pqxx::connection conn{db.dsn()};
    persistence::apply_migrations(conn, persistence::bundled_migrations());
  }
  constexpr int carts = 4;
  cart_runtime_options opts{db.dsn()};
  opts.commit_deadline = 2s;
  std::map<std::string, std::int64_t> acked_adds;
  std::map<std::string, std::int64_t> max_version;
  std::map<std::string, std::int64_t> acked_after_restart;  // acknowledged once PostgreSQL was back
  std::atomic<int> failures{0};
  std::atomic<bool> restarted{false};
  std::mutex m;
  std::condition_variable progress;
  // Waits (bounded) until every cart's count in `counts` reaches `n`.
  auto wait_each = [&](const std::map<std::string, std::int64_t>& counts, std::int64_t n, std::chrono::seconds limit) {
    std::unique_lock<std::mutex> lock{m};
    return progress.wait_for(lock, limit, [&] {
      if (counts.size() < static_cast<std::size_t>(carts)) {
        return false;
      }
      for (const auto& [id, c] : counts) {
        if (c < n) {
          return false;
        }
      }
      return true;
    });
  };
  bool recovered = false;
  {
    cart_runtime rt{opts};
    for (int c = 0; c < carts; ++c) {
      REQUIRE(rt.ask("cart-o" + std::to_string(c), plain_open()));
    }
    std::atomic<bool> stop{false};
    std::vector<std::thread> senders;
    for (int c = 0; c < carts; ++c) {
      senders.emplace_back([&, c] {
        const std::string id = "cart-o" + std::to_string(c);
        for (int i = 0; !stop.load(); ++i) {
          auto r = rt.ask(id, plain_add(i), 10s);
          {
            std::lock_guard<std::mutex> lock{m};
            if (r) {
              ++acked_adds[id];
              max_version[id] = std::max(max_version[id], r->version);
              if (restarted.load()) {
                ++acked_after_restart[id];
              }
            } else {
              ++failures;
            }
          }
          progress.notify_all();
          if (!r) {
            std::this_thread::sleep_for(20ms);  // a client's pause before retrying
          }
        }
      });
    }
    // Load is flowing on every cart before the outage.
    CHECK(wait_each(acked_adds, 20, 30s));
    REQUIRE(services("pg-stop") == 0);
    // The outage is noticed: commands fail cleanly (not hang) while PostgreSQL is down.
    {
      const int before = failures.load();
      std::unique_lock<std::mutex> lock{m};
      CHECK(progress.wait_for(lock, 30s, [&] { return failures.load() >= before + carts; }));
    }
    const int start_rc = services("pg-start");
    REQUIRE(start_rc == 0);
    restarted = true;
    // Commands succeed again on every cart: a writer or an activation that never reconnects fails here.
    recovered = wait_each(acked_after_restart, 10, 60s);
    stop = true;
    for (auto& t : senders) {
      t.join();
    }
  }
  services("pg-start");  // in case a check above bailed out early
  CHECK_MESSAGE(recovered, "commands did not succeed again on every cart after PostgreSQL returned");
  CHECK(failures.load() > 0);
  auto after = stored(db.dsn());
  for (const auto& [cart, count] : acked_adds) {
    CAPTURE(cart);
    CHECK(count > 0);
    CHECK(acked_after_restart[cart] >= 10);
    REQUIRE(after.count(cart) == 1);
    // Stored state is consistent (each version applied once) and holds every acknowledged add.
    CHECK(after[cart].second == after[cart].first - 1);
    CHECK(after[cart].first >= max_version[cart]);
    CHECK(after[cart].second >= count);
  }
}
