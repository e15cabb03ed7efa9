#include "cluster/shard_front.hpp"

#include <map>
#include <vector>

#include "actors/protocol/atoms.hpp"
#include "actors/protocol/errors.hpp"
#include "cluster/cluster_metrics.hpp"
#include "cluster/messages.hpp"

namespace mercato::cluster {
namespace {

using clock = std::chrono::steady_clock;

struct held_message {
  std::string id;
  caf::message command;
  caf::response_promise promise;
  std::uint32_t hops;
  clock::time_point since;
};

struct shard_route {
  placement where = placement::pending;
  caf::actor gateway;                // remote: the owner's gateway
  std::vector<held_message> held;    // pending (or local past its lease): waiting for an owner
};

struct front_state {
  std::shared_ptr<const supervisors::entity_env> env;
  caf::actor local;
  front_options opts;
  std::vector<shard_route> routes;
  std::size_t held = 0;
  // Commands in flight at each peer's gateway: answered here if that node goes down, since CAF answers
  // nothing for a request whose remote receiver died with the connection (the edge would wait out its
  // deadline, 8 s, for every command in flight when a node was killed).
  std::map<caf::actor_addr, std::map<std::uint64_t, caf::response_promise>> in_flight;  // by forward number
  std::uint64_t next_forward = 0;
  prometheus::Counter* forwarded = nullptr;
  prometheus::Counter* expired = nullptr;
};

}  // namespace

caf::behavior shard_front(caf::event_based_actor* self, std::shared_ptr<const supervisors::entity_env> env,
                          caf::actor local_router, front_options opts, cluster_metrics* metrics) {
  auto st = std::make_shared<front_state>();
  st->env = env;
  st->local = std::move(local_router);
  st->opts = opts;
  st->routes.resize(static_cast<std::size_t>(env->shards));
  if (metrics) {
    st->forwarded = &metrics->forwarded.Add({{"kind", env->kind}});
    st->expired = &metrics->held_expired.Add({{"kind", env->kind}});
  }

  // Forwards a command to a peer's gateway. The answer comes back through here: a reply of any type
  // reaches a handler that takes only errors as CAF's unexpected_response, with the reply as its context.
  auto forward = [self, st](const caf::actor& gateway, std::string& id, caf::message& command,
                            caf::response_promise& rp, std::uint32_t hops) {
    const auto n = ++st->next_forward;
    const auto to = gateway.address();
    st->in_flight[to].emplace(n, rp);
    self->request(gateway, caf::infinite, forward_atom::value, st->env->kind, std::move(id), std::move(command), hops)
        .then([st, to, n](caf::error& answer) {
          auto peer = st->in_flight.find(to);
          if (peer == st->in_flight.end()) {
            return;  // answered already: the node went down
          }
          auto it = peer->second.find(n);
          if (it == peer->second.end()) {
            return;
          }
          auto promise = std::move(it->second);
          peer->second.erase(it);
          if (peer->second.empty()) {
            st->in_flight.erase(peer);
          }
          if (answer == caf::sec::unexpected_response) {
            promise.deliver(std::move(answer.context()));
          } else {
            promise.deliver(std::move(answer));
          }
        });
  };

  // Sends one message where its shard is served now; false when it has to wait.
  auto dispatch = [st, forward](int shard, std::string& id, caf::message& command, caf::response_promise& rp,
                                std::uint32_t hops) {
    auto& r = st->routes[static_cast<std::size_t>(shard)];
    if (r.where == placement::local && st->env->serving(shard)) {
      rp.delegate(st->local, protocol::to_entity_atom::value, std::move(id), std::move(command));
      return true;
    }
    if (r.where == placement::remote && r.gateway && hops < st->opts.max_hops) {
      if (st->forwarded) {
        st->forwarded->Increment();
      }
      forward(r.gateway, id, command, rp, hops + 1);
      return true;
    }
    return false;
  };

  auto route = [st, dispatch](std::string& id, caf::message& command, caf::response_promise rp, std::uint32_t hops) {
    const int shard = supervisors::shard_of(id, st->env->shards);
    if (dispatch(shard, id, command, rp, hops)) {
      return;
    }
    if (st->held >= st->opts.max_held) {
      rp.deliver(caf::make_error(protocol::errc::unavailable,
                                 "the entity's shard is moving between nodes; retry with the same command id"));
      return;
    }
    st->routes[static_cast<std::size_t>(shard)].held.push_back(
        {std::move(id), std::move(command), std::move(rp), hops, clock::now()});
    ++st->held;
  };

  // Sends on what a shard held, now that it has a place (what still cannot go stays, in order).
  auto flush = [st, dispatch](int shard) {
    auto& r = st->routes[static_cast<std::size_t>(shard)];
    if (r.held.empty()) {
      return;
    }
    auto waiting = std::move(r.held);
    r.held.clear();
    for (auto& h : waiting) {
      if (dispatch(shard, h.id, h.command, h.promise, h.hops)) {
        --st->held;
      } else {
        r.held.push_back(std::move(h));
      }
    }
  };

  // A node's connection dropped: its gateway proxy is dead; hold its shards' messages until the
  // coordinator places them again.
  self->set_down_handler([st](caf::down_msg& dm) {
    for (auto& r : st->routes) {
      if (r.gateway && r.gateway.address() == dm.source) {
        r.where = placement::pending;
        r.gateway = caf::actor{};
      }
    }
    // What was in flight there gets no answer: say so now. The node may have applied a command before
    // it went down, so the outcome is unknown; a retry with the same command id applies it once.
    if (auto peer = st->in_flight.find(dm.source); peer != st->in_flight.end()) {
      auto lost = std::move(peer->second);
      st->in_flight.erase(peer);
      for (auto& [n, promise] : lost) {
        promise.deliver(caf::make_error(protocol::errc::outcome_unknown,
                                        "the node serving this entity went down; retry with the same command id"));
      }
    }
  });

  // Shutdown: whatever is held is answered now.
  self->set_exit_handler([self, st](caf::exit_msg& em) {
    auto err = caf::make_error(protocol::errc::shutting_down, "the node is stopping");
    for (auto& r : st->routes) {
      for (auto& h : r.held) {
        h.promise.deliver(err);
      }
      r.held.clear();
    }
    st->held = 0;
    for (auto& [to, commands] : st->in_flight) {
      for (auto& [n, promise] : commands) {
        promise.deliver(err);
      }
    }
    st->in_flight.clear();
    self->quit(em.reason);
  });

  // Anything else (stats, idle scans) is for the entities of this node.
  self->set_default_handler([self, st](caf::scheduled_actor*, caf::message_view& view) -> caf::result<caf::message> {
    auto rp = self->make_response_promise();
    rp.delegate(st->local, view.move_content_to_message());
    return caf::message{};
  });

  constexpr auto sweep_every = std::chrono::milliseconds(250);
  self->delayed_send(self, sweep_every, sweep_atom::value);

  return {
      [self, route](protocol::to_entity_atom, std::string& id, caf::message& command) {
        auto rp = self->make_response_promise();
        route(id, command, rp, 0);
        return rp;
      },
      [self, route](forward_atom, std::string& id, caf::message& command, std::uint32_t hops) {
        auto rp = self->make_response_promise();
        route(id, command, rp, hops);
        return rp;
      },
      [self, st, flush](place_atom, std::int32_t shard, std::int8_t where, caf::actor gateway) {
        if (shard < 0 || shard >= st->env->shards) {
          return;
        }
        auto& r = st->routes[static_cast<std::size_t>(shard)];
        r.where = static_cast<placement>(where);
        if (r.where == placement::remote && gateway && gateway != r.gateway) {
          self->monitor(gateway);
        }
        r.gateway = r.where == placement::remote ? std::move(gateway) : caf::actor{};
        flush(shard);
      },
      [self, st](handoff_atom, std::int32_t shard) {
        auto rp = self->make_response_promise<std::uint64_t>();
        if (shard < 0 || shard >= st->env->shards) {
          rp.deliver(caf::make_error(protocol::errc::invalid, "no such shard"));
          return rp;
        }
        st->routes[static_cast<std::size_t>(shard)].where = placement::pending;
        self->request(st->local, std::chrono::seconds(60), supervisors::drop_shard_atom::value, shard)
            .then([rp](std::uint64_t n) mutable { rp.deliver(n); },
                  [rp](caf::error& e) mutable { rp.deliver(std::move(e)); });
        return rp;
      },
      [self, st, flush, sweep_every](sweep_atom) {
        // Held messages go on once their shard is served again (a local lease renewed after a lapse),
        // and are answered unavailable once held too long.
        const auto cutoff = clock::now() - st->opts.hold_timeout;
        for (std::size_t i = 0; i < st->routes.size(); ++i) {
          auto& r = st->routes[i];
          if (!r.held.empty() && r.where != placement::pending) {
            flush(static_cast<int>(i));
          }
          if (r.held.empty() || r.held.front().since > cutoff) {
            continue;
          }
          std::vector<held_message> keep;
          for (auto& h : r.held) {
            if (h.since > cutoff) {
              keep.push_back(std::move(h));
              continue;
            }
            --st->held;
            if (st->expired) {
              st->expired->Increment();
            }
            h.promise.deliver(caf::make_error(protocol::errc::unavailable,
                                              "no node serves this entity right now; retry with the same command id"));
          }
          r.held = std::move(keep);
        }
        self->delayed_send(self, sweep_every, sweep_atom::value);
      },
  };
}

}  // namespace mercato::cluster
