#pragma once
// The edge's way to an entity. A request for entity (kind, id) becomes a message to the kind's router
// with a finite timeout, sent by a short-lived bridge actor (CAF-0.17-NOTES: never a blocking receive,
// never one actor holding thousands of outstanding requests); the answer arrives on a CAF thread and
// goes to the caller's callback, which answers through the responder (it posts to the connection's
// strand). An io thread never waits on an actor. The bridge knows message types, not placement: the
// cluster issue puts another node behind the same router lookup.

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/expected.hpp>
#include <caf/message.hpp>

#include "actors/protocol/atoms.hpp"
#include "actors/protocol/meta.hpp"
#include "http/request.hpp"

namespace mercato::http {

class entity_bridge {
 public:
  using router_lookup = std::function<caf::actor(std::string_view kind)>;

  entity_bridge(caf::actor_system& system, router_lookup routers, std::chrono::milliseconds timeout)
      : system_(system), routers_(std::move(routers)), timeout_(timeout) {}

  // Sends `command` to entity `id` of `kind`; `done` gets the entity's Reply or its error (exactly
  // once, on a CAF thread).
  template <class Reply>
  void ask(std::string_view kind, std::string id, caf::message command,
           std::function<void(caf::expected<Reply>)> done) const {
    // The router travels as a spawn argument: CAF 0.17.6 dereferences a null argument tuple when a
    // function actor is spawned without arguments (UBSan reports it).
    system_.spawn(
        [id = std::move(id), command = std::move(command), timeout = timeout_, done = std::move(done)](
            caf::event_based_actor* self, caf::actor router) mutable {
          self->request(router, timeout, protocol::to_entity_atom::value, std::move(id), std::move(command))
              .then([done](Reply& r) { done(std::move(r)); }, [done](caf::error& e) { done(std::move(e)); });
        },
        routers_(kind));
  }

  std::chrono::milliseconds timeout() const { return timeout_; }

 private:
  caf::actor_system& system_;
  router_lookup routers_;
  std::chrono::milliseconds timeout_;
};

// The meta of a command the edge sends to an entity: the request's identity, who is asking (for the
// entity's admit check: user id, admin, the SHA-256 of a guest cart token), and the command id: a hash of
// the operation, the resource, the caller and the Idempotency-Key when there is one (a retry is applied
// once), else a fresh UUID. If-Match is the caller's to set (expected_version).
protocol::command_meta command_meta_for(const request_context& ctx, std::string_view operation,
                                        const std::string& resource_id);
// A new id (cart, command): a time-ordered version-7 UUID (persistence/uuid.hpp).
std::string new_uuid();

// What a client sees of an entity's error: the status and stable code of API.md, with Retry-After on
// every 503. A 503 whose body says "retry_safe": true may be retried with the same Idempotency-Key
// (the command id): the change is applied at most once.
response response_for(const caf::error& err);

}  // namespace mercato::http
