#pragma once
// The generic entity actor: activation from the last snapshot (messages that arrive meanwhile
// wait in the mailbox) or from the state its host kept when it was parked, one command at a time,
// durable acknowledgements, parking and passivation on request of its host, and crash reporting so
// the host can retry or drop a poison message.
//
// Memory: a live entity costs one CAF actor (~1.4 KB in CAF 0.17.6) plus what is below; everything
// per entity is kept free of eager allocations (no std::deque, which allocates ~600 B while empty).
//
// A Model supplies the kind's state and commands:
//   static constexpr const char* kind;
//   static constexpr int schema_version;
//   struct state;
//   static state empty(const std::string& id);
//   static state decode(const boost::json::value& v);        // any schema version it ever wrote
//   static boost::json::value encode(const state& s);         // current schema_version
//   static std::vector<persistence::projection_write> project(const std::string& id, const state& s,
//                                                             std::int64_t version);
//   static bool handle(entity_context<Model>& ctx, const caf::message& msg);  // false: not a command

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <caf/all.hpp>

#include "actors/protocol/atoms.hpp"
#include "actors/protocol/errors.hpp"
#include "persistence/pg_pool.hpp"
#include "persistence/snapshot_writer.hpp"
#include "supervisors/entity_env.hpp"
#include "supervisors/entity_host.hpp"
#include "supervisors/event_id.hpp"
#include "telemetry/logging.hpp"
#include "telemetry/metrics.hpp"

namespace mercato::supervisors {

template <class Model>
struct entity_data {
  std::string id;
  std::int64_t version = 0;  // last version handed to the writer
  typename Model::state state;
  struct pending {
    std::int64_t version;
    caf::response_promise promise;
    caf::message reply;
  };
  std::vector<pending> unacknowledged;  // oldest first; allocates nothing while empty
  std::shared_ptr<const entity_env> env;
  caf::actor host;  // receives crash reports and, when parking, the state
  bool passivating = false;
  bool parking = false;
  static inline const char* name = "mercato.entity";
};

template <class Model>
class entity_context {
 public:
  using state_type = typename Model::state;
  entity_context(caf::stateful_actor<entity_data<Model>>* self, const entity_env& env) : self_(self), env_(env) {}

  const state_type& state() const { return self_->state.state; }
  const std::string& id() const { return self_->state.id; }
  std::int64_t version() const { return self_->state.version; }
  bool exists() const { return self_->state.version > 0; }

  // Answers the current request now, without changing anything.
  template <class... Ts>
  caf::response_promise reply(Ts&&... xs) {
    auto rp = self_->make_response_promise();
    rp.deliver(std::forward<Ts>(xs)...);
    return rp;
  }

  caf::response_promise reject(protocol::errc code, std::string detail) {
    auto rp = self_->make_response_promise();
    rp.deliver(caf::make_error(code, std::move(detail)));
    return rp;
  }

  // Makes `next` the new state under version+1 and answers `make_reply(next, version)` once the
  // snapshot, its events and projections are committed. Nothing changes when the write queue is full.
  template <class ReplyFn>
  caf::response_promise commit(state_type next, std::vector<persistence::domain_event> events, ReplyFn make_reply) {
    auto& st = self_->state;
    auto rp = self_->make_response_promise();
    const std::int64_t v = st.version + 1;
    persistence::pending_write w;
    w.snap = persistence::snapshot{Model::kind, st.id, v, env_.epoch.load(std::memory_order_relaxed), shard_of(st.id, env_.shards),
                                   boost::json::serialize(Model::encode(next))};
    for (auto& e : events) {
      if (e.id.empty()) {
        e.id = new_event_id();
      }
    }
    w.events = std::move(events);
    w.projections = Model::project(st.id, next, v);
    w.done = [self = caf::actor_cast<caf::actor>(self_), v](persistence::write_outcome o) {
      caf::anon_send(self, protocol::written_atom::value, v, static_cast<std::int32_t>(o));
    };
    if (env_.writer->enqueue(std::move(w)) == persistence::write_outcome::overloaded) {
      rp.deliver(caf::make_error(protocol::errc::overloaded, "the write queue is full; retry shortly"));
      return rp;
    }
    st.version = v;
    st.state = std::move(next);
    st.unacknowledged.push_back({v, rp, caf::make_message(make_reply(st.state, v))});
    return rp;
  }

