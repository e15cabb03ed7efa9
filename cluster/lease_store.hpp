#pragma once
// The cluster's tables in PostgreSQL: membership (cluster_nodes) and shard ownership (shard_leases).
// Every function blocks on the given connection: call them from the coordinator's thread only.
//
// A lease is (kind, shard) -> (owner_node, epoch, expires_at). Taking a lease bumps its epoch, and
// every snapshot write names the epoch it was built under (persistence/snapshot_writer: the write
// lands only while that epoch's lease is live and held by the writer's node), so a node that lost a
// lease cannot store anything under it any more, even if it does not know yet.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <pqxx/connection>

namespace mercato::cluster {

struct node_record {
  std::string id;
  std::string host;
  int port = 0;       // the node's CAF middleman (cluster transport)
  int http_port = 0;  // its HTTP edge (0: not reported)
  std::string state;  // up | leaving | down (as stored)
  bool live = false;  // up, and heartbeat within the node timeout
  std::int64_t heartbeat_age_ms = 0;
  std::map<std::string, std::int64_t> active_entities;  // per kind, as last reported
  std::string started_at;  // RFC 3339
};

struct lease_record {
  std::string kind;
  int shard = 0;
  std::string owner;
  std::int64_t epoch = 0;
  bool live = false;  // expires_at > now()
};

struct shard_key {
  std::string kind;
  int shard = 0;
  bool operator==(const shard_key& o) const { return shard == o.shard && kind == o.kind; }
  bool operator<(const shard_key& o) const { return kind != o.kind ? kind < o.kind : shard < o.shard; }
};

struct held_lease {
  shard_key key;
  std::int64_t epoch = 0;
};

// Registers (or re-registers, after a restart) this node as up.
void register_node(pqxx::connection& conn, const std::string& id, const std::string& host, int port, int http_port,
                   const std::string& incarnation);
// Heartbeat (state "up", or "leaving" while a node hands its shards off before it stops); false when
// the row now belongs to another incarnation (a second process with this id).
bool heartbeat(pqxx::connection& conn, const std::string& id, const std::string& incarnation,
               const std::map<std::string, std::int64_t>& active_entities, const std::string& state = "up");
// Marks this node down (a clean stop) and ends its leases, so live nodes take its shards at once.
void leave(pqxx::connection& conn, const std::string& id, const std::string& incarnation);
// Every registered node, with `live` computed by the database's clock.
std::vector<node_record> nodes(pqxx::connection& conn, std::chrono::milliseconds node_timeout);
// Every lease row.
std::vector<lease_record> leases(pqxx::connection& conn);
// Takes the leases among `wanted` that are free (expired, released, or already this node's) for `ttl`,
// each under its next epoch. Returns the ones taken.
std::vector<held_lease> acquire(pqxx::connection& conn, const std::string& node, const std::vector<shard_key>& wanted,
                                std::chrono::milliseconds ttl);
// Extends the leases this node still holds under the given epochs; returns the ones renewed (a lease
// missing from the answer expired or was taken over).
std::vector<shard_key> renew(pqxx::connection& conn, const std::string& node, const std::vector<held_lease>& held,
                             std::chrono::milliseconds ttl);
// Ends one lease now (after a hand-off), if this node still holds it under `epoch`.
void release(pqxx::connection& conn, const std::string& node, const held_lease& lease);

}  // namespace mercato::cluster
