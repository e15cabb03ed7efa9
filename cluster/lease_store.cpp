#include "cluster/lease_store.hpp"

#include <pqxx/pqxx>

namespace mercato::cluster {
namespace {

// Kinds are the runtime's own names (cart, order, ...); quoted anyway.
std::string text_array(const std::vector<std::string>& items) {
  std::string out = "{";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) {
      out += ',';
    }
    out += '"';
    for (char c : items[i]) {
      if (c == '"' || c == '\\') {
        out += '\\';
      }
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

template <class T>
std::string number_array(const std::vector<T>& items) {
  std::string out = "{";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) {
      out += ',';
    }
    out += std::to_string(items[i]);
  }
  out += '}';
  return out;
}

struct key_arrays {
  std::vector<std::string> kinds;
  std::vector<int> shards;
};

}  // namespace

void register_node(pqxx::connection& conn, const std::string& id, const std::string& host, int port, int http_port,
                   const std::string& incarnation) {
  pqxx::work tx{conn};
  tx.exec_params(
      "INSERT INTO cluster_nodes (id, host, port, http_port, incarnation, state) VALUES ($1, $2, $3, $4, $5, 'up') "
      "ON CONFLICT (id) DO UPDATE SET host = EXCLUDED.host, port = EXCLUDED.port, http_port = EXCLUDED.http_port, "
      "  incarnation = EXCLUDED.incarnation, state = 'up', started_at = now(), heartbeat_at = now(), "
      "  active_entities = '{}'",
      id, host, port, http_port, incarnation);
  tx.commit();
}

bool heartbeat(pqxx::connection& conn, const std::string& id, const std::string& incarnation,
               const std::map<std::string, std::int64_t>& active_entities, const std::string& state) {
  std::vector<std::string> kinds;
  std::vector<std::int64_t> counts;
  for (const auto& [k, n] : active_entities) {
    kinds.push_back(k);
    counts.push_back(n);
  }
  pqxx::work tx{conn};
  auto r = tx.exec_params(
      "UPDATE cluster_nodes SET heartbeat_at = now(), state = $3, "
      "  active_entities = COALESCE((SELECT jsonb_object_agg(k, n) FROM unnest($4::text[], $5::bigint[]) AS a(k, n)), "
      "                             '{}') "
      "WHERE id = $1 AND incarnation = $2",
      id, incarnation, state, text_array(kinds), number_array(counts));
  tx.commit();
  return r.affected_rows() == 1;
}

void leave(pqxx::connection& conn, const std::string& id, const std::string& incarnation) {
  pqxx::work tx{conn};
  auto r = tx.exec_params("UPDATE cluster_nodes SET state = 'down' WHERE id = $1 AND incarnation = $2", id,
                          incarnation);
  if (r.affected_rows() == 1) {
    tx.exec_params("UPDATE shard_leases SET expires_at = now() WHERE owner_node = $1 AND expires_at > now()", id);
  }
  tx.commit();
}

std::vector<node_record> nodes(pqxx::connection& conn, std::chrono::milliseconds node_timeout) {
  pqxx::read_transaction tx{conn};
  auto rows = tx.exec_params(
      "SELECT id, host, port, http_port, state, "
      "  state = 'up' AND heartbeat_at > now() - $1 * interval '1 millisecond', "
      "  (EXTRACT(EPOCH FROM (now() - heartbeat_at)) * 1000)::bigint, "
      "  COALESCE((SELECT string_agg(key || '=' || value, ',') FROM jsonb_each_text(active_entities)), ''), "
      "  to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
      "FROM cluster_nodes ORDER BY id",
      static_cast<std::int64_t>(node_timeout.count()));
  std::vector<node_record> out;
  out.reserve(rows.size());
  for (const auto& r : rows) {
    node_record n;
    n.id = r[0].c_str();
    n.host = r[1].c_str();
    n.port = r[2].as<int>();
    n.http_port = r[3].as<int>();
    n.state = r[4].c_str();
    n.live = r[5].as<bool>();
    n.heartbeat_age_ms = r[6].as<std::int64_t>();
    const std::string active = r[7].c_str();  // "cart=3,order=1"
    for (std::size_t at = 0; at < active.size();) {
      auto end = active.find(',', at);
      if (end == std::string::npos) {
        end = active.size();
      }
      const auto item = active.substr(at, end - at);
      const auto eq = item.find('=');
      if (eq != std::string::npos) {
        n.active_entities[item.substr(0, eq)] = std::stoll(item.substr(eq + 1));
      }
      at = end + 1;
    }
    n.started_at = r[8].c_str();
    out.push_back(std::move(n));
  }
  return out;
}

