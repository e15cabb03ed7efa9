#pragma once
// Shard placement: which node should own a shard, by rendezvous (highest random weight) hashing over
// the live nodes. Every node computes the same answer from the same member list, and a node joining
// or leaving moves only the shards that now rank it first (or ranked it first): about 1/N of them.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mercato::cluster {

// The weight of `node` for shard (kind, shard): a 64-bit mix of the three, stable across builds.
std::uint64_t rendezvous_weight(std::string_view node, std::string_view kind, int shard);

// The node with the highest weight ("" when `nodes` is empty). Ties (never seen in practice) go to the
// smaller id, so every node still agrees.
std::string owner_of(std::string_view kind, int shard, const std::vector<std::string>& nodes);

}  // namespace mercato::cluster
