#pragma once
// Registers everything an actor_system of mercato needs: message types, the error category.
// Every node calls this with the same block, so names agree on the wire.

#include <caf/actor_system_config.hpp>

namespace mercato::protocol {

void register_protocol(caf::actor_system_config& cfg);

}  // namespace mercato::protocol
