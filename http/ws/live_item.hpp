#pragma once
// What a live-updates client subscribes to, as a small value: a topic and the 128 bits of the UUID of
// the product or order. Connections key their queues and version marks on it, so nothing per
// subscription holds a string.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace mercato::http::ws {

enum class topic : std::uint8_t { stock, price, orders };

const char* to_string(topic t);
std::optional<topic> topic_from(std::string_view name);

struct live_item {
  topic kind = topic::stock;
  std::uint64_t hi = 0;
  std::uint64_t lo = 0;

  // A canonical UUID (36 characters, any case); nullopt for anything else.
  static std::optional<live_item> from_uuid(topic kind, std::string_view uuid);
  std::string uuid() const;  // lower case, 8-4-4-4-12

  bool operator==(const live_item& o) const { return kind == o.kind && hi == o.hi && lo == o.lo; }
  bool operator!=(const live_item& o) const { return !(*this == o); }
};

struct live_item_hash {
  std::size_t operator()(const live_item& k) const noexcept {
    std::uint64_t h = k.hi * 0x9e3779b97f4a7c15ULL ^ (k.lo + 0x632be59bd9b4e019ULL + (k.hi << 6) + (k.hi >> 2));
    return static_cast<std::size_t>(h ^ (static_cast<std::uint64_t>(k.kind) << 61));
  }
};

// Where an item stands in its history: the entity version, then the outbox seq among events of one
// version (0 for a value read from a table, which is the version's final state).
struct item_position {
  std::int64_t version = 0;
  std::int64_t seq = 0;
};

// True when a message at `next` may follow one at `last` for the same item: a newer version, or a later
// event of the same write (one write may emit two changes of one item; the later one is its final state).
inline bool supersedes(const item_position& next, const item_position& last) {
  if (next.version != last.version) {
    return next.version > last.version;
  }
  return last.seq != 0 && next.seq > last.seq;
}

}  // namespace mercato::http::ws
