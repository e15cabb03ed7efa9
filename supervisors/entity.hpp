#pragma once
// The generic entity actor: activation from the last snapshot (messages that arrive meanwhile wait
// in the mailbox) or from the state its host kept when it was parked, one command at a time, durable
// acknowledgements, parking and passivation on request of its host, and crash reporting so the host
// can retry or drop a poison message. The entity kind (Model) plugs in through
// protocol::entity_context (actors/protocol/entity_context.hpp lists what a Model supplies).
//
// What a caller can rely on:
// - "done" only for what is committed: a change is answered once its snapshot, events and projection
//   rows are committed; every answer (replies and rejections too) waits behind the writes accepted
//   before it, so nobody ever sees a version that is not stored, and a version number always means
//   the same content.
// - "failed" only for what is not stored: a write is a compare-and-set on the version it was built
//   on; when one fails, every write stacked on it fails too, the entity stops and the next message
//   reloads the last committed snapshot. A write whose COMMIT outcome could not be learnt answers
//   outcome_unknown (the reload finds the truth).
// - a command id is applied once: the last `recent_commands_kept` ids are stored with the snapshot,
//   and a command that carries one of them is answered with the current state instead.
// - no reply is dropped: on a failed write, a crash or a stop, everything pending is answered at
//   once (innocent commands behind a failed write run again on the reloaded state).
//
// Memory: a live entity costs one CAF actor (~1.4 KB in CAF 0.17.6) plus what is below; everything
// per entity is kept free of eager allocations (no std::deque, which allocates ~600 B while empty).

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <caf/all.hpp>

#include "actors/protocol/atoms.hpp"
#include "actors/protocol/entity_context.hpp"
#include "actors/protocol/errors.hpp"
#include "persistence/pg_pool.hpp"
#include "persistence/snapshot_writer.hpp"
#include "supervisors/entity_env.hpp"
#include "supervisors/entity_host.hpp"
#include "telemetry/logging.hpp"
#include "telemetry/metrics.hpp"

namespace mercato::supervisors {

inline constexpr std::size_t recent_commands_kept = 8;

// "a b c" <-> {"a","b","c"}: the stored form of the applied command ids.
std::vector<std::string> split_commands(const std::string& joined);
std::string join_commands(const std::vector<std::string>& ids);
// A command id the runtime can store: 1..64 printable ASCII characters, no spaces.
bool storable_command_id(const std::string& id);

template <class Model>
struct entity_data {
  std::string id;
  std::int64_t version = 0;  // the version `state` has (the last one handed to the writer)
  typename Model::state state;
  std::vector<std::string> recent;  // command ids applied, oldest first (uncommitted ones included)
  // Answers waiting for a commit, in order: a write's own answer, or an answer (reply or rejection)
  // given while writes were pending, which is released with the version it saw.
  struct pending {
    std::int64_t version;
    caf::response_promise promise;
    caf::message answer;
    caf::error refusal;    // set: the answer is this error
    caf::message command;  // set for answers that are not writes: run again after a reload
  };
  std::vector<pending> unacknowledged;  // allocates nothing while empty
  std::uint32_t in_writer = 0;          // writes whose outcome has not arrived
  std::shared_ptr<const entity_env> env;
  caf::actor host;  // receives crash reports, requeued commands and, when parking, the state
  caf::error stop_reason;  // draining: the reason to stop with
  bool passivating = false;
  bool parking = false;
  bool draining = false;       // stopping after a failed write or a crash
  bool host_released = false;  // draining: the host forwards nothing more
  static inline const char* name = "mercato.entity";
};

namespace detail {

inline caf::error from_outcome(persistence::write_outcome o) {
  switch (o) {
    case persistence::write_outcome::fenced:
      return caf::make_error(protocol::errc::fenced, "the entity changed elsewhere or this node no longer owns it");
    case persistence::write_outcome::overloaded:
      return caf::make_error(protocol::errc::overloaded, "the write queue is full");
    case persistence::write_outcome::unavailable:
      return caf::make_error(protocol::errc::unavailable, "the database could not be reached in time");
    case persistence::write_outcome::outcome_unknown:
      return caf::make_error(protocol::errc::outcome_unknown,
                             "the database did not confirm the change in time; retry with the same command id");
    default:
      return caf::make_error(protocol::errc::unavailable, "the change could not be stored");
  }
}

inline caf::error restarting_error(const char* why) { return caf::make_error(protocol::errc::entity_restarting, why); }

template <class Model>
void answer(typename entity_data<Model>::pending& p) {
  if (p.refusal) {
    p.promise.deliver(std::move(p.refusal));
  } else {
    p.promise.deliver(std::move(p.answer));
  }
}

}  // namespace detail

template <class Model>
class entity_context_impl final : public protocol::entity_context<typename Model::state> {
 public:
  using state_type = typename Model::state;
  entity_context_impl(caf::stateful_actor<entity_data<Model>>* self, const caf::message& command,
                      const protocol::command_meta* meta)
      : self_(self), command_(command), meta_(meta) {}

