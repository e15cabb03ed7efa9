#include "persistence/snapshot_writer.hpp"

#include <algorithm>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include <pqxx/pqxx>

#include "persistence/db_error.hpp"
#include "persistence/io_watchdog.hpp"
#include "persistence/pg_pool.hpp"
#include "persistence/uuid.hpp"
#include "telemetry/logging.hpp"
#include "telemetry/metrics.hpp"

namespace mercato::persistence {

const char* to_string(write_outcome o) {
  switch (o) {
    case write_outcome::committed: return "committed";
    case write_outcome::fenced: return "fenced";
    case write_outcome::unavailable: return "unavailable";
    case write_outcome::overloaded: return "overloaded";
    case write_outcome::failed: return "failed";
    case write_outcome::outcome_unknown: return "outcome_unknown";
  }
  return "failed";
}

namespace {

using steady = std::chrono::steady_clock;

// Multi-row statements take whole columns as PostgreSQL array literals and unnest them, so one
// statement text (prepared once per connection) serves every batch size. Measured against a single
// jsonb parameter read with jsonb_to_recordset: the same speed, but the array literal escapes every
// value, so a malformed state can never be read as extra rows.
//
// Fencing: a snapshot row is written only if its (kind, shard, owner_epoch) names a live lease of
// this node, and only as a compare-and-set on the version it was built on: the stored version must
// equal the write's prev_version (the base of the first write of that entity in the batch), so a write
// stacked on one that failed, or on a state another writer has since replaced, cannot land. A write
// built on a version > 0 must not create a missing row either: the upsert cannot refuse that without a
// per-row subquery (which PostgreSQL planned as a hashed scan of the whole table), so such rows come
// back marked as inserted and are deleted again in the same transaction (a row only goes missing if
// someone deleted it; the common path is the one upsert through the primary key). The lease is read,
// not locked (no FOR SHARE): the row lock taken by ON CONFLICT serialises two writers of one entity,
// and not locking keeps lease rows free of multixacts and cannot deadlock with lease takeover. The lease
// is looked up per row through its primary key (the LATERAL ... LIMIT 1): as a plain join, the generic
// plan scanned every lease row of the node (256 of them) for each row of the batch.
constexpr const char* upsert_name = "mercato_snapshot_upsert";
constexpr const char* upsert_sql =
    "INSERT INTO entity_snapshots AS s (kind, id, version, owner_epoch, state, prev_version, write_id, "
    "  recent_commands) "
    "SELECT i.kind, i.id, i.version, i.owner_epoch, i.state, i.prev_version, i.write_id, i.recent_commands "
    "FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::int[], $6::json[], $7::bigint[], "
    "            $8::uuid[], $9::text[]) "
    "  AS i(kind, id, version, owner_epoch, shard, state, prev_version, write_id, recent_commands) "
    "CROSS JOIN LATERAL (SELECT 1 FROM shard_leases l WHERE l.kind = i.kind AND l.shard = i.shard "
    "  AND l.epoch = i.owner_epoch AND l.owner_node = $10 AND l.expires_at > now() LIMIT 1) AS held "
    "ON CONFLICT (kind, id) DO UPDATE SET version = EXCLUDED.version, owner_epoch = EXCLUDED.owner_epoch, "
    "  state = EXCLUDED.state, prev_version = EXCLUDED.prev_version, write_id = EXCLUDED.write_id, "
    "  recent_commands = EXCLUDED.recent_commands, updated_at = now() "
    "WHERE s.version = EXCLUDED.prev_version "
    "RETURNING s.kind, s.id, s.version, s.xmax = 0 AND s.prev_version > 0 AS unmade";  // created where it must not
constexpr const char* unmake_name = "mercato_snapshot_unmake";
constexpr const char* unmake_sql =
    "DELETE FROM entity_snapshots s USING unnest($1::text[], $2::text[]) AS k(kind, id) "
    "WHERE s.kind = k.kind AND s.id = k.id";

constexpr const char* outbox_name = "mercato_outbox_insert";
constexpr const char* outbox_sql =
    "INSERT INTO outbox (id, aggregate_kind, aggregate_id, event_type, event_version, data, metadata) "
    "SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::json[], $7::json[])";

// After a commit whose outcome is unknown: which write does each of these entities hold now?
constexpr const char* write_ids_name = "mercato_snapshot_write_ids";
constexpr const char* write_ids_sql =
    "SELECT s.kind, s.id, s.write_id::text FROM entity_snapshots s "
    "JOIN unnest($1::text[], $2::text[]) AS k(kind, id) ON s.kind = k.kind AND s.id = k.id";

// One column of a multi-row statement as an array literal: {"a","b\"c"} / {1,2}.
class array_literal {
 public:
  explicit array_literal(std::size_t reserve = 0) {
    text_.reserve(reserve + 2);
    text_.push_back('{');
  }
  void add_text(std::string_view s) {
    separate();
    text_.push_back('"');
    // Runs without a quote or a backslash are copied whole (a state is JSON: quotes every few bytes,
    // but one append per run instead of one push_back per byte). A plain loop finds them:
    // string_view::find_first_of called memchr on its two-byte set once per byte scanned (3 % of the
    // node's CPU at the add-to-cart maximum, issue 14).
    const char* run = s.data();
    const char* const end = s.data() + s.size();
    for (const char* p = run; p != end; ++p) {
      if (*p == '"' || *p == '\\') {
        text_.append(run, static_cast<std::size_t>(p - run));
        text_.push_back('\\');
        text_.push_back(*p);
        run = p + 1;
      }
    }
    text_.append(run, static_cast<std::size_t>(end - run));
    text_.push_back('"');
  }
  void add_null() {
    separate();
    text_ += "NULL";
  }
  void add_value(const std::optional<std::string>& v) {  // a projection column: text, or NULL
    if (v) {
      add_text(*v);
    } else {
      add_null();
    }
  }
  void add_int(std::int64_t v) {
    separate();
    text_ += std::to_string(v);
  }
  const std::string& finish() {
    text_.push_back('}');
    return text_;
  }

