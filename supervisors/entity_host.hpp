#pragma once
// An entity host owns the live entities of one kind (a share of them, when a kind has several
// hosts): (kind, id) -> actor. It activates on the first message (exactly once, since the host
// handles one message at a time), passivates idle entities, restarts crashed ones from their last
// snapshot with exponential backoff, drops a message that crashes an entity K times with
// entity_failed, and escalates (quits with restart_limit) past N restarts within T.
//
// Parking: an entity quiet for limits.park_after (and with every write acknowledged) sends its
// committed (version, state) to the host and stops; the host keeps that compact copy, and the next
// message re-creates the actor from it without a database read. A live CAF actor costs ~1.4 KB, a
// parked entity a few hundred bytes, which is what keeps a node with a million active carts small.
// Passivation of a parked entity just drops the copy; losing the host loses only committed state,
// which is reloaded from PostgreSQL.
//
// Entities are neither linked nor monitored (CAF 0.17 removes links with a linear search): an exit
// hook attached at spawn sends the host (gone_atom, actor id, entity id, reason).

#include <functional>
#include <memory>
#include <string>

#include <caf/all.hpp>

#include "supervisors/entity_env.hpp"

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(caf::response_promise)  // crash reports stay on the node

namespace mercato::supervisors {

// Spawns one entity actor for `id`, monitored by `host`.
using entity_spawner =
    std::function<caf::actor(caf::event_based_actor* host, const std::string& id, std::shared_ptr<const entity_env>)>;

// Host protocol:
//   (to_entity_atom, std::string id, caf::message command) -> whatever the entity answers
//   (idle_atom, caf::timespan)  passivate entities idle at least that long (tests, operators)
//   (stats_atom) -> (active: uint64, buffered: uint64)
//   (stats_atom, parked_atom) -> (active incl. parked, parked, re-creations from a parked copy)
// `supervisor` (the router; may be null) hears (stopping_atom, "") when the host escalates and answers
// (release_atom) once it forwards nothing more, so no command reaches the host after it stopped.
caf::behavior entity_host(caf::event_based_actor* self, std::shared_ptr<const entity_env> env, entity_spawner spawn,
                          caf::actor supervisor);

}  // namespace mercato::supervisors