  const std::string& id() const override { return self_->state.id; }
  const state_type& state() const override { return self_->state.state; }
  std::int64_t version() const override { return self_->state.version; }

  void reply(caf::message answer) override { respond(std::move(answer), caf::error{}); }

  void reject(protocol::errc code, std::string detail) override {
    respond(caf::message{}, caf::make_error(code, std::move(detail)));
  }

  // Refuses with a ready error (the runtime's own checks).
  void refuse(caf::error err) { respond(caf::message{}, std::move(err)); }

  void commit(state_type next, std::vector<protocol::domain_event> events, caf::message answer) override {
    auto& st = self_->state;
    const auto& env = *st.env;
    auto rp = self_->make_response_promise();
    const std::int64_t v = st.version + 1;
    // The applied command ids this version stores: the kept ones plus this command's (the list itself
    // changes only once the write is queued).
    const bool remember = meta_ && storable_command_id(meta_->command_id);
    std::string recent_joined;
    {
      const std::size_t skip = remember && st.recent.size() >= recent_commands_kept ? 1 : 0;
      for (std::size_t i = skip; i < st.recent.size(); ++i) {
        recent_joined += st.recent[i];
        recent_joined.push_back(' ');
      }
      if (remember) {
        recent_joined += meta_->command_id;
      } else if (!recent_joined.empty()) {
        recent_joined.pop_back();
      }
    }
    persistence::pending_write w;
    w.snap.kind = Model::kind;
    w.snap.id = st.id;
    w.snap.version = v;
    w.snap.base_version = st.version;
    w.snap.shard = shard_of(st.id, env.shards);
    w.snap.owner_epoch = env.epoch_of(w.snap.shard);
    w.snap.state_json = protocol::encode_state<Model>(next);
    w.snap.recent_commands = std::move(recent_joined);
    w.events = std::move(events);
    w.projections = Model::project(st.id, next, v);
    w.done = [self = caf::actor_cast<caf::actor>(self_), v](persistence::write_outcome o) {
      caf::anon_send(self, protocol::written_atom::value, v, static_cast<std::int32_t>(o));
    };
    if (env.writer->enqueue(std::move(w)) == persistence::write_outcome::overloaded) {
      rp.deliver(caf::make_error(protocol::errc::overloaded, "the write queue is full; retry shortly"));
      return;
    }
    ++st.in_writer;
    st.version = v;
    st.state = std::move(next);
    if (remember) {
      if (st.recent.size() >= recent_commands_kept) {
        st.recent.erase(st.recent.begin());
      }
      st.recent.push_back(meta_->command_id);
    }
    st.unacknowledged.push_back({v, std::move(rp), std::move(answer), caf::error{}, caf::message{}});
  }

 private:
  // Now if nothing is being written, else once what is being written now is committed.
  void respond(caf::message answer, caf::error refusal) {
    auto& st = self_->state;
    auto rp = self_->make_response_promise();
    if (st.unacknowledged.empty()) {
      if (refusal) {
        rp.deliver(std::move(refusal));
      } else {
        rp.deliver(std::move(answer));
      }
      return;
    }
    st.unacknowledged.push_back({st.version, std::move(rp), std::move(answer), std::move(refusal), command_});
  }

  caf::stateful_actor<entity_data<Model>>* self_;
  const caf::message& command_;
  const protocol::command_meta* meta_;
};

// Spawned by an entity host (which hears of its exit through an attached functor and stops it when
// the host ends). The host's first message says where the state comes from: (load_atom) reads the
// snapshot; (restore_atom, version, json, recent command ids) takes the committed state the host
// kept while the entity was parked. `host` receives crash reports, requeued commands and parked state.
template <class Model>
caf::behavior entity_actor(caf::stateful_actor<entity_data<Model>>* self, std::string id,
                           std::shared_ptr<const entity_env> env, caf::actor host) {
  using pending_list = std::vector<typename entity_data<Model>::pending>;
  self->state.id = std::move(id);
  self->state.env = std::move(env);
  self->state.host = std::move(host);
  self->set_default_handler(caf::skip);  // buffer commands until the state is there

  // Answers everything pending with `err` (writes may still commit: the errors used here all say a
  // retry with the same command id is safe).
  auto fail_pending = [self](const caf::error& err) {
    for (auto& p : self->state.unacknowledged) {
      p.promise.deliver(err);
    }
    pending_list{}.swap(self->state.unacknowledged);
  };

  // Anything thrown outside a command (a runtime message) still counts as a crash for the host.
  self->set_exception_handler([fail_pending](caf::scheduled_actor*, std::exception_ptr& ep) -> caf::error {
    fail_pending(detail::restarting_error("the entity crashed; retry with the same command id"));
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      return caf::make_error(protocol::errc::crashed, e.what());
    } catch (...) {
      return caf::make_error(protocol::errc::crashed, "unknown exception");
    }
  });

