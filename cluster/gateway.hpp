#pragma once
// A node's gateway: the one actor it publishes on its cluster port. Other nodes' front doors forward
// commands for entities this node owns to it ((forward_atom, kind, id, command, hops) -> the entity's
// answer, which goes straight back to the original caller), and the node running the outbox relays
// committed events through it to this node's live-update hub and catalog cache.

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <caf/all.hpp>

#include "persistence/outbox_dispatcher.hpp"

namespace mercato::cluster {

struct gateway_hooks {
  std::function<caf::actor(std::string_view kind)> front_of;  // null actor: no such kind
  std::function<void(const std::vector<persistence::outbox_event>&)> on_relayed;  // may be empty
  // A peer that connected to this node introduced its gateway (hello_atom); may be empty.
  std::function<void(const std::string& node_id, caf::actor gateway)> on_hello;
};

caf::behavior gateway(caf::event_based_actor* self, std::shared_ptr<const gateway_hooks> hooks);

}  // namespace mercato::cluster