 private:
  void separate() {
    if (text_.size() > 1) {
      text_.push_back(',');
    }
  }
  std::string text_;
};

std::string entity_key(std::string_view kind, std::string_view id) {
  std::string k;
  k.reserve(kind.size() + id.size() + 1);
  k.append(kind).push_back('\0');
  k.append(id);
  return k;
}

std::uint64_t fnv1a(std::string_view a, std::string_view b) {
  std::uint64_t h = 1469598103934665603ULL;
  auto mix = [&h](std::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ULL;
    }
  };
  mix(a);
  mix(std::string_view("\0", 1));
  mix(b);
  return h;
}


std::string_view json_or_empty_object(const std::string& s) { return s.empty() ? std::string_view("{}") : s; }

// The event's metadata with "aggregate_version": the entity version whose commit carries the event, so
// a reader (the live-updates hub) can order an item's changes and drop stale ones. Metadata is a JSON
// object (the entity runtime builds it); anything else is stored as it is.
std::string with_aggregate_version(const std::string& metadata, std::int64_t version) {
  const std::string_view m = json_or_empty_object(metadata);
  const auto open = m.find_first_not_of(" \t\r\n");
  if (open == std::string_view::npos || m[open] != '{') {
    return std::string(m);
  }
  const auto next = m.find_first_not_of(" \t\r\n", open + 1);
  std::string out = "{\"aggregate_version\": " + std::to_string(version);
  if (next != std::string_view::npos && m[next] != '}') {
    out += ", ";
  }
  out.append(m.substr(open + 1));
  return out;
}

std::chrono::milliseconds slot_statement_timeout(const snapshot_writer_options& opts) {
  return std::max(opts.commit_deadline, std::chrono::milliseconds(1000));
}

// A lane's connection, opened lazily, with the batch statements prepared on it.
struct connection_slot {
  std::unique_ptr<pqxx::connection> conn;
  bool down = false;  // the last attempt failed because PostgreSQL was unreachable
  db_error last_error{db_error_kind::unavailable, "postgresql unreachable", {}};

  void ensure(const snapshot_writer_options& opts) {
    if (conn && conn->is_open()) {
      trim(projection_statements, opts.statement_cache);
      trim(batch_statements, opts.statement_cache);
      return;
    }
    conn.reset();
    const auto connect_timeout = std::min(opts.commit_deadline, std::chrono::milliseconds(2000));
    auto c = open_connection(opts.dsn, connect_timeout, slot_statement_timeout(opts));
    // The batch statements take arrays (unnest): a plan does not depend on their values, yet PostgreSQL
    // plans each of the first executions anew and keeps doing so while a custom plan looks no dearer,
    // which perf showed as ~1/5 of the database's time under add-to-cart load. One generic plan each.
    pqxx::nontransaction{*c}.exec("SET plan_cache_mode = force_generic_plan");
    c->prepare(upsert_name, upsert_sql);
    c->prepare(unmake_name, unmake_sql);
    c->prepare(outbox_name, outbox_sql);
    c->prepare(write_ids_name, write_ids_sql);
    conn = std::move(c);
    projection_statements.clear();
    batch_statements.clear();
  }

  // Before an attempt (no transaction open): a cache that has reached `limit` statements has them
  // deallocated and starts over, so a backend's plan memory stays bounded whatever shapes the entities
  // produce.
  void trim(std::unordered_map<std::string, std::string>& cache, std::size_t limit) {
    if (cache.size() < std::max<std::size_t>(limit, 1)) {
      return;
    }
    for (const auto& entry : cache) {
      conn->unprepare(entry.second);
    }
    cache.clear();
  }

  // The statement of `cache` for `key`, prepared on this connection on first use (`sql` builds its text).
  template <class Sql>
  const std::string& statement(std::unordered_map<std::string, std::string>& cache, const std::string& key,
                               const char* prefix, Sql sql) {
    auto st = cache.find(key);
    if (st != cache.end()) {
      return st->second;
    }
    std::string name = prefix + std::to_string(cache.size());
    conn->prepare(name, sql());
    if (prepares) {
      prepares->fetch_add(1, std::memory_order_relaxed);
    }
    return cache.emplace(key, std::move(name)).first->second;
  }

  // Projection upserts prepared on this connection, by shape (table and typed columns).
  std::unordered_map<std::string, std::string> projection_statements;
  // One-statement batches prepared on this connection, by what they write (events or not, the
  // projection shapes in their canonical order: see group_by_shape).
  std::unordered_map<std::string, std::string> batch_statements;
  std::atomic<std::uint64_t>* prepares = nullptr;  // the writer's count of statements prepared
};

struct attempt_result {
  std::vector<write_outcome> outcomes;  // one per write, in order
  std::size_t snapshot_rows = 0;
  std::size_t events = 0;
  bool stepwise = false;  // committed by write_batch_stepwise
};

// Writes whose COMMIT may have happened although the client saw it fail: write id -> (entity key,
// version). A later attempt asks the stored rows for these ids; an id that is not there when asked
// can no longer appear (only this lane writes these entities), so it leaves the set.
using doubt_set = std::unordered_map<std::string, std::pair<std::string, std::int64_t>>;

const char* sql_type(protocol::column_type t) {
  switch (t) {
    case protocol::column_type::text: return "text";
    case protocol::column_type::uuid: return "uuid";
    case protocol::column_type::integer: return "integer";
    case protocol::column_type::bigint: return "bigint";
    case protocol::column_type::numeric: return "numeric";
    case protocol::column_type::boolean: return "boolean";
    case protocol::column_type::timestamptz: return "timestamptz";
    case protocol::column_type::jsonb: return "jsonb";
  }
  return "text";
}

bool sql_identifier(std::string_view s) {
  if (s.empty() || s.size() > 63 || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_')) {
    return false;
  }
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; });
}

// The shape of a projection row: its table and typed columns (rows of one shape share a statement).
std::string projection_shape(const projection_row& r) {
  std::string k = r.table;
  for (const auto& c : r.columns) {
    k.push_back('\0');
    k += c.name;
    k.push_back(static_cast<char>('0' + static_cast<int>(c.type)));
  }
  return k;
}

