#pragma once
// Two-level cache for catalog reads (issue 5, seed "Caching Strategy").
//
//   L1  in-process, per node: bounded by entries and bytes, TTL ≤ 5 min, LRU, 16 mutex shards.
//   L2  Redis, shared by nodes: TTL 1 h. Keys as in the seed: product:{id}, category:{id}:children,
//       search:{sha256(normalised query)}.
//
// get_or_load(key, loader): L1 → L2 → loader; a loaded value is stored in both. Values are opaque
// strings (the serialised representation the caller wants back).
//
// Invalidation (invalidate_product, invalidate_categories):
//  1. the local L1 drops the affected keys at once;
//  2. in Redis, one script atomically increments the generation counter `cache:gen`, appends
//     "{gen}\n{ops}" to a short log `cache:inv` (capped at invalidation_log_size entries) and deletes
//     the exact keys (product:{id});
//  3. then the prefixes (search:*, category:*) are deleted with SCAN + DEL (never KEYS).
// Other nodes: every L1 polls `cache:gen` (one GET) at most once per generation_check_interval
// (default 1 s) — piggy-backed on get_or_load, plus every L2 lookup reads the generation in the same
// MGET round trip. When it moved, the node reads the log and drops exactly the keys and prefixes
// invalidated since the generation it knew (everything, if the log no longer reaches back that far).
// So an invalidation made on one node is visible on every node within about one check interval.
//
// Races with concurrent loads: a value is written to L2 only if `cache:gen` still has the value seen
// before the load (a check-and-set script), and the generation is bumped *before* keys are deleted,
// so a load that read PostgreSQL before a change cannot re-populate L2 with the old value after the
// invalidation. Likewise a value is put into L1 only if no invalidation was applied locally while it
// was being fetched.
//
// Redis unavailable: L1 + loader only (reads still come from PostgreSQL through the loader). L1 then
// cannot hear about other nodes' invalidations, so its entries can be stale for at most the L1 TTL.
// An invalidation that could not reach Redis is remembered (bounded; beyond the bound: "flush all
// catalog keys") and replayed when Redis answers again, so L2 does not keep stale values for an hour.
//
// Threading: get_or_load and invalidate_* may block on Redis for about one command timeout: call them
// from pool threads, never from Asio io threads or CAF workers. The loader runs on the calling thread
// without any cache lock held; concurrent misses of one key may each run the loader (no single
// flight). Exceptions thrown by the loader propagate to the caller; nothing is cached then.
// peek never touches Redis (one L1 shard mutex, no I/O): it is the io-thread fast path, see below.
//
// Counting (stats): every read is one L1 lookup, a hit or a miss; every L1 miss with Redis
// configured is one L2 lookup, a hit, a miss or an error. A peek that hits counts an L1 hit; a peek
// that misses counts nothing, because the caller then runs get_or_load, which counts its own L1
// lookup (so a read that goes peek → get_or_load is counted once).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mercato::persistence {
class redis_client;
}

namespace mercato::http {

class product_lines;

struct catalog_cache_options {
  std::size_t l1_max_entries = 10'000;
  std::size_t l1_max_bytes = 64u << 20;
  std::chrono::milliseconds l1_ttl{std::chrono::minutes(5)};  // clamped to at most 5 minutes
  std::chrono::milliseconds l2_ttl{std::chrono::hours(1)};
  std::chrono::milliseconds generation_check_interval{1000};
  std::string key_prefix;  // before every Redis key ("" in production; tests isolate runs)
  std::size_t invalidation_log_size = 256;
  std::size_t pending_invalidations_max = 1024;  // remembered while Redis is down
};

struct catalog_cache_stats {
  std::uint64_t l1_hits = 0;
  std::uint64_t l1_misses = 0;
  std::uint64_t l2_hits = 0;
  std::uint64_t l2_misses = 0;
  std::uint64_t l2_errors = 0;  // L2 lookups that failed (Redis unavailable): neither hit nor miss
  std::uint64_t loads = 0;      // loader calls
  std::uint64_t l1_evictions = 0;
  std::uint64_t remote_invalidations = 0;  // generation changes picked up from Redis
};

class catalog_cache {
 public:
  using value_ptr = std::shared_ptr<const std::string>;
  // nullopt: nothing to cache (not found, or an error the caller handles); not cached.
  using loader_fn = std::function<std::optional<std::string>()>;

  // `redis` may be null: L1 + loader only.
  explicit catalog_cache(std::shared_ptr<persistence::redis_client> redis, catalog_cache_options opts = {});
  ~catalog_cache();
  catalog_cache(const catalog_cache&) = delete;
  catalog_cache& operator=(const catalog_cache&) = delete;

  // Null when the loader returned nullopt.
  value_ptr get_or_load(const std::string& key, const loader_fn& loader);

  // Non-blocking, L1 only: the value when this node's L1 holds it and the cross-node generation
  // check (with the replay of invalidations Redis missed) is not due; otherwise null, and the caller
  // goes on with get_or_load on a pool thread (which runs that check first). So a peek hit
  // is exactly what get_or_load would answer at that moment without any Redis round trip, and the
  // invalidation guarantees above hold unchanged (another node's invalidation is seen within about
  // one check interval). Safe on Asio io threads.
  value_ptr peek(const std::string& key);

  static std::string product_key(std::string_view id);
  static std::string category_children_key(std::string_view id);
  // `canonical_query` is the normalised search (terms, filters, sort, page size, cursor in a fixed
  // order); see normalize_search_terms for the free-text part.
  static std::string search_key(std::string_view canonical_query);
  // Lower-cases ASCII, trims, and collapses runs of whitespace to one space.
  static std::string normalize_search_terms(std::string_view terms);

  // A product (or its stock) changed: drops product:{id} and every search:* on all nodes.
  void invalidate_product(std::string_view id);
  // The category tree changed: drops every category:* on all nodes.
  void invalidate_categories();
  // Drops this node's L1 only.
  void clear_local();

  // The node's product_lines (what add-to-cart reads) follow this cache's invalidations: invalidate_product
  // drops the product's line too (first, without I/O), clear_local drops them all. Set before serving.
  void also_invalidate(std::shared_ptr<product_lines> lines) { lines_ = std::move(lines); }
  const std::shared_ptr<product_lines>& lines() const { return lines_; }

  catalog_cache_stats stats() const;
  std::size_t l1_entries() const;
  std::size_t l1_bytes() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
  std::shared_ptr<product_lines> lines_;
};

}  // namespace mercato::http
