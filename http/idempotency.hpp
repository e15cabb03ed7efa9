#pragma once
// Idempotency-Key (API.md "Conventions"), one mechanism at the edge for every POST: the first request
// with a key claims (scope, key) in PostgreSQL (`idempotency_keys`) and runs; its answer is stored before
// the client gets it. A repeat with the same key and the same request within 24 h gets that answer
// again with `Idempotent-Replayed: true`; the same key with another request → 422; while the first is
// still running → 409. Stored in PostgreSQL, so it holds across nodes and restarts. An answer of 5xx is
// not kept (the claim is dropped), so a retry runs again: every entity command also carries a command id
// derived from the key, so a change is applied at most once either way.
//
// The scope is the caller: a user id, else a guest cart token's hash, else the client address.
//
// A claim records the node and the process ("boot") that runs it. A request whose node died while it
// ran leaves its claim `running`; the same request (same hash) repeated later takes that claim over when
// it was made by an earlier life of this node, or when it is older than `stale_after` (any node),
// instead of answering 409 until the 24 h expiry. Its answer then comes from the entities, which apply
// every command id once (a checkout drives the same order).
//
// A claim that cannot be dropped or completed when its request ends (PostgreSQL down or stalled just
// then: the 503 the client gets is the same outage) is remembered and dropped by this gate's next
// database round trip, so the client's retry after the outage runs instead of getting 409 until
// `stale_after`.
//
// That drop can come too early: a claim whose COMMIT was held up in the network (the connection cut
// by the io watchdog, the bytes still on their way) commits after the gate has given it up and dropped
// whatever it found. The gate therefore also knows which keys this process is running right now; a
// running claim of this very process that is not among them was abandoned, and the same request takes
// it over at once, as it would one of an earlier life of the node. The same set keeps an owed drop
// away from a key that a request of this process has taken over and is running.

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "http/request.hpp"
#include "persistence/pg_pool.hpp"

namespace mercato::http {

class idempotency_gate {
 public:
  using handler_fn = std::function<void(std::shared_ptr<request_context>, responder)>;

  idempotency_gate(persistence::pg_pool& pool, std::string node_id,
                   std::chrono::seconds stale_after = std::chrono::minutes(10),
                   std::chrono::hours ttl = std::chrono::hours(24));

  // Runs `handle` once for this request's Idempotency-Key (the request must have one).
  void run(std::shared_ptr<request_context> ctx, responder respond, handler_fn handle) const;

  // Claims still to be dropped (see above).
  std::size_t owed_releases() const;

 private:
  struct claim {
    std::string scope;
    std::string key;
    std::string created_at;  // identifies this claim (a later one of the same key is left alone); empty: a
                             // claim whose commit is in doubt, any running claim of this process
  };
  void owe_release(claim c) const;
  // Drops the owed claims on `conn`; on failure they stay owed and the error propagates.
  void pay_releases(pqxx::connection& conn) const;
  // Marks (scope, key) as run by this process from its claim until its answer is stored or dropped.
  // False when it already is (another request with this key is in progress here).
  bool begin_running(const std::string& id) const;
  void end_running(const std::string& id) const;
  static std::string running_key(const std::string& scope, const std::string& key);


  persistence::pg_pool& pool_;
  std::string node_id_;
  std::string boot_id_;  // random per process
  std::chrono::seconds stale_after_;
  std::chrono::hours ttl_;
  mutable std::mutex owed_m_;
  mutable std::vector<claim> owed_;  // bounded: the oldest go first (they expire after stale_after anyway)
  mutable std::mutex running_m_;
  mutable std::unordered_set<std::string> running_;  // running_key(scope, key)
};

}  // namespace mercato::http
