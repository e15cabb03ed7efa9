#include "http/product_lines.hpp"

#include <algorithm>
#include <functional>
#include <iterator>

namespace mercato::http {

product_lines::product_lines(std::chrono::milliseconds ttl, std::size_t max_entries)
    : ttl_(ttl), max_per_shard_(std::max<std::size_t>(1, max_entries / shard_count)) {}

product_lines::shard& product_lines::shard_of(const std::string& id) {
  return shards_[std::hash<std::string>{}(id) % shard_count];
}

std::optional<std::optional<product_line_info>> product_lines::find(const std::string& product_id) {
  auto& s = shard_of(product_id);
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    auto it = s.entries.find(product_id);
    if (it != s.entries.end()) {
      if (it->second.expires > now) {
        hits_.fetch_add(1, std::memory_order_relaxed);
        return it->second.info;
      }
      s.entries.erase(it);
    }
  }
  misses_.fetch_add(1, std::memory_order_relaxed);
  return std::nullopt;
}

void product_lines::store(const std::string& product_id, std::optional<product_line_info> info,
                          std::uint64_t generation_before_load) {
  if (ttl_.count() <= 0) {
    return;  // caching off
  }
  auto& s = shard_of(product_id);
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(s.mutex);
  // Checked under the shard's lock: invalidate() bumps the generation before it takes this lock, so a
  // drop that raced with the load is seen here or removes the entry after it was stored.
  if (generation_.load(std::memory_order_acquire) != generation_before_load) {
    stale_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (s.entries.size() >= max_per_shard_ && s.entries.find(product_id) == s.entries.end()) {
    for (auto it = s.entries.begin(); it != s.entries.end();) {
      it = it->second.expires <= now ? s.entries.erase(it) : std::next(it);
    }
    if (s.entries.size() >= max_per_shard_) {
      s.entries.clear();  // bounded, not clever: a shard full of live entries starts over
    }
  }
  s.entries[product_id] = entry{std::move(info), now + ttl_};
  stores_.fetch_add(1, std::memory_order_relaxed);
}

void product_lines::invalidate(const std::string& product_id) {
  generation_.fetch_add(1, std::memory_order_acq_rel);
  invalidations_.fetch_add(1, std::memory_order_relaxed);
  auto& s = shard_of(product_id);
  std::lock_guard<std::mutex> lock(s.mutex);
  s.entries.erase(product_id);
}

void product_lines::clear() {
  generation_.fetch_add(1, std::memory_order_acq_rel);
  invalidations_.fetch_add(1, std::memory_order_relaxed);
  for (auto& s : shards_) {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.entries.clear();
  }
}

product_lines::counters product_lines::stats() const {
  counters c;
  c.hits = hits_.load(std::memory_order_relaxed);
  c.misses = misses_.load(std::memory_order_relaxed);
  c.stores = stores_.load(std::memory_order_relaxed);
  c.stale_loads_dropped = stale_.load(std::memory_order_relaxed);
  c.invalidations = invalidations_.load(std::memory_order_relaxed);
  return c;
}

}  // namespace mercato::http
