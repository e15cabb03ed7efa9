#include "cluster/placement.hpp"

namespace mercato::cluster {
namespace {

std::uint64_t fnv1a(std::uint64_t h, std::string_view s) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// splitmix64's finaliser: FNV alone clusters weights of similar names.
std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

}  // namespace

std::uint64_t rendezvous_weight(std::string_view node, std::string_view kind, int shard) {
  std::uint64_t h = fnv1a(14695981039346656037ull, node);
  h = fnv1a(h ^ 0x2f, kind);
  h ^= static_cast<std::uint64_t>(static_cast<std::uint32_t>(shard)) * 0x9e3779b97f4a7c15ull;
  return mix(h);
}

std::string owner_of(std::string_view kind, int shard, const std::vector<std::string>& nodes) {
  const std::string* best = nullptr;
  std::uint64_t best_weight = 0;
  for (const auto& n : nodes) {
    const auto w = rendezvous_weight(n, kind, shard);
    if (!best || w > best_weight || (w == best_weight && n < *best)) {
      best = &n;
      best_weight = w;
    }
  }
  return best ? *best : std::string{};
}

}  // namespace mercato::cluster
