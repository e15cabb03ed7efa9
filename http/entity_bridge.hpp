#pragma once
// The edge's way to an entity. A request for entity (kind, id) becomes a message to the kind's router
// with a finite timeout, made by one of a few long-lived bridge actors (CAF-0.17-NOTES: never a blocking
// receive, never one actor holding thousands of outstanding requests: the pool spreads them, round robin);
// the answer arrives on a CAF thread and goes to the caller's callback, which answers through the
// responder (it posts to the connection's strand). An io thread never waits on an actor. The bridge knows
// message types, not placement: the cluster issue puts another node behind the same router lookup.
//
// The bridge used to spawn a short-lived actor per request. At the add-to-cart maximum (issue 14) its
// spawn, start-up and clean-up were a sixth of the CAF workers' time; a pooled actor takes a job as one
// message instead.
//
// The timeout is the bridge actor's own, not CAF's: a request with a finite timeout registers it with
// CAF's clock thread (a mutex, a wake-up of that thread, and a timeout message later), per request. A
// bridge actor instead keeps its jobs in start order; every job has the same timeout, so that is deadline
// order, and one timer at the oldest job's deadline ends whatever has not been answered by then with
// `sec::request_timeout` (issue 14: CAF's clock thread had 4.5 % of the node's samples at the add-to-cart
// maximum, 0.8 % after; bench/results.md, 2026-12-02 02:45). The request itself has no
// timeout: a reply that never comes (its node died with it) leaves CAF's small response handler behind
// on that bridge actor, while the caller has had its timeout.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/expected.hpp>
#include <caf/message.hpp>
#include <caf/sec.hpp>

#include "actors/protocol/atoms.hpp"
#include "actors/protocol/meta.hpp"
#include "http/request.hpp"

namespace mercato::http {

// One request of the edge, started on a bridge actor. Local only: it carries the caller's callback.
// Everything here runs on that bridge actor, so `ended` needs no lock.
class bridge_job {
 public:
  virtual ~bridge_job() = default;
  // Sends the request; its reply or error ends the job.
  virtual void start(caf::event_based_actor* self) = 0;
  // Ends the job with `sec::request_timeout` unless it has ended already.
  virtual void expire() = 0;
  bool ended() const { return ended_; }

 protected:
  bool ended_ = false;
};
using bridge_job_ptr = std::shared_ptr<bridge_job>;

}  // namespace mercato::http

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(mercato::http::bridge_job_ptr)

namespace mercato::http {

class entity_bridge {
 public:
  using router_lookup = std::function<caf::actor(std::string_view kind)>;

  // `actors` bridge actors (0: two per CAF scheduler thread).
  entity_bridge(caf::actor_system& system, router_lookup routers, std::chrono::milliseconds timeout,
                std::size_t actors = 0);
  ~entity_bridge();
  entity_bridge(const entity_bridge&) = delete;
  entity_bridge& operator=(const entity_bridge&) = delete;

  // Sends `command` to entity `id` of `kind`; `done` gets the entity's Reply or its error (exactly
  // once, on a CAF thread), unless the bridge is stopped first.
  template <class Reply>
  void ask(std::string_view kind, std::string id, caf::message command,
           std::function<void(caf::expected<Reply>)> done) const {
    submit(std::make_shared<ask_job<Reply>>(routers_(kind), std::move(id), std::move(command), std::move(done)));
  }

  // Ends the bridge actors (before the actor system waits for every actor). Requests still out are not
  // answered: call it once the HTTP server has stopped.
  void stop();

  std::chrono::milliseconds timeout() const { return timeout_; }

 private:
  template <class Reply>
  class ask_job final : public bridge_job, public std::enable_shared_from_this<ask_job<Reply>> {
   public:
    ask_job(caf::actor router, std::string id, caf::message command, std::function<void(caf::expected<Reply>)> done)
        : router_(std::move(router)), id_(std::move(id)), command_(std::move(command)), done_(std::move(done)) {}

    void start(caf::event_based_actor* self) override {
      auto me = this->shared_from_this();  // both handlers share the job (and its callback)
      self->request(router_, caf::infinite, protocol::to_entity_atom::value, std::move(id_), std::move(command_))
          .then([me](Reply& r) { me->finish(std::move(r)); }, [me](caf::error& e) { me->finish(std::move(e)); });
      router_ = caf::actor{};
    }
    void expire() override { finish(caf::make_error(caf::sec::request_timeout)); }

    void finish(caf::expected<Reply> r) {
      if (this->ended_) {
        return;  // answered already (a late reply after the timeout, or the timeout after the reply)
      }
      this->ended_ = true;
      auto done = std::move(done_);  // the callback's captures go with it, not with the job
      done_ = nullptr;
      done(std::move(r));
    }

   private:
    caf::actor router_;
    std::string id_;
    caf::message command_;
    std::function<void(caf::expected<Reply>)> done_;
  };

  void submit(bridge_job_ptr job) const;

  caf::actor_system& system_;
  router_lookup routers_;
  std::chrono::milliseconds timeout_;
  std::vector<caf::actor> actors_;
  mutable std::atomic<std::size_t> next_{0};
  std::atomic<bool> stopped_{false};
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