 private:
  caf::stateful_actor<entity_data<Model>>* self_;
  const entity_env& env_;
};

namespace detail {

inline caf::error from_outcome(persistence::write_outcome o) {
  switch (o) {
    case persistence::write_outcome::fenced:
      return caf::make_error(protocol::errc::fenced, "this node no longer owns the entity");
    case persistence::write_outcome::overloaded:
      return caf::make_error(protocol::errc::overloaded, "the write queue is full");
    case persistence::write_outcome::unavailable:
      return caf::make_error(protocol::errc::unavailable, "the database could not be reached in time");
    default:
      return caf::make_error(protocol::errc::unavailable, "the change could not be stored");
  }
}

}  // namespace detail

// Spawned by an entity host (which hears of its exit through an attached functor and stops it when
// the host ends). The host's first message says where the state comes from: (load_atom) reads the
// snapshot; (restore_atom, version, json) takes the committed state the host kept while the entity
// was parked. `host` receives crash reports and parked state.
template <class Model>
caf::behavior entity_actor(caf::stateful_actor<entity_data<Model>>* self, std::string id,
                           std::shared_ptr<const entity_env> env, caf::actor host) {
  self->state.id = std::move(id);
  self->state.env = std::move(env);
  self->state.host = std::move(host);
  self->set_default_handler(caf::skip);  // buffer commands until the state is there
  // Anything thrown outside a command (a runtime message) still counts as a crash for the host.
  self->set_exception_handler([](caf::scheduled_actor*, std::exception_ptr& ep) -> caf::error {
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      return caf::make_error(protocol::errc::crashed, e.what());
    } catch (...) {
      return caf::make_error(protocol::errc::crashed, "unknown exception");
    }
  });

  // Commands go through here, inside a try block: a handler that throws reports the message to
  // the host (which retries it on a fresh incarnation or drops it) and the entity stops.
  // (Captures only `self`, so the std::function holding it needs no allocation.)
  auto dispatch = [self](caf::scheduled_actor*, caf::message_view& view) -> caf::result<caf::message> {
    caf::message msg = view.move_content_to_message();
    try {
      if (msg.match_elements<protocol::fault_atom>()) {
        if (!self->state.env->limits.fault_injection) {
          return caf::make_error(protocol::errc::invalid, "fault injection is disabled");
        }
        throw std::runtime_error("injected fault");
      }
      entity_context<Model> ctx{self, *self->state.env};
      if (!Model::handle(ctx, msg)) {
        return caf::make_error(protocol::errc::invalid, std::string("not a ") + Model::kind + " command");
      }
      return caf::message{};
    } catch (const std::exception& e) {
      telemetry::log_error("entity handler threw", {{"kind", Model::kind}, {"id", self->state.id}, {"error", e.what()}});
      auto rp = self->make_response_promise();
      caf::anon_send(self->state.host, protocol::crashed_atom::value, self->state.id, msg, rp);
      self->quit(caf::make_error(protocol::errc::crashed, e.what()));
      return caf::message{};
    }
  };

  // Passivation and parking both wait until every write is acknowledged, so what the host keeps
  // (parking) or what the next activation reads (passivation) is the committed state.
  auto finish_passivation = [self] {
    auto& st = self->state;
    if (!(st.passivating || st.parking) || !st.unacknowledged.empty()) {
      return;
    }
    if (st.parking && !st.passivating) {
      // The state goes to the host before the exit hook reports the stop (same thread, FIFO).
      std::string json = st.version > 0 ? boost::json::serialize(Model::encode(st.state)) : std::string{};
      self->send(st.host, parked_atom::value, st.id, st.version, std::move(json));
    }
    self->quit();
  };