// Items grouped by the shape of their projection row (table and typed columns), the groups in the order
// of their shapes: one statement per group. Both batch paths group this way; `row_of` gives an item's
// projection row. The order is canonical, not first-seen: the one-statement batch is prepared per set of
// shapes, and first-seen order made every order in which kinds met in a batch a statement of its own (up
// to thousands per connection under a checkout mix, each with its plan in the backend's memory). It also
// makes every lane take the projection tables' row locks in one order.
template <class Item, class RowOf>
std::vector<std::pair<std::string, std::vector<Item>>> group_by_shape(const std::vector<Item>& items, RowOf row_of) {
  std::vector<std::pair<std::string, std::vector<Item>>> groups;
  std::unordered_map<std::string, std::size_t> index;
  for (const auto& item : items) {
    auto [it, fresh] = index.try_emplace(projection_shape(row_of(item)), groups.size());
    if (fresh) {
      groups.emplace_back(it->first, std::vector<Item>{});
    }
    groups[it->second].second.push_back(item);
  }
  std::sort(groups.begin(), groups.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return groups;
}

// A projection's table and columns are identifiers (they go into statement text) and carry a version.
void check_projection(const projection_row& r) {
  if (!sql_identifier(r.table) || r.columns.size() < 2) {
    throw std::invalid_argument("projection: bad table name or too few columns: " + r.table);
  }
  bool has_version = false;
  for (const auto& c : r.columns) {
    if (!sql_identifier(c.name)) {
      throw std::invalid_argument("projection: bad column name in " + r.table);
    }
    has_version = has_version || c.name == "version";
  }
  if (!has_version) {
    throw std::invalid_argument("projection: " + r.table + " rows need a version column");
  }
}

// "a = EXCLUDED.a, b = EXCLUDED.b" for every column but the key.
std::string projection_sets(const projection_row& r) {
  std::string sets;
  for (std::size_t i = 1; i < r.columns.size(); ++i) {
    sets += i > 1 ? ", " : "";
    sets += r.columns[i].name + " = EXCLUDED." + r.columns[i].name;
  }
  return sets;
}

// INSERT INTO t AS t (k, a, b, version) SELECT * FROM unnest($1::text[], ...)
// ON CONFLICT (k) DO UPDATE SET a = EXCLUDED.a, ... WHERE t.version < EXCLUDED.version
std::string projection_sql(const projection_row& r) {
  check_projection(r);
  std::string cols, params;
  for (std::size_t i = 0; i < r.columns.size(); ++i) {
    const auto& c = r.columns[i];
    if (i > 0) {
      cols += ", ";
      params += ", ";
    }
    cols += c.name;
    params += "$" + std::to_string(i + 1) + "::" + sql_type(c.type) + "[]";
  }
  return "INSERT INTO " + r.table + " AS t (" + cols + ") SELECT * FROM unnest(" + params + ") ON CONFLICT (" +
         r.columns[0].name + ") DO UPDATE SET " + projection_sets(r) + " WHERE t.version < EXCLUDED.version";
}

// Upserts the projection rows (newest state of each entity written now), one statement per shape.
void write_projections(pqxx::work& tx, connection_slot& slot, const std::vector<const projection_row*>& rows) {
  if (rows.empty()) {
    return;
  }
  // By shape; within a shape a key seen twice keeps its last row (one statement cannot touch a row twice).
  for (auto& [key, group] : group_by_shape(rows, [](const projection_row* r) -> const projection_row& { return *r; })) {
    {
      std::unordered_map<std::string, std::size_t> last;
      for (std::size_t i = 0; i < group.size(); ++i) {
        last[group[i]->columns[0].value.value_or("")] = i;
      }
      if (last.size() != group.size()) {
        std::vector<const projection_row*> kept;
        for (std::size_t i = 0; i < group.size(); ++i) {
          if (last[group[i]->columns[0].value.value_or("")] == i) {
            kept.push_back(group[i]);
          }
        }
        group.swap(kept);
      }
    }
    const projection_row& first = *group.front();  // a lambda may not capture a structured binding (C++17)
    const std::string& statement =
        slot.statement(slot.projection_statements, key, "mercato_proj_", [&first] { return projection_sql(first); });
    const std::size_t ncols = group.front()->columns.size();
    std::vector<array_literal> columns(ncols);
    for (const auto* r : group) {
      for (std::size_t c = 0; c < ncols; ++c) {
        columns[c].add_value(r->columns[c].value);
      }
    }
    std::vector<std::string> texts;
    texts.reserve(ncols);
    for (auto& c : columns) {
      texts.push_back(c.finish());
    }
    tx.exec_prepared(statement, pqxx::prepare::make_dynamic_params(texts));
  }
}

// A batch's writes by entity: each entity's writes in enqueue order, and how many of them from the
// first form a chain (each built on the version before it). Only the chain can land; the newest write of
// it carries the snapshot row.
struct batch_groups {
  const std::vector<const pending_write*>& writes;
  std::unordered_map<std::string, std::size_t> group_of_key;
  std::vector<std::vector<std::size_t>> members;  // group -> its writes, in enqueue order
  std::vector<std::string> keys;
  std::vector<std::size_t> chain;  // group -> length of the chain from its first write

  explicit batch_groups(const std::vector<const pending_write*>& w) : writes(w) {
    group_of_key.reserve(w.size() * 2);
    for (std::size_t i = 0; i < w.size(); ++i) {
      auto key = entity_key(w[i]->snap.kind, w[i]->snap.id);
      auto [it, inserted] = group_of_key.emplace(key, members.size());
      if (inserted) {
        members.emplace_back();
        keys.push_back(std::move(key));
      }
      members[it->second].push_back(i);
    }
    chain.resize(members.size());
    for (std::size_t g = 0; g < members.size(); ++g) {
      const auto& m = members[g];
      std::size_t len = 1;
      while (len < m.size() && w[m[len]]->snap.base_version == w[m[len - 1]]->snap.version) {
        ++len;
      }
      chain[g] = len;
    }
  }
  std::size_t size() const { return members.size(); }
  const pending_write& at(std::size_t g, std::size_t k) const { return *writes[members[g][k]]; }
  const pending_write& newest(std::size_t g) const { return at(g, chain[g] - 1); }
  // The group a RETURNING row (kind, id, version) stands for, when it is that group's newest write.
  std::optional<std::size_t> written(const pqxx::row& row) const {
    auto it = group_of_key.find(entity_key(row[0].c_str(), row[1].c_str()));
    if (it == group_of_key.end() || row[2].as<std::int64_t>() != newest(it->second).snap.version) {
      return std::nullopt;
    }
    return it->second;
  }
};

// The upsert's nine array parameters: a row per group whose chain still has writes from from[g], carrying
// the newest write's state, conditional on the stored version being the base of write from[g].
std::vector<std::string> snapshot_columns(const batch_groups& b, const std::vector<std::size_t>& from) {
  std::size_t rows = 0, state_bytes = 0;
  for (std::size_t g = 0; g < b.size(); ++g) {
    if (from[g] < b.chain[g]) {
      state_bytes += b.newest(g).snap.state_json.size() + 8;
      ++rows;
    }
  }
  array_literal kinds(rows * 8), ids(rows * 24), versions(rows * 8), epochs(rows * 4), shards(rows * 4),
      states(state_bytes + state_bytes / 4), prevs(rows * 8), write_ids(rows * 40), recents(rows * 8);
  for (std::size_t g = 0; g < b.size(); ++g) {
    if (from[g] >= b.chain[g]) {
      continue;
    }
    const auto& s = b.newest(g).snap;
    kinds.add_text(s.kind);
    ids.add_text(s.id);
    versions.add_int(s.version);
    epochs.add_int(s.owner_epoch);
    shards.add_int(s.shard);
    states.add_text(s.state_json);
    prevs.add_int(b.at(g, from[g]).snap.base_version);
    write_ids.add_text(s.write_id);
    recents.add_text(s.recent_commands);
  }
  std::vector<std::string> out;
  for (auto* a : {&kinds, &ids, &versions, &epochs, &shards, &states, &prevs, &write_ids, &recents}) {
    out.push_back(a->finish());
  }
  return out;
}

// The outbox insert's array parameters for the events of writes from[g] .. chain of each group `take`s:
// seven columns, and with `heads` an eighth, the version of the group's newest write (the snapshot row
// the one-statement batch joins them on). Empty when there is no such event.
std::vector<std::string> event_columns(const batch_groups& b, const std::vector<std::size_t>& from,
                                       const std::vector<char>& take, bool heads) {
  std::size_t count = 0, bytes = 0;
  for (std::size_t g = 0; g < b.size(); ++g) {
    for (std::size_t k = from[g]; take[g] && k < b.chain[g]; ++k) {
      for (const auto& e : b.at(g, k).events) {
        ++count;
        bytes += e.data_json.size() + e.metadata_json.size() + 64;
      }
    }
  }
  if (count == 0) {
    return {};
  }
  array_literal ids(count * 40), kinds(count * 8), agg_ids(count * 24), types(count * 16), versions(count * 4),
      data(bytes), metadata(bytes / 2), head(count * 8);
  for (std::size_t g = 0; g < b.size(); ++g) {
    for (std::size_t k = from[g]; take[g] && k < b.chain[g]; ++k) {
      const auto& s = b.at(g, k).snap;
      for (const auto& e : b.at(g, k).events) {
        ids.add_text(e.id);
        kinds.add_text(s.kind);
        agg_ids.add_text(s.id);
        types.add_text(e.event_type);
        versions.add_text(e.event_version);
        data.add_text(json_or_empty_object(e.data_json));
        metadata.add_text(with_aggregate_version(e.metadata_json, s.version));
        head.add_int(b.newest(g).snap.version);
      }
    }
  }
  std::vector<std::string> out;
  for (auto* a : {&ids, &kinds, &agg_ids, &types, &versions, &data, &metadata}) {
    out.push_back(a->finish());
  }
  if (heads) {
    out.push_back(head.finish());
  }
  return out;
}

// The SQLSTATE of mercato_snapshot_row_missing() (migration 0020): a one-statement batch met a write built
// on a stored version whose row is gone. The statement rolled back whole; the stepwise path handles it.
constexpr const char* row_missing_sqlstate = "MS001";

// What a one-statement batch carries for the writes of the entities that are written now: the
// snapshot rows (as in the stepwise path), then every event of those writes and the projection rows of
// each entity's newest write, each row naming the snapshot row (kind, id, version) it depends on.
//
//   WITH s AS (<the snapshot upsert> RETURNING kind, id, version, unmade),
//   e AS (INSERT INTO outbox ... SELECT ... FROM unnest(...) WITH ORDINALITY v JOIN s ... ORDER BY v.ord),
//   p0 AS (INSERT INTO <table> ... SELECT DISTINCT ON (key) ... JOIN s ... ORDER BY key, v.ord DESC
//          ON CONFLICT (key) DO UPDATE ... WHERE t.version < EXCLUDED.version), p1 ...
//   SELECT kind, id, version FROM s WHERE <unmade rows raise row_missing_sqlstate>
//
// Events and projections join the rows the upsert wrote, so those of a fenced entity are not written,
// exactly as the stepwise path leaves them out; events keep their enqueue order (seq), and of two
// projection rows with one key the later of the written ones stays, as there.
std::string batch_sql(bool events, const std::vector<const projection_row*>& shapes) {
  std::string sql = "WITH s AS (" + std::string(upsert_sql) + ")";  // parameters $1-$10
  int next = 11;
  auto param = [&next](const char* type) { return "$" + std::to_string(next++) + "::" + type + "[]"; };
  if (events) {
    sql += ", e AS (INSERT INTO outbox (id, aggregate_kind, aggregate_id, event_type, event_version, data, metadata) "
           "SELECT v.id, v.kind, v.agg_id, v.type, v.ver, v.data, v.metadata FROM unnest(";
    const char* sep = "";
    for (const char* type : {"uuid", "text", "text", "text", "text", "json", "json", "bigint"}) {
      sql += sep + param(type);  // one at a time: the numbers follow the columns
      sep = ", ";
    }
    sql += ") WITH ORDINALITY AS v(id, kind, agg_id, type, ver, data, metadata, head, ord) "
           "JOIN s ON s.kind = v.kind AND s.id = v.agg_id AND s.version = v.head AND NOT s.unmade ORDER BY v.ord)";
  }
  for (std::size_t k = 0; k < shapes.size(); ++k) {
    const auto& r = *shapes[k];
    check_projection(r);
    std::string cols, picks, params, aliases;
    for (std::size_t i = 0; i < r.columns.size(); ++i) {
      const std::string sep = i > 0 ? ", " : "";
      cols += sep + r.columns[i].name;
      picks += sep + "v.c" + std::to_string(i);
      params += sep + param(sql_type(r.columns[i].type));
      aliases += sep + "c" + std::to_string(i);
    }
    for (const char* type : {"text", "text", "bigint"}) {
      params += ", " + param(type);
    }
    sql += ", p" + std::to_string(k) + " AS (INSERT INTO " + r.table + " AS t (" + cols + ") SELECT DISTINCT ON (v.c0) " +
           picks + " FROM unnest(" + params + ") WITH ORDINALITY AS v(" + aliases +
           ", s_kind, s_id, s_version, ord) JOIN s ON s.kind = v.s_kind AND s.id = v.s_id AND s.version = v.s_version "
           "AND NOT s.unmade ORDER BY v.c0, v.ord DESC ON CONFLICT (" +
           r.columns[0].name + ") DO UPDATE SET " + projection_sets(r) + " WHERE t.version < EXCLUDED.version)";
  }
  sql += " SELECT s.kind, s.id, s.version FROM s "
         "WHERE CASE WHEN s.unmade THEN mercato_snapshot_row_missing(s.kind, s.id) ELSE true END";
  return sql;
}

// The batch as one statement outside a transaction block: PostgreSQL commits it on its own, so the
// batch takes one round trip instead of five (BEGIN, snapshots, events, projections, COMMIT). Only
// without writes in doubt (those need the stored write ids first). Returns nullopt when the statement
// met a missing snapshot row: nothing of it was stored, and the caller runs the stepwise path.
std::optional<attempt_result> write_batch_single(connection_slot& slot, const std::string& node_id,
                                                 const std::vector<const pending_write*>& writes, bool& in_commit) {
  const batch_groups b(writes);
  const std::size_t groups = b.size();
  const std::vector<std::size_t> from(groups, 0);
  std::vector<std::string> params = snapshot_columns(b, from);
  params.push_back(node_id);
  const auto events = event_columns(b, from, std::vector<char>(groups, 1), true);
  params.insert(params.end(), events.begin(), events.end());
  // Projection rows of each entity's newest write, with the snapshot row each depends on, by shape.
  using projection_item = std::pair<const projection_row*, const snapshot*>;
  std::vector<projection_item> items;
  for (std::size_t g = 0; g < groups; ++g) {
    const auto& w = b.newest(g);
    for (const auto& p : w.projections) {
      items.emplace_back(&p, &w.snap);
    }
  }
  const auto by_shape = group_by_shape(items, [](const projection_item& i) -> const projection_row& { return *i.first; });
  std::string key = events.empty() ? "-" : "E";  // the statement's cache key: events or not, the shapes in order
  std::vector<const projection_row*> shapes;
  for (const auto& [shape, rows] : by_shape) {
    key.push_back('\1');
    key += shape;
    shapes.push_back(rows.front().first);
    const std::size_t ncols = rows.front().first->columns.size();
    std::vector<array_literal> columns(ncols + 3);
    for (const auto& [r, snap] : rows) {
      for (std::size_t c = 0; c < ncols; ++c) {
        columns[c].add_value(r->columns[c].value);
      }
      columns[ncols].add_text(snap->kind);
      columns[ncols + 1].add_text(snap->id);
      columns[ncols + 2].add_int(snap->version);
    }
    for (auto& c : columns) {
      params.push_back(c.finish());
    }
  }

  const std::string& statement =
      slot.statement(slot.batch_statements, key, "mercato_batch_", [&] { return batch_sql(!events.empty(), shapes); });

  pqxx::result rows;
  try {
    pqxx::nontransaction tx{*slot.conn};
    in_commit = true;  // the statement is its own transaction: a lost connection leaves it in doubt
    rows = tx.exec_prepared(statement, pqxx::prepare::make_dynamic_params(params));
    in_commit = false;
  } catch (const pqxx::sql_error& e) {
    in_commit = false;  // PostgreSQL answered with an error: the statement rolled back whole
    if (e.sqlstate() == row_missing_sqlstate) {
      return std::nullopt;
    }
    throw;
  }

  attempt_result result;
  result.outcomes.assign(writes.size(), write_outcome::fenced);
  for (const auto& row : rows) {
    const auto g = b.written(row);
    if (!g) {
      continue;
    }
    ++result.snapshot_rows;
    for (std::size_t k = 0; k < b.chain[*g]; ++k) {
      result.outcomes[b.members[*g][k]] = write_outcome::committed;
      result.events += b.at(*g, k).events.size();
    }
  }
  return result;
}

// One transaction for `writes` (in enqueue order). Throws whatever libpqxx throws; `in_commit` tells
// the caller whether the failure happened during COMMIT (outcome unknown).
//
// The writes of one entity form a chain (each built on the version before it); the newest carries the
// snapshot row, conditional on the stored version being the chain's base. A write that does not
// continue the chain is fenced, and so is every write of an entity whose condition fails.
//
// With writes in `doubt` (an earlier attempt failed inside COMMIT), the stored write id of each
// such entity first tells which of them that attempt committed: those count as committed (their
// events and projections were committed with them) and the rest of the chain continues from there.
attempt_result write_batch_stepwise(connection_slot& slot, const std::string& node_id,
                                    const std::vector<const pending_write*>& writes, doubt_set& doubt,
                                    bool& in_commit) {
  pqxx::connection& conn = *slot.conn;
  const std::size_t n = writes.size();
  const batch_groups b(writes);
  const std::size_t groups = b.size();
  const auto& members = b.members;
  const auto& keys = b.keys;
  const auto& chain = b.chain;
  std::vector<std::size_t> from(groups, 0);  // first write of the chain still to be written

  pqxx::work tx{conn};

  if (!doubt.empty()) {
    std::unordered_set<std::string> doubtful_keys;
    for (const auto& [wid, where] : doubt) {
      doubtful_keys.insert(where.first);
    }
    array_literal kinds, ids;
    std::vector<std::size_t> asked;
    for (std::size_t g = 0; g < groups; ++g) {
      if (doubtful_keys.count(keys[g]) != 0) {
        const auto& s = writes[members[g][0]]->snap;
        kinds.add_text(s.kind);
        ids.add_text(s.id);
        asked.push_back(g);
      }
    }
    if (!asked.empty()) {
      std::unordered_map<std::size_t, std::string> stored;  // group -> stored write id
      for (const auto& row : tx.exec_prepared(write_ids_name, kinds.finish(), ids.finish())) {
        auto it = b.group_of_key.find(entity_key(row[0].c_str(), row[1].c_str()));
        if (it != b.group_of_key.end() && !row[2].is_null()) {
          stored[it->second] = row[2].c_str();
        }
      }
      for (auto g : asked) {
        std::int64_t landed = 0;  // the newest version the doubtful attempt stored, if any
        auto sw = stored.find(g);
        if (sw != stored.end()) {
          auto d = doubt.find(sw->second);
          if (d != doubt.end() && d->second.first == keys[g]) {
            landed = d->second.second;
          }
        }
        const auto& m = members[g];
        while (from[g] < chain[g] && writes[m[from[g]]]->snap.version <= landed) {
          ++from[g];
        }
        // What was not stored by then never will be: those writes are no longer in doubt.
        for (std::size_t k = from[g]; k < m.size(); ++k) {
          doubt.erase(writes[m[k]]->snap.write_id);
        }
      }
    }
  }

  std::vector<char> applied(groups, 0);
  bool rows = false;  // some chain still has writes to store (not all were stored by the doubtful attempt)
  for (std::size_t g = 0; g < groups; ++g) {
    rows = rows || from[g] < chain[g];
  }
  if (rows) {
    auto params = snapshot_columns(b, from);
    params.push_back(node_id);
    const pqxx::result result_rows = tx.exec_prepared(upsert_name, pqxx::prepare::make_dynamic_params(params));
    array_literal unmake_kinds, unmake_ids;
    bool unmake = false;
    for (const auto& row : result_rows) {
      if (row[3].as<bool>()) {  // built on a version, but no row was there: take it back, fenced
        unmake_kinds.add_text(row[0].c_str());
        unmake_ids.add_text(row[1].c_str());
        unmake = true;
      } else if (const auto g = b.written(row)) {
        applied[*g] = 1;
      }
    }
    if (unmake) {
      tx.exec_prepared(unmake_name, unmake_kinds.finish(), unmake_ids.finish());
    }
  }

  attempt_result result;
  result.stepwise = true;
  const auto events = event_columns(b, from, applied, false);
  if (!events.empty()) {
    tx.exec_prepared(outbox_name, pqxx::prepare::make_dynamic_params(events));
    for (std::size_t g = 0; g < groups; ++g) {
      for (std::size_t k = from[g]; applied[g] && k < chain[g]; ++k) {
        result.events += b.at(g, k).events.size();
      }
    }
  }

  // Projections follow the newest state of each entity written now.
  std::vector<const projection_row*> projection_rows;
  for (std::size_t g = 0; g < groups; ++g) {
    if (!applied[g]) {
      continue;
    }
    ++result.snapshot_rows;
    for (const auto& p : b.newest(g).projections) {
      projection_rows.push_back(&p);
    }
  }
  write_projections(tx, slot, projection_rows);

  in_commit = true;
  tx.commit();
  in_commit = false;

  result.outcomes.assign(n, write_outcome::fenced);
  for (std::size_t g = 0; g < groups; ++g) {
    const auto& m = members[g];
    for (std::size_t k = 0; k < from[g]; ++k) {
      result.outcomes[m[k]] = write_outcome::committed;  // by the earlier, in-doubt attempt
    }
    if (applied[g]) {
      for (std::size_t k = from[g]; k < chain[g]; ++k) {
        result.outcomes[m[k]] = write_outcome::committed;
      }
    }
  }
  return result;
}

// One batch: as one statement when no write is in doubt, else (or when that statement met a missing
// snapshot row) as the stepwise transaction.
attempt_result write_batch(connection_slot& slot, const std::string& node_id,
                           const std::vector<const pending_write*>& writes, doubt_set& doubt, bool& in_commit) {
  if (doubt.empty()) {
    if (auto r = write_batch_single(slot, node_id, writes, in_commit)) {
      return std::move(*r);
    }
  }
  return write_batch_stepwise(slot, node_id, writes, doubt, in_commit);
}

bool is_transient(const db_error& err) {
  return err.kind == db_error_kind::unavailable || err.kind == db_error_kind::timeout ||
         err.sqlstate == "40001" || err.sqlstate == "40P01";  // serialization failure, deadlock
}

enum class try_status { committed, unavailable, error };

struct try_result {
  try_status status = try_status::error;
  attempt_result result;
  db_error error;
};

// Runs write_batch until it commits, fails for a non-transient reason, or `deadline` passes while
// PostgreSQL stays unreachable (reconnecting with backoff 50 ms doubling to 1 s).
try_result commit_with_retry(connection_slot& slot, const snapshot_writer_options& opts, telemetry::metrics* metrics,
                             const std::vector<const pending_write*>& writes, steady::time_point deadline,
                             doubt_set& doubt) {
  auto backoff = std::chrono::milliseconds(50);
  db_error& last = slot.last_error;
  bool warned = false;
  for (;;) {
    // The lane already knows PostgreSQL is gone and these writes are out of time: do not wait for
    // another connect (a drain after an outage must not cost one connect timeout per batch).
    if (slot.down && steady::now() >= deadline) {
      return {try_status::unavailable, {}, last};
    }
    bool in_commit = false;
    try {
      slot.ensure(opts);
      const auto started = steady::now();
      // A stalled network must not hold the lane past its statement timeout: cut off, the batch is in
      // doubt like any commit that lost its connection.
      auto armed = io_watchdog::instance().arm(*slot.conn, started + slot_statement_timeout(opts) + io_grace);
      auto r = write_batch(slot, opts.node_id, writes, doubt, in_commit);
      if (metrics) {
        metrics->snapshot_commit_seconds.Observe(std::chrono::duration<double>(steady::now() - started).count());
        metrics->snapshot_batch_size.Observe(static_cast<double>(writes.size()));
      }
      if (slot.down) {
        telemetry::log_info("snapshot writer reconnected to postgresql");
      }
      slot.down = false;
      return {try_status::committed, std::move(r), {}};
    } catch (...) {
      last = classify_current_exception();
      if (in_commit) {
        // COMMIT may have happened: the next attempt asks the stored rows for these write ids.
        for (const auto* w : writes) {
          doubt.insert_or_assign(w->snap.write_id, std::make_pair(entity_key(w->snap.kind, w->snap.id), w->snap.version));
        }
      }
      if (!is_transient(last)) {
        return {try_status::error, {}, last};
      }
      if (last.kind == db_error_kind::unavailable) {
        slot.conn.reset();
        slot.down = true;
      }
    }
    const auto now = steady::now();
    if (now >= deadline) {
      return {try_status::unavailable, {}, last};
    }
    if (!warned) {
      telemetry::log_warn("snapshot batch not committed, retrying",
                          {{"writes", writes.size()}, {"error", last.message}, {"kind", to_string(last.kind)}});
      warned = true;
    }
    std::this_thread::sleep_for(std::min<steady::duration>(backoff, deadline - now));
    backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
  }
}

}  // namespace

