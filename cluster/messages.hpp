#pragma once
// What nodes say to each other (through the CAF middleman) and what the coordinator says to a kind's
// front door. Atom names and type names travel on the wire: renaming one is a wire break.

#include <cstdint>
#include <string>
#include <vector>

#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <caf/meta/type_name.hpp>

#include "persistence/outbox_dispatcher.hpp"

namespace mercato::persistence {

// Committed domain events relayed to the other nodes' live-update hubs and catalog caches.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, outbox_event& x) {
  return f(caf::meta::type_name("mercato.outbox_event"), x.seq, x.id, x.aggregate_kind, x.aggregate_id, x.event_type,
           x.event_version, x.occurred_at, x.data_json, x.metadata_json);
}

}  // namespace mercato::persistence

namespace mercato::cluster {

// Front door or gateway: (forward_atom, [kind,] id, command, uint32 hops) -> the entity's answer.
// Between nodes the kind travels too; `hops` counts node-to-node forwards, so a message cannot
// bounce between nodes whose views of the leases disagree for a moment.
using forward_atom = caf::atom_constant<caf::atom("cl_fwd")>;
// Gateway: (relay_atom, std::vector<outbox_event>): committed events for this node's subscribers.
using relay_atom = caf::atom_constant<caf::atom("cl_relay")>;
// Coordinator -> front: (place_atom, int32 shard, int8 placement, actor gateway): where the shard is served.
using place_atom = caf::atom_constant<caf::atom("cl_place")>;
// Coordinator -> front: (handoff_atom, int32 shard) -> uint64: stop serving the shard here, flush and
// stop its entities, hold what arrives for it; answered once its last entity is gone.
using handoff_atom = caf::atom_constant<caf::atom("cl_handoff")>;
using sweep_atom = caf::atom_constant<caf::atom("cl_sweep")>;
// Gateway: (ping_atom, uint64) -> uint64: the same number back (the coordinator's remote round trip).
using ping_atom = caf::atom_constant<caf::atom("cl_ping")>;
// Gateway: (hello_atom, std::string node_id, actor gateway): the node that opened the connection to this
// node introduces its own gateway over it. Only one of two nodes connects (the one with the smaller id):
// when both connect to each other at the same moment, CAF 0.17's BASP ends up with two connections whose
// handshakes crossed, and the peer's proxies die (over TLS every time; see docs/architecture.md). Sent
// again every heartbeat, so it is idempotent.
using hello_atom = caf::atom_constant<caf::atom("cl_hello")>;

enum class placement : std::int8_t {
  pending = 0,  // no live owner known: hold messages
  local = 1,    // this node holds the lease
  remote = 2,   // another node holds it: forward to its gateway
};

void register_types(caf::actor_system_config& cfg);

}  // namespace mercato::cluster
