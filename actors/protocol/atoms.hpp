#pragma once
// Atoms of the entity runtime protocol (at most 10 characters each).

#include <caf/atom.hpp>

namespace mercato::protocol {

using to_entity_atom = caf::atom_constant<caf::atom("to_entity")>;   // (id, command) to a kind's router
using loaded_atom = caf::atom_constant<caf::atom("loaded")>;         // snapshot read finished
using load_fail_atom = caf::atom_constant<caf::atom("load_fail")>;   // snapshot read failed
using written_atom = caf::atom_constant<caf::atom("written")>;       // snapshot write outcome
using passivate_atom = caf::atom_constant<caf::atom("passivate")>;   // stop when idle
using idle_atom = caf::atom_constant<caf::atom("idle")>;             // host: passivate entities idle this long
using tick_atom = caf::atom_constant<caf::atom("tick")>;             // host: periodic idle scan
using crashed_atom = caf::atom_constant<caf::atom("crashed")>;       // entity -> host: my handler threw
using retry_atom = caf::atom_constant<caf::atom("retry")>;           // host: backoff elapsed
using restart_atom = caf::atom_constant<caf::atom("restart")>;       // router: restart a host
using fault_atom = caf::atom_constant<caf::atom("fault")>;           // tests: make the entity throw
using stats_atom = caf::atom_constant<caf::atom("stats")>;           // host/router: counters

}  // namespace mercato::protocol
