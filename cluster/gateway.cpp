#include "cluster/gateway.hpp"

#include "actors/protocol/errors.hpp"
#include "cluster/messages.hpp"
#include "telemetry/logging.hpp"

namespace mercato::cluster {

caf::behavior gateway(caf::event_based_actor* self, std::shared_ptr<const gateway_hooks> hooks) {
  // Whatever else a peer sends is dropped (never answered with an error that could stop the sender).
  self->set_default_handler(caf::drop);
  return {
      [self, hooks](forward_atom, const std::string& kind, std::string& id, caf::message& command,
                    std::uint32_t hops) {
        auto rp = self->make_response_promise();
        auto front = hooks->front_of(kind);
        if (!front) {
          rp.deliver(caf::make_error(protocol::errc::invalid, "no entity kind " + kind));
          return rp;
        }
        rp.delegate(front, forward_atom::value, std::move(id), std::move(command), hops);
        return rp;
      },
      [](ping_atom, std::uint64_t n) { return n; },
      [hooks](hello_atom, const std::string& node_id, caf::actor& peer_gateway) {
        if (hooks->on_hello && peer_gateway) {
          hooks->on_hello(node_id, std::move(peer_gateway));
        }
      },
      [hooks](relay_atom, const std::vector<persistence::outbox_event>& events) {
        if (!hooks->on_relayed) {
          return;
        }
        try {
          hooks->on_relayed(events);
        } catch (const std::exception& e) {
          telemetry::log_warn("relayed events could not be applied", {{"error", e.what()}, {"events", events.size()}});
        }
      },
  };
}

void register_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<persistence::outbox_event>("mercato.outbox_event");
}

}  // namespace mercato::cluster
