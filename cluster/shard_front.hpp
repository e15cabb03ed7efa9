#pragma once
// The front door of one entity kind on a node: every command for an entity of the kind arrives here
// (from the HTTP edge, a saga, housekeeping, or another node's gateway) and goes to where its shard is
// served: this node's entity router while this node holds the shard's lease (and it has not run out
// locally), else the gateway of the node that holds it. While nobody is known to hold it (a hand-off, a
// takeover after a node died) messages are held, then sent on; held too long, they are answered
// `unavailable` (retry-safe: the command id makes a retry apply once).
//
// Messages other than commands (stats, idle scans) go to the local router.

#include <chrono>
#include <cstdint>
#include <memory>

#include <caf/all.hpp>

#include "supervisors/entity_env.hpp"

namespace mercato::cluster {

struct cluster_metrics;

struct front_options {
  std::size_t max_held = 20'000;                  // held messages of the kind before new ones are refused
  std::chrono::milliseconds hold_timeout{10'000}; // a held message is answered unavailable after this
  std::uint32_t max_hops = 3;                     // node-to-node forwards before a message waits instead
};

caf::behavior shard_front(caf::event_based_actor* self, std::shared_ptr<const supervisors::entity_env> env,
                          caf::actor local_router, front_options opts, cluster_metrics* metrics);

}  // namespace mercato::cluster