struct snapshot_writer::batch_item {
  pending_write w;
  steady::time_point enqueued_at;
  std::function<void()> barrier;  // set: not a write; run once everything enqueued before it has settled
};

struct snapshot_writer::lane {
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<batch_item> queue;
  bool stopping = false;
  std::thread thread;

  // Lane thread only from here on.
  connection_slot slot;
  // The last transaction carried one write: writes come slower than a commit takes, so the next
  // one would wait out the linger alone. It starts at once instead (see run_lane).
  bool last_alone = false;

  // A write that did not commit takes the writes of its entity queued behind it down with it: their
  // state was computed on top of it, so committing them would store a change whose write failed (and
  // whose caller was told so) without its events. Only writes enqueued before the failure was
  // reported are affected; an entity that has seen the failure restarts from the stored snapshot.
  struct failure {
    std::int64_t version;
    write_outcome outcome;
    steady::time_point reported_at;
  };
  std::unordered_map<std::string, failure> failed_entities;
  std::deque<std::pair<steady::time_point, std::string>> failure_order;

  // Writes leave the queue in order, so a newer failure of an entity replaces the older one: every
  // write enqueued before the older one was reported has been handled already.
  // `now`: taken right before the outcome was reported (a write enqueued after that was built by an
  // entity that may already know; the compare-and-set decides for it).
  void record_failure(std::string key, std::int64_t version, write_outcome o, steady::time_point now) {
    failed_entities.insert_or_assign(key, failure{version, o, now});
    failure_order.emplace_back(now, std::move(key));
  }

