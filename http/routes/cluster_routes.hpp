#pragma once
// GET /api/v1/admin/cluster (admin only): the cluster as the answering node saw it in its last
// membership round: nodes, their state, the shards each holds and the entities each has active.

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "http/router.hpp"

namespace mercato::http {

struct cluster_node_status {
  std::string id;
  std::string address;   // host:port of its gateway
  int http_port = 0;
  std::string state;     // up | leaving | down (as registered)
  bool live = false;     // up and heartbeating within the node timeout
  std::int64_t heartbeat_age_ms = 0;
  std::map<std::string, std::int64_t> active_entities;  // per kind, as last reported
  std::map<std::string, std::vector<int>> shards;       // live leases it holds: kind -> shard numbers
  std::string started_at;
};

struct cluster_status {
  std::string self;
  bool ready = false;    // this node holds every shard placed on it
  int shard_count = 0;   // entity kinds x shards per kind
  std::vector<cluster_node_status> nodes;
};

void add_cluster_routes(router& routes, std::function<cluster_status()> status);

}  // namespace mercato::http
