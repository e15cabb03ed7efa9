#pragma once
// The front door of one entity kind on a node, and the supervisor of its hosts. It spreads ids over
// several hosts (so a kind uses every scheduler thread), forwards each command to the right one,
// and restarts a host that escalated, holding that host's messages meanwhile. The node never goes
// down for one bad entity: past the host restart limit it keeps retrying at the maximum backoff.

#include <memory>

#include <caf/all.hpp>

#include "supervisors/entity_env.hpp"
#include "supervisors/entity_host.hpp"

namespace mercato::supervisors {

// Router protocol: (to_entity_atom, std::string id, caf::message command) -> the entity's answer;
// (idle_atom, caf::timespan) -> uint64 entities asked to passivate, summed over hosts;
// (stats_atom) -> (active, waiting) summed over hosts.
caf::behavior entity_router(caf::event_based_actor* self, std::shared_ptr<const entity_env> env,
                            entity_spawner spawn, int host_count);

}  // namespace mercato::supervisors