  // Writes leave the queue in order: once the oldest write at hand was enqueued after a failure was
  // reported, no write that failure concerns is left.
  void forget_failures_before(steady::time_point oldest_enqueued) {
    while (!failure_order.empty() && failure_order.front().first < oldest_enqueued) {
      auto it = failed_entities.find(failure_order.front().second);
      if (it != failed_entities.end() && it->second.reported_at == failure_order.front().first) {
        failed_entities.erase(it);
      }
      failure_order.pop_front();
    }
  }

  std::optional<write_outcome> failed_before(const batch_item& item) const;
};

snapshot_writer::snapshot_writer(snapshot_writer_options opts, telemetry::metrics* metrics)
    : opts_(std::move(opts)), metrics_(metrics) {
  opts_.threads = std::max(1u, opts_.threads);
  opts_.max_batch = std::max<std::size_t>(1, opts_.max_batch);
  lanes_.reserve(opts_.threads);
  for (unsigned i = 0; i < opts_.threads; ++i) {
    lanes_.push_back(std::make_unique<lane>());
    lanes_.back()->slot.prepares = &stats_.statements_prepared;
  }
  for (auto& l : lanes_) {
    l->thread = std::thread([this, lp = l.get()] { run_lane(*lp); });
  }
}

snapshot_writer::~snapshot_writer() { stop(); }