  // The host (or the node) is stopping: answer what is pending and everything still in the mailbox,
  // then stop. A host that escalated stops with its own reason: its entities answer
  // entity_restarting; a shutdown answers shutting_down.
  self->set_exit_handler([self, fail_pending](caf::exit_msg& em) {
    const bool shutdown = em.reason == caf::exit_reason::user_shutdown || em.reason == caf::exit_reason::kill;
    auto err = shutdown ? caf::make_error(protocol::errc::shutting_down, "the node is stopping")
                        : detail::restarting_error("the entity's host is restarting; retry with the same command id");
    fail_pending(err);
    self->set_default_handler([err](caf::scheduled_actor*, caf::message_view&) -> caf::result<caf::message> {
      return err;
    });
    self->become(caf::behavior{[self, reason = em.reason](drained_atom) { self->quit(reason); }});
    self->send(self, drained_atom::value);
  });

  // Stopping after a failed write (`requeue`: commands that arrive meanwhile go back to the host and
  // run on the reloaded state) or a crash (they are answered entity_restarting). Stops once the host
  // has released it and every write handed to the writer has settled, so the next activation reads
  // what is finally stored.
  auto begin_drain = [self](caf::error reason, bool requeue) {
    auto& st = self->state;
    st.draining = true;
    st.stop_reason = std::move(reason);
    self->set_default_handler([self, requeue](caf::scheduled_actor*, caf::message_view& view) -> caf::result<caf::message> {
      auto msg = view.move_content_to_message();
      auto rp = self->make_response_promise();
      if (requeue) {
        self->send(self->state.host, requeue_atom::value, self->state.id, std::move(msg), std::move(rp));
      } else {
        rp.deliver(detail::restarting_error("the entity crashed; retry with the same command id"));
      }
      return caf::message{};
    });
    auto maybe_stop = [self] {
      if (self->state.host_released && self->state.in_writer == 0) {
        self->quit(self->state.stop_reason);
      }
    };
    self->become(caf::behavior{
        [self, maybe_stop](protocol::written_atom, std::int64_t, std::int32_t) {
          --self->state.in_writer;
          maybe_stop();
        },
        [self, maybe_stop](release_atom) {
          self->state.host_released = true;
          maybe_stop();
        },
        [](protocol::passivate_atom) {},
        [](park_atom) {},
    });
    self->send(st.host, stopping_atom::value, st.id);
  };

  // A write did not commit: everything stacked on it fails with it (the writer does not store them
  // either); answers that were waiting behind it are not writes and run again after the reload.
  auto write_failed = [self, begin_drain](persistence::write_outcome o, std::int64_t version) {
    auto& st = self->state;
    auto err = detail::from_outcome(o);
    for (auto& p : st.unacknowledged) {
      if (p.command.empty()) {
        p.promise.deliver(err);
      } else {
        self->send(st.host, requeue_atom::value, st.id, std::move(p.command), std::move(p.promise));
      }
    }
    pending_list{}.swap(st.unacknowledged);
    telemetry::log_warn("entity stopping after a failed write",
                        {{"kind", Model::kind}, {"id", st.id}, {"version", version},
                         {"outcome", persistence::to_string(o)}});
    begin_drain(err, true);
  };