  auto running = caf::behavior{
      [self, finish_passivation](protocol::written_atom, std::int64_t version, std::int32_t outcome) {
        auto& st = self->state;
        const auto o = static_cast<persistence::write_outcome>(outcome);
        if (o == persistence::write_outcome::committed) {
          auto& q = st.unacknowledged;
          auto it = q.begin();
          for (; it != q.end() && it->version <= version; ++it) {
            it->promise.deliver(std::move(it->reply));
          }
          q.erase(q.begin(), it);
          if (q.empty() && q.capacity() > 8) {
            std::vector<typename entity_data<Model>::pending>{}.swap(q);  // a burst is over: give it back
          }
          finish_passivation();
          return;
        }
        // Memory is now ahead of what is durable: fail everything not yet acknowledged and stop,
        // so the next message reactivates from the last committed snapshot.
        auto err = detail::from_outcome(o);
        for (auto& p : st.unacknowledged) {
          p.promise.deliver(err);
        }
        std::vector<typename entity_data<Model>::pending>{}.swap(st.unacknowledged);
        telemetry::log_warn("entity stopped after a failed write",
                            {{"kind", Model::kind}, {"id", st.id}, {"version", version},
                             {"outcome", persistence::to_string(o)}});
        self->quit(err);
      },
      [self, finish_passivation](protocol::passivate_atom) {
        self->state.passivating = true;
        finish_passivation();
      },
      [self, finish_passivation](park_atom) {
        self->state.parking = true;
        finish_passivation();
      },
  };

  // Takes the committed state (version 0: none yet) and starts handling commands.
  auto start = [self, running, dispatch](std::int64_t version, const std::string& json) {
    auto& st = self->state;
    if (version > 0) {
      st.state = Model::decode(boost::json::parse(json));
      st.version = version;
    } else {
      st.state = Model::empty(st.id);
    }
    self->set_default_handler(dispatch);
    self->become(running);
  };

  return {
      // Activation: read the snapshot on the database pool, then switch to running.
      [self](load_atom) {
        auto me = caf::actor_cast<caf::actor>(self);
        const bool queued = self->state.env->pool->submit(
            [me, kind = std::string(Model::kind), id = self->state.id](pqxx::connection& conn) {
              auto snap = persistence::load_snapshot(conn, kind, id);
              if (snap) {
                caf::anon_send(me, protocol::loaded_atom::value, snap->version, snap->state_json);
              } else {
                caf::anon_send(me, protocol::loaded_atom::value, std::int64_t{0}, std::string{});
              }
            },
            [me](const persistence::db_error& err) {
              caf::anon_send(me, protocol::load_fail_atom::value, err.message);
            });
        if (!queued) {
          caf::anon_send(me, protocol::load_fail_atom::value, std::string("database pool queue is full"));
        }
      },
      // Unparking: the host kept the committed state; no database read (and not counted as an activation).
      [start](restore_atom, std::int64_t version, const std::string& json) { start(version, json); },
      [self, start](protocol::loaded_atom, std::int64_t version, const std::string& json) {
        start(version, json);
        if (self->state.env->metrics) {
          self->state.env->metrics->entity_activations(Model::kind).Increment();
        }
      },
      [self](protocol::load_fail_atom, const std::string& reason) {
        // Answer whatever waited for this activation, then stop; the next message tries again.
        telemetry::log_warn("entity activation failed", {{"kind", Model::kind}, {"id", self->state.id},
                                                         {"error", reason}});
        auto err = caf::make_error(protocol::errc::unavailable, "the entity could not be loaded: " + reason);
        self->set_default_handler([err](caf::scheduled_actor*, caf::message_view&) -> caf::result<caf::message> {
          return err;
        });
        self->become(caf::behavior{[self](protocol::passivate_atom) { self->quit(); },
                                   [self](park_atom) { self->quit(); }});
        caf::anon_send(caf::actor_cast<caf::actor>(self), protocol::passivate_atom::value);
      },
  };
}

template <class Model>
entity_spawner spawner_for() {
  return [](caf::event_based_actor* host, const std::string& id, std::shared_ptr<const entity_env> env) {
    // Neither linked nor monitored: CAF 0.17 removes a link with a linear search of the host's links,
    // which made passivating many entities quadratic, and a monitor would make the host keep an
    // address -> id map to tell which entity went down. An exit hook on the entity reports its own
    // id instead. The host stops its entities itself when it ends.
    auto host_handle = caf::actor_cast<caf::actor>(host);
    auto h = host->spawn(entity_actor<Model>, id, std::move(env), host_handle);
    caf::actor_cast<caf::abstract_actor*>(h)->attach_functor(
        [host_handle, id, aid = h.id()](const caf::error& reason, caf::execution_unit* eu) {
          host_handle->enqueue(nullptr, caf::make_message_id(), caf::make_message(gone_atom::value, aid, id, reason),
                               eu);
        });
    return h;
  };
}

}  // namespace mercato::supervisors