write_outcome snapshot_writer::enqueue(pending_write w) {
  auto refuse = [this] {
    if (metrics_) {
      metrics_->snapshot_overloaded.Increment();
    }
    return write_outcome::overloaded;
  };
  if (stopping_.load(std::memory_order_acquire)) {
    return refuse();
  }
  if (depth_.fetch_add(1, std::memory_order_relaxed) >= opts_.queue_limit) {
    depth_.fetch_sub(1, std::memory_order_relaxed);
    return refuse();
  }
  if (metrics_) {
    metrics_->snapshot_queue_depth.Increment();
  }
  if (w.snap.write_id.empty()) {
    w.snap.write_id = time_ordered_uuid();
  }
  for (auto& e : w.events) {
    if (e.id.empty()) {
      e.id = time_ordered_uuid();
    }
  }
  lane& l = *lanes_[fnv1a(w.snap.kind, w.snap.id) % lanes_.size()];
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock{l.mutex};
    if (l.stopping) {
      depth_.fetch_sub(1, std::memory_order_relaxed);
      if (metrics_) {
        metrics_->snapshot_queue_depth.Decrement();
      }
      return refuse();
    }
    l.queue.push_back(batch_item{std::move(w), steady::now(), {}});
    // The lane sleeps until a first write arrives, then lingers until the batch is full.
    wake = l.queue.size() == 1 || l.queue.size() == opts_.max_batch;
  }
  if (wake) {
    l.cv.notify_one();
  }
  return write_outcome::committed;
}

