#pragma once
// The cluster member on a node: one thread (blocking PostgreSQL calls are its whole job) that, every
// heartbeat interval,
//   1. heartbeats its row in cluster_nodes and reads the members (live: heartbeat within the timeout);
//   2. connects to new members' gateways through the CAF middleman (and notices dropped connections);
//   3. renews the leases it holds; a lease it could not renew is lost: its entities are dropped (their
//      parked state too) before anything else happens to the shard;
//   4. hands off the shards that rendezvous hashing now gives to another live node: the front door holds
//      their messages, the entities flush and stop, then the lease is released;
//   5. takes the free leases of the shards that hash to it (each under its next epoch);
//   6. tells each kind's front door where every shard is served (here, at the owner's gateway, or
//      nowhere yet: hold).
// A node serves a shard only while it holds the lease: the front door checks the local deadline the
// coordinator keeps a safety margin short of the lease's expiry, and every snapshot write is fenced by
// the lease's epoch in the database, so a node that was paused past its leases neither serves nor
// stores anything of the shards it lost.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/error.hpp>

#include "cluster/lease_store.hpp"
#include "supervisors/entity_env.hpp"

namespace mercato::cluster {

struct cluster_metrics;

struct coordinator_options {
  std::string dsn;
  std::string node_id;
  std::string host = "127.0.0.1";  // advertised to the other nodes with the gateway's port
  std::uint16_t port = 0;          // the published gateway's port (set by whoever published it)
  int http_port = 0;               // reported in cluster_nodes, for operators
  std::chrono::milliseconds lease_ttl{10'000};
  std::chrono::milliseconds heartbeat{1'000};
  std::chrono::milliseconds node_timeout{5'000};
  // The coordinator registers the node only once this says yes (migrations applied); may be empty.
  std::function<bool()> may_join;
  // TLS between nodes (caf_openssl): all three set, or none. With them, a node accepts and opens only
  // connections whose peer presents a certificate signed by `tls_ca`.
  std::string tls_certificate;  // PEM chain of this node
  std::string tls_key;          // its private key (PEM)
  std::string tls_ca;           // the cluster's CA (PEM)
  bool tls() const { return !tls_certificate.empty(); }
  // This node's published gateway: introduced to the peers this node connects to.
  caf::actor gateway;
};

struct kind_binding {
  std::shared_ptr<supervisors::entity_env> env;
  caf::actor front;
};

// What the coordinator saw in its last round (GET /api/v1/admin/cluster).
struct cluster_view {
  std::string self;
  std::vector<node_record> nodes;
  // Live leases per owner: kind -> shard numbers.
  std::map<std::string, std::map<std::string, std::vector<int>>> shards_by_node;
  int shards_total = 0;                       // kinds x shards
  std::int64_t epoch_max = 0;
};

class coordinator {
 public:
  coordinator(coordinator_options opts, caf::actor_system& sys, std::vector<kind_binding> kinds,
              cluster_metrics* metrics);
  ~coordinator();
  coordinator(const coordinator&) = delete;
  coordinator& operator=(const coordinator&) = delete;

  void start();
  // Joined, and holding every shard placement gives this node.
  bool ready() const { return ready_.load(std::memory_order_acquire); }
  // Blocks until ready() or the timeout; returns ready().
  bool await_ready(std::chrono::milliseconds timeout);
  // A clean stop: the node says it is leaving, hands off every shard (its entities flush and stop,
  // messages wait at the front doors), keeps telling them where the shards went until `deadline`
  // passes or the other nodes took them, then stops the thread. The node's actors keep running.
  void leave(std::chrono::milliseconds deadline);
  // Ends the membership: marks the node down and expires whatever lease it still holds. After the
  // runtime stopped (its writes are drained). Idempotent.
  void finish();

  // The live peers' gateways (for relaying events).
  std::vector<caf::actor> peer_gateways() const;
  // For the gateway's hello hook: a peer (with a smaller id, so it is the one that connects) introduced
  // its gateway. The function may outlive the coordinator (it does nothing then).
  std::function<void(const std::string& node_id, caf::actor gateway)> introductions();
  cluster_view view() const;
  const std::string& incarnation() const { return incarnation_; }

  // Tests: stop heartbeating and renewing (as if cut off from PostgreSQL) while true. The node's
  // leases lapse, it stops serving them, and the others take them over.
  void cut_off(bool on);

 private:
  struct peer {
    std::string host;
    int port = 0;
    caf::actor gateway;
    bool connecting = false;
  };
  struct liveness {
    std::mutex mutex;
    bool on = true;
  };
  using connect_callback = std::function<void(const std::string& id, const std::string& host, int port, caf::actor gw,
                                              caf::error err)>;
  void run();
  void tick();
  std::unique_ptr<pqxx::connection> open_round_connection() const;
  void drop_lapsed();
  bool drop(const shard_key& key, const char* why);
  void renew_held(pqxx::connection& conn);
  void connect_peers(const std::vector<node_record>& nodes);
  void measure_peers();
  static void watch(const std::string& id, const caf::actor& gw);
  void place_all(const std::vector<lease_record>& leases);
  std::map<std::string, std::int64_t> active_entities();
  kind_binding* kind(const std::string& name);

  coordinator_options opts_;
  caf::actor_system& sys_;
  std::vector<kind_binding> kinds_;
  cluster_metrics* metrics_;
  std::string incarnation_;
  std::chrono::milliseconds margin_;

  std::unique_ptr<pqxx::connection> conn_;
  std::map<shard_key, std::int64_t> held_;  // thread-owned
  std::chrono::steady_clock::time_point last_renewal_{};
  struct counts {
    std::mutex mutex;
    std::map<std::string, std::int64_t> by_kind;
  };
  std::shared_ptr<counts> active_counts_ = std::make_shared<counts>();
  bool joined_ = false;
  std::map<std::string, peer> peers_;       // by node id; guarded by mutex_ for readers
  cluster_view view_;                       // guarded by mutex_
  bool handing_off_ = false;                // the round stopped handing off at its budget: more to give
  bool held_empty_and_alone_ = false;       // leaving, nothing held, and no other live node: stop waiting

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;                   // guarded by mutex_
  std::atomic<bool> leaving_{false};
  std::atomic<bool> cut_off_{false};
  std::atomic<bool> ready_{false};
  std::atomic<bool> finished_{false};
  std::shared_ptr<liveness> alive_ = std::make_shared<liveness>();
  std::shared_ptr<connect_callback> connected_;
  std::thread thread_;
};

}  // namespace mercato::cluster