std::vector<lease_record> leases(pqxx::connection& conn) {
  pqxx::read_transaction tx{conn};
  auto rows = tx.exec("SELECT kind, shard, owner_node, epoch, expires_at > now() FROM shard_leases");
  std::vector<lease_record> out;
  out.reserve(rows.size());
  for (const auto& r : rows) {
    out.push_back({r[0].c_str(), r[1].as<int>(), r[2].c_str(), r[3].as<std::int64_t>(), r[4].as<bool>()});
  }
  return out;
}

std::vector<held_lease> acquire(pqxx::connection& conn, const std::string& node, const std::vector<shard_key>& wanted,
                                std::chrono::milliseconds ttl) {
  if (wanted.empty()) {
    return {};
  }
  key_arrays a;
  for (const auto& k : wanted) {
    a.kinds.push_back(k.kind);
    a.shards.push_back(k.shard);
  }
  pqxx::work tx{conn};
  auto rows = tx.exec_params(
      "INSERT INTO shard_leases AS l (kind, shard, owner_node, epoch, expires_at) "
      "SELECT w.kind, w.shard, $3, 1, now() + $4 * interval '1 millisecond' "
      "FROM unnest($1::text[], $2::int[]) AS w(kind, shard) "
      "ON CONFLICT (kind, shard) DO UPDATE SET owner_node = EXCLUDED.owner_node, epoch = l.epoch + 1, "
      "  expires_at = EXCLUDED.expires_at "
      "WHERE l.expires_at <= now() OR l.owner_node = EXCLUDED.owner_node "
      "RETURNING l.kind, l.shard, l.epoch",
      text_array(a.kinds), number_array(a.shards), node, static_cast<std::int64_t>(ttl.count()));
  tx.commit();
  std::vector<held_lease> out;
  out.reserve(rows.size());
  for (const auto& r : rows) {
    out.push_back({{r[0].c_str(), r[1].as<int>()}, r[2].as<std::int64_t>()});
  }
  return out;
}

std::vector<shard_key> renew(pqxx::connection& conn, const std::string& node, const std::vector<held_lease>& held,
                             std::chrono::milliseconds ttl) {
  if (held.empty()) {
    return {};
  }
  key_arrays a;
  std::vector<std::int64_t> epochs;
  for (const auto& h : held) {
    a.kinds.push_back(h.key.kind);
    a.shards.push_back(h.key.shard);
    epochs.push_back(h.epoch);
  }
  pqxx::work tx{conn};
  auto rows = tx.exec_params(
      "UPDATE shard_leases AS l SET expires_at = now() + $5 * interval '1 millisecond' "
      "FROM unnest($2::text[], $3::int[], $4::bigint[]) AS h(kind, shard, epoch) "
      "WHERE l.kind = h.kind AND l.shard = h.shard AND l.epoch = h.epoch AND l.owner_node = $1 "
      "  AND l.expires_at > now() "
      "RETURNING l.kind, l.shard",
      node, text_array(a.kinds), number_array(a.shards), number_array(epochs), static_cast<std::int64_t>(ttl.count()));
  tx.commit();
  std::vector<shard_key> out;
  out.reserve(rows.size());
  for (const auto& r : rows) {
    out.push_back({r[0].c_str(), r[1].as<int>()});
  }
  return out;
}

void release(pqxx::connection& conn, const std::string& node, const held_lease& lease) {
  pqxx::work tx{conn};
  tx.exec_params(
      "UPDATE shard_leases SET expires_at = now() "
      "WHERE kind = $1 AND shard = $2 AND owner_node = $3 AND epoch = $4 AND expires_at > now()",
      lease.key.kind, lease.key.shard, node, lease.epoch);
  tx.commit();
}

}  // namespace mercato::cluster