void snapshot_writer::stop() {
  std::lock_guard<std::mutex> guard{stop_mutex_};
  stopping_.store(true, std::memory_order_release);
  for (auto& l : lanes_) {
    {
      std::lock_guard<std::mutex> lock{l->mutex};
      l->stopping = true;
    }
    l->cv.notify_all();
  }
  for (auto& l : lanes_) {
    if (l->thread.joinable()) {
      l->thread.join();
    }
  }
}

snapshot_writer_stats snapshot_writer::stats() const {
  snapshot_writer_stats s;
  s.transactions = stats_.transactions.load(std::memory_order_relaxed);
  s.stepwise = stats_.stepwise.load(std::memory_order_relaxed);
  s.snapshot_rows = stats_.snapshot_rows.load(std::memory_order_relaxed);
  s.events = stats_.events.load(std::memory_order_relaxed);
  s.committed = stats_.committed.load(std::memory_order_relaxed);
  s.fenced = stats_.fenced.load(std::memory_order_relaxed);
  s.failed = stats_.failed.load(std::memory_order_relaxed);
  s.unavailable = stats_.unavailable.load(std::memory_order_relaxed);
  s.outcome_unknown = stats_.outcome_unknown.load(std::memory_order_relaxed);
  s.statements_prepared = stats_.statements_prepared.load(std::memory_order_relaxed);
  return s;
}

void snapshot_writer::run_lane(lane& l) {
  // Connect early so the first batch does not pay for it; failures are retried per batch.
  try {
    l.slot.ensure(opts_);
  } catch (...) {
    l.slot.conn.reset();
  }
  std::vector<batch_item> batch;
  batch.reserve(std::min<std::size_t>(opts_.max_batch, 4096));
  std::vector<std::function<void()>> barriers;
  for (;;) {
    batch.clear();
    {
      std::unique_lock<std::mutex> lock{l.mutex};
      l.cv.wait(lock, [&l] { return l.stopping || !l.queue.empty(); });
      if (l.queue.empty()) {
        return;  // stopping, and everything is drained
      }
      // A barrier at the front (an activation waiting for earlier writes) does not wait out the linger,
      // nor does a write after a transaction that found no company: at 50 writes/s a write waited the
      // whole linger (then 2 ms, of a 7 ms add) for a batch of one. Under load the queue's front is older than
      // the linger when the previous commit ends, so the linger only acts in between.
      if (!l.stopping && !l.last_alone && l.queue.size() < opts_.max_batch && opts_.linger.count() > 0 &&
          !l.queue.front().barrier) {
        const auto until = l.queue.front().enqueued_at + opts_.linger;
        l.cv.wait_until(lock, until, [&] { return l.stopping || l.queue.size() >= opts_.max_batch; });
      }
      const std::size_t take = std::min(opts_.max_batch, l.queue.size());
      for (std::size_t i = 0; i < take; ++i) {
        if (l.queue.front().barrier) {
          barriers.push_back(std::move(l.queue.front().barrier));
        } else {
          batch.push_back(std::move(l.queue.front()));
        }
        l.queue.pop_front();
      }
    }
    if (!batch.empty()) {
      l.last_alone = batch.size() == 1;
      process(l, batch);
    }
    // Every write taken with a barrier (so every write enqueued before it) has settled now.
    for (auto& fn : barriers) {
      run_barrier(fn);
    }
    barriers.clear();
  }
}

void snapshot_writer::after_pending(const std::string& kind, const std::string& id, std::function<void()> fn) {
  lane& l = *lanes_[fnv1a(kind, id) % lanes_.size()];
  {
    std::lock_guard<std::mutex> lock{l.mutex};
    if (!l.stopping) {
      batch_item item;
      item.enqueued_at = steady::now();
      item.barrier = std::move(fn);
      l.queue.push_back(std::move(item));
      l.cv.notify_one();
      return;
    }
  }
  run_barrier(fn);  // stopping: nothing more will be written
}

void snapshot_writer::run_barrier(std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    telemetry::log_error("snapshot writer barrier threw", {{"error", e.what()}});
  } catch (...) {
    telemetry::log_error("snapshot writer barrier threw");
  }
}

std::optional<write_outcome> snapshot_writer::lane::failed_before(const batch_item& item) const {
  if (failed_entities.empty()) {
    return std::nullopt;
  }
  auto it = failed_entities.find(entity_key(item.w.snap.kind, item.w.snap.id));
  if (it == failed_entities.end() || item.enqueued_at >= it->second.reported_at ||
      item.w.snap.version <= it->second.version) {
    return std::nullopt;
  }
  return it->second.outcome;
}

