#pragma once
// The entity runtime (app::entity_runtime, as the node builds it) on a real PostgreSQL database,
// in-process, with its own pool and leases. Tests talk to the cart router through `ask`.

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <vector>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <caf/all.hpp>

#include "actors/protocol/cart_messages.hpp"
#include "actors/protocol/errors.hpp"
#include "app/entity_runtime.hpp"
#include "persistence/outbox_dispatcher.hpp"
#include "persistence/pg_pool.hpp"
#include "support/scratch_database.hpp"
#include "persistence/snapshot_writer.hpp"
#include "supervisors/entity_env.hpp"
#include "telemetry/metrics.hpp"

namespace mercato::test {

// Answers to commands sent in one go (see cart_runtime::send_all), with the time each arrived.
class reply_log {
 public:
  explicit reply_log(std::size_t n) : results_(n, caf::make_error(protocol::errc::timeout)), at_(n), done_(n, false) {}
  void set(std::size_t i, caf::expected<protocol::cart_view> r);
  bool wait(std::size_t i, std::chrono::milliseconds timeout);  // true once answer i is there
  bool wait_all(std::chrono::milliseconds timeout);
  bool done(std::size_t i);
  caf::expected<protocol::cart_view> result(std::size_t i);
  std::chrono::steady_clock::time_point at(std::size_t i);

 private:
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<caf::expected<protocol::cart_view>> results_;
  std::vector<std::chrono::steady_clock::time_point> at_;
  std::vector<bool> done_;
};

struct cart_runtime_options {
  std::string dsn;
  std::string node_id = "test-node";
  supervisors::runtime_limits limits{};
  int hosts = 2;
  std::size_t writer_queue_limit = 100'000;
  std::chrono::milliseconds commit_deadline{5'000};
  // Receives the committed domain events (the runtime's outbox dispatcher delivers them).
  persistence::outbox_dispatcher::handler on_events = nullptr;
};

class cart_runtime {
 public:
  explicit cart_runtime(cart_runtime_options opts);
  ~cart_runtime();

  // Sends `cmd` to cart `id` and waits for the answer (or the error).
  template <class Command>
  caf::expected<protocol::cart_view> ask(const std::string& id, Command cmd,
                                         std::chrono::milliseconds timeout = std::chrono::seconds(15)) {
    return ask_message(id, caf::make_message(std::move(cmd)), timeout);
  }
  caf::expected<protocol::cart_view> ask_message(const std::string& id, caf::message cmd,
                                                 std::chrono::milliseconds timeout);
  // Sends every command to cart `id` at once, in this order (one sender: they reach the entity in
  // order), without waiting; the answers arrive in the log.
  std::shared_ptr<reply_log> send_all(const std::string& id, std::vector<caf::message> cmds,
                                      std::chrono::milliseconds timeout = std::chrono::seconds(15));

  // Asks every host to passivate entities idle at least `idle_for`; returns how many were asked.
  std::uint64_t passivate_idle(std::chrono::milliseconds idle_for = std::chrono::milliseconds(0));
  // (active, waiting) over all hosts.
  std::pair<std::uint64_t, std::uint64_t> stats();

  caf::actor_system& system() { return runtime_->system(); }
  caf::actor router() const { return router_; }
  // The front door of another kind of the same runtime ("inventory").
  caf::actor router_of(std::string_view kind) const { return runtime_->router(kind); }
  telemetry::metrics& metrics() { return metrics_; }
  app::entity_runtime& runtime() { return *runtime_; }
  persistence::snapshot_writer& writer() { return runtime_->writer(); }
  std::int64_t epoch() const { return runtime_->env("cart").epoch_of(0); }  // shard 0's lease
  // Stops the runtime as the node does (answers what is pending with shutting_down); idempotent.
  void stop();
  double counter(const std::string& family) const;  // sum of a counter family for kind=cart

 private:
  cart_runtime_options opts_;
  telemetry::metrics metrics_;
  std::unique_ptr<persistence::pg_pool> pool_;
  std::unique_ptr<app::entity_runtime> runtime_;
  caf::actor router_;
};

// A cart line for product `n`.
protocol::cart_line demo_line(int n, std::int32_t quantity = 1);
std::string error_code(const caf::error& e);  // "overloaded", "not_found", ... or CAF's rendering

// Commands as the cart tests send them; each carries a command id of its own (a retry of one command
// is the same object sent again).
protocol::cart_open open_cmd(std::string owner = "7f1a2b3c-0000-4000-8000-000000000001");
protocol::cart_add_item add_cmd(int n, std::int32_t qty = 1);
std::string fresh_command_id();
// The owner every support command speaks for (open_cmd's default owner).
inline const char* const test_owner = "7f1a2b3c-0000-4000-8000-000000000001";
protocol::cart_get get_cmd(std::string user = test_owner);

// A migrated scratch database and reads of what the entities stored there.
struct cart_db_fixture {
  cart_db_fixture();
  std::int64_t stored_version(const std::string& id);  // 0 when there is no snapshot
  int count(const std::string& sql);                   // the first column of the first row
  scratch_database db;
};

}  // namespace mercato::test
