#pragma once
// What a cart needs to know about a product when a line is added or changed: sku, name, the current
// price, whether it is sold, and how many units are available now (on hand − reserved). Kept in memory
// per node so that add-to-cart does not ask PostgreSQL for every request (issue 14: that lookup, a pool
// hop and an unprepared query, was half of an add's database time).
//
// Freshness: an entry is served for at most `ttl` (1 s by default) after it was read from PostgreSQL, and
// is dropped at once when this node learns of a change: the product routes and the inventory routes drop
// the product they changed before answering (so the writer's own next add sees the change), and the
// committed ProductCreated/ProductUpdated/ProductArchived/StockChanged events drop it on every node (the
// catalog cache's outbox subscription and the cluster relay). Carts do not hold stock (API.md), so
// `available` is a check at the moment of the add, not a promise: checkout reserves against the
// inventory entity and reprices from the catalog, so a value up to `ttl` old can let an add through that
// checkout then refuses, never sell what is not there or charge a price that is not current.
//
// Races with loads: a load that started before an invalidation is not stored (one generation counter
// for the whole cache, read before the load and checked when storing), so an old read cannot undo a drop.
// Unknown and archived products are remembered too (as "not sold"), so repeated adds of an id that does
// not exist cost PostgreSQL nothing within the TTL; ProductCreated drops such an entry.
//
// Threading: every member is safe from any thread and never does I/O (16 mutex-guarded shards).

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "actors/protocol/cart_messages.hpp"

namespace mercato::http {

struct product_line_info {
  protocol::cart_line line;    // product_id, sku, name, unit_price (quantity 0)
  std::int32_t available = 0;  // units on hand and not reserved, at the time of the read
};

class product_lines {
 public:
  explicit product_lines(std::chrono::milliseconds ttl = std::chrono::milliseconds(1000),
                         std::size_t max_entries = 100'000);

  // A fresh entry: outer nullopt = not known (load it); inner nullopt = the product is unknown or no
  // longer sold.
  std::optional<std::optional<product_line_info>> find(const std::string& product_id);

  // Read before loading from PostgreSQL; pass it to store.
  std::uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  // Keeps what a load read, unless something was invalidated since `generation_before_load`.
  void store(const std::string& product_id, std::optional<product_line_info> info,
             std::uint64_t generation_before_load);

  void invalidate(const std::string& product_id);
  void clear();

  struct counters {
    std::uint64_t hits = 0, misses = 0, stores = 0, stale_loads_dropped = 0, invalidations = 0;
  };
  counters stats() const;

 private:
  struct entry {
    std::optional<product_line_info> info;
    std::chrono::steady_clock::time_point expires;
  };
  struct shard {
    std::mutex mutex;
    std::unordered_map<std::string, entry> entries;
  };
  static constexpr std::size_t shard_count = 16;
  shard& shard_of(const std::string& id);

  std::chrono::milliseconds ttl_;
  std::size_t max_per_shard_;
  std::array<shard, shard_count> shards_;
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<std::uint64_t> hits_{0}, misses_{0}, stores_{0}, stale_{0}, invalidations_{0};
};

}  // namespace mercato::http