  // Commands go through here, inside a try block: a handler that throws reports its message to the
  // host (which retries it on a fresh incarnation or drops it) and the entity stops.
  // (Captures only `self` and a small lambda, so the std::function needs no allocation.)
  auto dispatch = [self, begin_drain](caf::scheduled_actor*, caf::message_view& view) -> caf::result<caf::message> {
    caf::message msg = view.move_content_to_message();
    auto& st = self->state;
    try {
      if (msg.match_elements<protocol::fault_atom>()) {
        if (!st.env->limits.fault_injection) {
          return caf::make_error(protocol::errc::invalid, "fault injection is disabled");
        }
        throw std::runtime_error("injected fault");
      }
      const protocol::command_meta* meta = Model::meta_of(msg);
      entity_context_impl<Model> ctx{self, msg, meta};
      if (meta) {
        if (auto refusal = Model::admit(st.state, st.version, msg, *meta)) {
          ctx.refuse(std::move(refusal));
          return caf::message{};
        }
        if (!meta->command_id.empty() &&
            std::find(st.recent.begin(), st.recent.end(), meta->command_id) != st.recent.end()) {
          ctx.reply(Model::current(st.id, st.state, st.version));  // applied already: not again
          return caf::message{};
        }
        if (meta->expected_version > 0 && meta->expected_version != st.version) {
          ctx.reject(protocol::errc::precondition_failed,
                     "the version is " + std::to_string(st.version) + ", not " +
                         std::to_string(meta->expected_version));
          return caf::message{};
        }
      }
      if (!Model::handle(ctx, msg)) {
        return caf::make_error(protocol::errc::invalid, std::string("not a ") + Model::kind + " command");
      }
      return caf::message{};
    } catch (const std::exception& e) {
      telemetry::log_error("entity handler threw", {{"kind", Model::kind}, {"id", st.id}, {"error", e.what()}});
      for (auto& p : st.unacknowledged) {
        p.promise.deliver(detail::restarting_error("the entity crashed; retry with the same command id"));
      }
      pending_list{}.swap(st.unacknowledged);
      auto rp = self->make_response_promise();
      self->send(st.host, protocol::crashed_atom::value, st.id, std::move(msg), std::move(rp));
      begin_drain(caf::make_error(protocol::errc::crashed, e.what()), false);
      return caf::message{};
    }
  };

  // Passivation and parking both wait until every write is acknowledged, so what the host keeps
  // (parking) or what the next activation reads (passivation) is the committed state.
  auto finish_passivation = [self] {
    auto& st = self->state;
    if (!(st.passivating || st.parking) || !st.unacknowledged.empty() || st.in_writer > 0) {
      return;
    }
    if (st.parking && !st.passivating) {
      // The state goes to the host before the exit hook reports the stop (same thread, FIFO).
      std::string json = st.version > 0 ? protocol::encode_state<Model>(st.state) : std::string{};
      self->send(st.host, parked_atom::value, st.id, st.version, std::move(json), join_commands(st.recent));
    }
    self->quit();
  };

  auto running = caf::behavior{
      [self, finish_passivation, write_failed](protocol::written_atom, std::int64_t version, std::int32_t outcome) {
        auto& st = self->state;
        --st.in_writer;
        const auto o = static_cast<persistence::write_outcome>(outcome);
        if (o != persistence::write_outcome::committed) {
          write_failed(o, version);
          return;
        }
        auto& q = st.unacknowledged;
        auto it = q.begin();
        for (; it != q.end() && it->version <= version; ++it) {
          detail::answer<Model>(*it);
        }
        q.erase(q.begin(), it);
        if (q.empty() && q.capacity() > 8) {
          pending_list{}.swap(q);  // a burst is over: give it back
        }
        finish_passivation();
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
  auto start = [self, running, dispatch](std::int64_t version, const std::string& json, const std::string& recent) {
    auto& st = self->state;
    if (version > 0) {
      st.state = Model::decode(boost::json::parse(json));
      st.version = version;
      st.recent = split_commands(recent);
    } else {
      st.state = Model::empty(st.id);
    }
    self->set_default_handler(dispatch);
    self->become(running);
  };

  return {
      // Activation: read the snapshot on the database pool, then switch to running.
      // The read waits until writes of an earlier incarnation still in the writer have settled (a host
      // that stopped does not wait for its entities' writes), so it sees what they stored.
      [self](load_atom) {
        auto me = caf::actor_cast<caf::actor>(self);
        auto env = self->state.env;
        env->writer->after_pending(Model::kind, self->state.id, [me, env, id = self->state.id] {
          const bool queued = env->pool->submit(
              [me, kind = std::string(Model::kind), id](pqxx::connection& conn) {
                auto snap = persistence::load_snapshot(conn, kind, id);
                if (snap) {
                  caf::anon_send(me, protocol::loaded_atom::value, snap->version, snap->state_json,
                                 snap->recent_commands);
                } else {
                  caf::anon_send(me, protocol::loaded_atom::value, std::int64_t{0}, std::string{}, std::string{});
                }
              },
              [me](const persistence::db_error& err) {
                caf::anon_send(me, protocol::load_fail_atom::value, err.message);
              });
          if (!queued) {
            caf::anon_send(me, protocol::load_fail_atom::value, std::string("database pool queue is full"));
          }
        });
      },
      // Unparking: the host kept the committed state; no database read (and not counted as an activation).
      [start](restore_atom, std::int64_t version, const std::string& json, const std::string& recent) {
        start(version, json, recent);
      },
      [self, start](protocol::loaded_atom, std::int64_t version, const std::string& json, const std::string& recent) {
        start(version, json, recent);
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
