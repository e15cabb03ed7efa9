#include "support/cluster_harness.hpp"

#include <stdexcept>
#include <thread>

#include <pqxx/pqxx>

#include "app/entity_runtime.hpp"
#include "app/node.hpp"
#include "config/settings.hpp"
#include "supervisors/entity_env.hpp"
#include "support/http_client.hpp"
#include "support/node_process.hpp"

namespace mercato::test {

std::string lease_owner(const std::string& dsn, const std::string& kind, const std::string& id) {
  pqxx::connection conn{dsn};
  pqxx::read_transaction tx{conn};
  auto r = tx.exec_params("SELECT owner_node FROM shard_leases WHERE kind = $1 AND shard = $2 AND expires_at > now()",
                          kind, supervisors::shard_of(id, 64));
  return r.empty() ? std::string{} : std::string(r[0][0].c_str());
}

cluster_harness::cluster_harness(cluster_options opts) : opts_(std::move(opts)) {}

cluster_harness::~cluster_harness() {
  // Stop in reverse order; the last node has nobody to hand off to and just stops.
  for (std::size_t i = nodes_.size(); i-- > 0;) {
    if (nodes_[i]) {
      nodes_[i]->stop();
      nodes_[i].reset();
    }
  }
}

std::size_t cluster_harness::add() {
  const std::size_t i = nodes_.size();
  config::settings s;
  s.node_id = opts_.node_prefix + std::to_string(i + 1);
  s.http.port = free_port();
  s.http.shutdown_grace = std::chrono::milliseconds(2000);
  s.postgres.dsn = opts_.dsn;
  s.postgres.pool_size = 2;
  if (!opts_.redis_url.empty()) {
    s.redis.url = opts_.redis_url;
  }
  s.rate_limits.enabled = false;
  s.auth.jwt_secret = test_jwt_secret();
  s.load_demo_catalog = true;
  s.scheduler_threads = 2;
  s.http.worker_threads = 2;
  s.cluster.shards = opts_.shards;
  s.cluster.lease_ttl = opts_.lease_ttl;
  s.cluster.heartbeat = opts_.heartbeat;
  s.cluster.node_timeout = opts_.node_timeout;
  s.cluster.tls_certificate = opts_.tls_certificate;
  s.cluster.tls_key = opts_.tls_key;
  s.cluster.tls_ca = opts_.tls_ca;
  auto n = std::make_unique<app::node>(s);
  n->start();
  ports_.push_back(n->http_port());
  ids_.push_back(s.node_id);
  nodes_.push_back(std::move(n));
  return i;
}

bool cluster_harness::await_settled(std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    bool all_ready = true;
    for (std::size_t i = 0; i < nodes_.size() && all_ready; ++i) {
      if (!nodes_[i]) {
        continue;
      }
      http_client c{ports_[i]};
      all_ready = c.get("/readyz").status == 200;
    }
    if (all_ready) {
      int held = 0;
      for (const auto& [node, n] : shards_by_node()) {
        for (std::size_t i = 0; i < nodes_.size(); ++i) {
          if (nodes_[i] && ids_[i] == node) {
            held += n;
          }
        }
      }
      if (held == shards_total()) {
        return true;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

void cluster_harness::stop(std::size_t i) {
  if (i < nodes_.size() && nodes_[i]) {
    nodes_[i]->stop();
    nodes_[i].reset();
  }
}

void cluster_harness::cut_off(std::size_t i, bool on) {
  if (i >= nodes_.size() || !nodes_[i] || !nodes_[i]->runtime() || !nodes_[i]->runtime()->coordinator()) {
    throw std::logic_error("no such running node");
  }
  nodes_[i]->runtime()->coordinator()->cut_off(on);
}

bool cluster_harness::running(std::size_t i) const { return i < nodes_.size() && nodes_[i] != nullptr; }

std::uint16_t cluster_harness::http_port(std::size_t i) const { return ports_.at(i); }

std::string cluster_harness::node_id(std::size_t i) const { return ids_.at(i); }

std::uint16_t cluster_harness::cluster_port(std::size_t i) const {
  return i < nodes_.size() && nodes_[i] ? nodes_[i]->cluster_port() : 0;
}

std::vector<std::pair<std::string, int>> cluster_harness::shards_by_node() const {
  pqxx::connection conn{opts_.dsn};
  pqxx::read_transaction tx{conn};
  std::vector<std::pair<std::string, int>> out;
  for (const auto& r : tx.exec("SELECT owner_node, count(*) FROM shard_leases WHERE expires_at > now() "
                               "GROUP BY owner_node ORDER BY owner_node")) {
    out.emplace_back(r[0].c_str(), r[1].as<int>());
  }
  return out;
}

int cluster_harness::shards_total() const { return 4 * opts_.shards; }  // cart, inventory, order, payment

}  // namespace mercato::test