void snapshot_writer::process(lane& l, std::vector<batch_item>& batch) {
  l.forget_failures_before(batch.front().enqueued_at);
  auto settle = [this, &l](batch_item& item, write_outcome o) {
    if (o == write_outcome::committed) {
      finish(item, o);
      return;
    }
    std::string key = entity_key(item.w.snap.kind, item.w.snap.id);
    const std::int64_t version = item.w.snap.version;
    const auto reported = steady::now();
    finish(item, o);  // reported to the entity from here on
    l.record_failure(std::move(key), version, o, reported);
  };

  std::vector<batch_item*> live;
  std::vector<const pending_write*> writes;
  live.reserve(batch.size());
  writes.reserve(batch.size());
  auto oldest = batch.front().enqueued_at;
  for (auto& item : batch) {
    if (auto o = l.failed_before(item)) {
      finish(item, *o);
      continue;
    }
    live.push_back(&item);
    writes.push_back(&item.w);
    oldest = std::min(oldest, item.enqueued_at);
  }
  if (live.empty()) {
    return;
  }

  doubt_set doubt;
  // Out of time: a write whose COMMIT may have happened is in doubt, not unavailable.
  auto lost = [&doubt](const batch_item& item) {
    return doubt.count(item.w.snap.write_id) != 0 ? write_outcome::outcome_unknown : write_outcome::unavailable;
  };
  const auto batch_started = steady::now();
  auto r = commit_with_retry(l.slot, opts_, metrics_, writes, oldest + opts_.commit_deadline, doubt);
  if (metrics_) {
    // Per write, so the stages weigh like the add-to-cart requests they belong to.
    using stage = telemetry::metrics::stage;
    auto& queued = metrics_->stage_seconds(stage::writer_queue);
    auto& commit = metrics_->stage_seconds(stage::writer_commit);
    const double commit_s = std::chrono::duration<double>(steady::now() - batch_started).count();
    for (const auto* item : live) {
      queued.Observe(std::chrono::duration<double>(batch_started - item->enqueued_at).count());
      commit.Observe(commit_s);
    }
  }
  if (r.status == try_status::committed) {
    if (r.result.events > 0 && opts_.on_events_committed) {
      opts_.on_events_committed();
    }
    stats_.transactions.fetch_add(1, std::memory_order_relaxed);
    stats_.stepwise.fetch_add(r.result.stepwise ? 1 : 0, std::memory_order_relaxed);
    stats_.snapshot_rows.fetch_add(r.result.snapshot_rows, std::memory_order_relaxed);
    stats_.events.fetch_add(r.result.events, std::memory_order_relaxed);
    for (std::size_t i = 0; i < live.size(); ++i) {
      settle(*live[i], r.result.outcomes[i]);
    }
    return;
  }
  if (r.status == try_status::unavailable) {
    telemetry::log_warn("snapshot batch failed: postgresql unavailable past the commit deadline",
                        {{"writes", live.size()}, {"error", r.error.message}});
    for (auto* item : live) {
      settle(*item, lost(*item));
    }
    return;
  }

  // Something in the batch is rejected (a projection breaks a constraint, a malformed state, ...):
  // commit each write alone so only the offending one fails (and, through failed_before, the
  // writes of its entity behind it).
  if (live.size() > 1) {
    telemetry::log_warn("snapshot batch failed, retrying write by write",
                        {{"writes", live.size()}, {"error", r.error.message}, {"sqlstate", r.error.sqlstate}});
  }
  for (auto* item : live) {
    if (auto o = l.failed_before(*item)) {
      finish(*item, *o);
      continue;
    }
    std::vector<const pending_write*> one{&item->w};
    auto r1 = commit_with_retry(l.slot, opts_, metrics_, one, item->enqueued_at + opts_.commit_deadline, doubt);
    switch (r1.status) {
      case try_status::committed:
        if (r1.result.events > 0 && opts_.on_events_committed) {
          opts_.on_events_committed();
        }
        stats_.transactions.fetch_add(1, std::memory_order_relaxed);
        stats_.stepwise.fetch_add(r1.result.stepwise ? 1 : 0, std::memory_order_relaxed);
        stats_.snapshot_rows.fetch_add(r1.result.snapshot_rows, std::memory_order_relaxed);
        stats_.events.fetch_add(r1.result.events, std::memory_order_relaxed);
        settle(*item, r1.result.outcomes[0]);
        break;
      case try_status::unavailable:
        settle(*item, lost(*item));
        break;
      case try_status::error:
        if (doubt.count(item->w.snap.write_id) != 0) {
          settle(*item, write_outcome::outcome_unknown);  // failed before it could ask whether it landed
          break;
        }
        telemetry::log_warn("snapshot write failed",
                            {{"kind", item->w.snap.kind}, {"id", item->w.snap.id}, {"version", item->w.snap.version},
                             {"error", r1.error.message}, {"sqlstate", r1.error.sqlstate}});
        settle(*item, write_outcome::failed);
        break;
    }
  }
}

void snapshot_writer::finish(batch_item& item, write_outcome o) {
  switch (o) {
    case write_outcome::committed: stats_.committed.fetch_add(1, std::memory_order_relaxed); break;
    case write_outcome::fenced:
      stats_.fenced.fetch_add(1, std::memory_order_relaxed);
      if (metrics_) {
        metrics_->snapshot_fenced.Increment();
      }
      break;
    case write_outcome::unavailable:
    case write_outcome::failed:
    case write_outcome::overloaded:
    case write_outcome::outcome_unknown:
      (o == write_outcome::failed            ? stats_.failed
       : o == write_outcome::outcome_unknown ? stats_.outcome_unknown
                                             : stats_.unavailable)
          .fetch_add(1, std::memory_order_relaxed);
      if (metrics_) {
        metrics_->snapshot_failed.Increment();
      }
      break;
  }
  if (item.w.done) {
    try {
      item.w.done(o);
    } catch (const std::exception& e) {
      telemetry::log_error("snapshot write callback threw", {{"error", e.what()}});
    } catch (...) {
      telemetry::log_error("snapshot write callback threw");
    }
  }
  // Free what the write holds before it counts as gone from the queue.
  item.w = pending_write{};
  depth_.fetch_sub(1, std::memory_order_relaxed);
  if (metrics_) {
    metrics_->snapshot_queue_depth.Decrement();
  }
}

std::optional<snapshot> load_snapshot(pqxx::connection& conn, const std::string& kind, const std::string& id) {
  // A named statement, so an activation does not parse and plan the query again: libpqxx registers it
  // with the server on first use on each connection, and declaring it again with the same text is a
  // lookup (an activation that missed the parked states runs this once per entity).
  static const std::string load_name = "mercato_snapshot_load";
  static const std::string load_sql =
      "SELECT version, owner_epoch, state::text, recent_commands FROM entity_snapshots WHERE kind = $1 AND id = $2";
  conn.prepare(load_name, load_sql);
  pqxx::nontransaction tx{conn};
  const pqxx::result r = tx.exec_prepared(load_name, kind, id);
  if (r.empty()) {
    return std::nullopt;
  }
  snapshot s;
  s.kind = kind;
  s.id = id;
  s.version = r[0][0].as<std::int64_t>();
  s.owner_epoch = r[0][1].as<std::int64_t>();
  s.shard = -1;
  s.state_json = r[0][2].c_str();
  s.base_version = s.version;
  s.recent_commands = r[0][3].c_str();
  return s;
}

std::int64_t acquire_all_leases(pqxx::connection& conn, const std::string& kind, int shards,
                                const std::string& node_id) {
  if (shards <= 0) {
    throw std::invalid_argument("acquire_all_leases: shards must be positive");
  }
  pqxx::work tx{conn};
  // Two nodes (or two incarnations) taking the leases of one kind at once must get different epochs.
  const auto lock_key = static_cast<std::int64_t>(fnv1a("mercato.shard_leases", kind));
  tx.exec_params("SELECT pg_advisory_xact_lock($1)", lock_key);
  const auto epoch =
      tx.exec_params1("SELECT COALESCE(MAX(epoch), 0) + 1 FROM shard_leases WHERE kind = $1", kind)[0]
          .as<std::int64_t>();
  tx.exec_params(
      "INSERT INTO shard_leases (kind, shard, owner_node, epoch, expires_at) "
      "SELECT $1, g, $2, $3, now() + interval '100 years' FROM generate_series(0, $4 - 1) AS g "
      "ON CONFLICT (kind, shard) DO UPDATE SET owner_node = EXCLUDED.owner_node, epoch = EXCLUDED.epoch, "
      "  expires_at = EXCLUDED.expires_at",
      kind, node_id, epoch, shards);
  tx.commit();
  return epoch;
}

}  // namespace mercato::persistence
