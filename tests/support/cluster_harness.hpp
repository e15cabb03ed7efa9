#pragma once
// A whole cluster in one process for tests: N nodes (app::node, each with its own actor system, CAF
// middleman, gateway port and HTTP port on loopback) against one PostgreSQL and one Redis. Nodes can be
// added, stopped cleanly, and cut off (no heartbeats, no lease renewals: as if the network to
// PostgreSQL were gone), so the others take their shards over.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mercato::app {
class node;
}

namespace mercato::test {

// The node holding the live lease of the shard of entity `id` of `kind` (64 shards), straight from
// PostgreSQL; "" when nobody holds it.
std::string lease_owner(const std::string& dsn, const std::string& kind, const std::string& id);

struct cluster_options {
  std::string dsn;
  std::string redis_url;                              // empty: no Redis
  std::chrono::milliseconds lease_ttl{3000};
  std::chrono::milliseconds heartbeat{200};
  std::chrono::milliseconds node_timeout{1000};
  int shards = 64;
  std::string node_prefix = "n";
  // TLS between the nodes (all three PEM files, or none).
  std::string tls_certificate;
  std::string tls_key;
  std::string tls_ca;
};

class cluster_harness {
 public:
  explicit cluster_harness(cluster_options opts);
  ~cluster_harness();
  cluster_harness(const cluster_harness&) = delete;
  cluster_harness& operator=(const cluster_harness&) = delete;

  // Starts one more node ("n1", "n2", ...); returns its index. Does not wait for its shards.
  std::size_t add();
  // Waits until every running node holds every shard placed on it (readyz 200 everywhere) and the
  // running nodes together hold every shard.
  bool await_settled(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  void stop(std::size_t i);                 // a clean stop: its shards are handed to the others
  void cut_off(std::size_t i, bool on);     // stop/resume heartbeats and lease renewals
  bool running(std::size_t i) const;
  std::uint16_t http_port(std::size_t i) const;
  std::uint16_t cluster_port(std::size_t i) const;  // its gateway (0 when stopped)
  std::string node_id(std::size_t i) const;
  std::size_t size() const { return nodes_.size(); }
  // Live leases per node id, straight from PostgreSQL.
  std::vector<std::pair<std::string, int>> shards_by_node() const;
  int shards_total() const;

 private:
  cluster_options opts_;
  std::vector<std::unique_ptr<app::node>> nodes_;
  std::vector<std::string> ids_;
  std::vector<std::uint16_t> ports_;
};

}  // namespace mercato::test
