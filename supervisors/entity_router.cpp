#include "supervisors/entity_router.hpp"

#include <array>
#include <deque>
#include <vector>

#include "actors/protocol/atoms.hpp"
#include "actors/protocol/errors.hpp"
#include "telemetry/logging.hpp"

namespace mercato::supervisors {
namespace {

struct held {
  std::string id;
  caf::message command;
  caf::response_promise promise;
};

struct router_state {
  std::shared_ptr<const entity_env> env;
  entity_spawner spawn;
  std::vector<caf::actor> hosts;
  std::vector<caf::actor_addr> retiring;   // a host that escalated, until its down message
  std::vector<std::deque<held>> held_for;  // messages for a host that is restarting
  std::vector<int> restarts;               // consecutive restarts per host, for the backoff
};

std::size_t host_index(const std::string& id, std::size_t hosts) {
  // Any stable spread will do; shard_of already is one.
  return static_cast<std::size_t>(shard_of(id, 1 << 16)) % hosts;
}

}  // namespace

caf::behavior entity_router(caf::event_based_actor* self, std::shared_ptr<const entity_env> env,
                            entity_spawner spawn, int host_count) {
  auto st = std::make_shared<router_state>();
  st->env = env;
  st->spawn = std::move(spawn);
  const auto n = static_cast<std::size_t>(std::max(1, host_count));
  st->hosts.resize(n);
  st->held_for.resize(n);
  st->restarts.resize(n, 0);
  st->retiring.resize(n);

  auto start_host = [self, st](std::size_t i) {
    // Linked: when the router stops (node shutdown), its hosts and their entities stop too.
    st->hosts[i] = self->spawn<caf::monitored + caf::linked>(entity_host, st->env, st->spawn,
                                                             caf::actor_cast<caf::actor>(self));
    while (!st->held_for[i].empty()) {
      auto h = std::move(st->held_for[i].front());
      st->held_for[i].pop_front();
      h.promise.delegate(st->hosts[i], protocol::to_entity_atom::value, std::move(h.id), std::move(h.command));
    }
  };
  for (std::size_t i = 0; i < n; ++i) {
    start_host(i);
  }

  // Hosts are linked, so their exits arrive here too (handled via down_msg). A shutdown
  // (user_shutdown or kill) stops the router. CAF 0.17.6's anon_send_exit sets the source to the
  // receiver itself, so the source cannot tell a shutdown from a host's exit; the reason can.
  // On shutdown nothing is dropped: held messages and whatever is still in the mailbox are answered
  // shutting_down (a marker sent to itself tells when the mailbox is through), then the router
  // quits and its linked hosts stop the same way.
  self->set_exit_handler([self, st](caf::exit_msg& em) {
    if (em.reason != caf::exit_reason::user_shutdown && em.reason != caf::exit_reason::kill) {
      return;
    }
    auto err = caf::make_error(protocol::errc::shutting_down, "the node is stopping");
    for (auto& q : st->held_for) {
      for (auto& h : q) {
        h.promise.deliver(err);
      }
      q.clear();
    }
    self->set_default_handler(caf::drop);
    self->become(caf::behavior{
        [err](protocol::to_entity_atom, std::string&, caf::message&) -> caf::result<caf::message> { return err; },
        [self, reason = em.reason](drained_atom) { self->quit(reason); },
    });
    self->send(self, drained_atom::value);
  });

  self->set_down_handler([self, st](caf::down_msg& dm) {
    for (std::size_t i = 0; i < st->hosts.size(); ++i) {
      if (st->hosts[i].address() != dm.source && st->retiring[i] != dm.source) {
        continue;
      }
      st->hosts[i] = caf::actor{};
      st->retiring[i] = caf::actor_addr{};
      const int attempt = ++st->restarts[i];
      auto backoff = st->env->limits.backoff_initial * (1 << std::min(attempt, 16));
      if (backoff > st->env->limits.backoff_max) {
        backoff = st->env->limits.backoff_max;
      }
      telemetry::log_error("entity host stopped; restarting",
                           {{"kind", st->env->kind}, {"host", i}, {"reason", self->system().render(dm.reason)},
                            {"backoff_ms", std::chrono::duration_cast<std::chrono::milliseconds>(backoff).count()}});
      self->delayed_send(self, backoff, protocol::restart_atom::value, static_cast<std::uint64_t>(i));
      return;
    }
  });

  return {
      [self, st](protocol::to_entity_atom, std::string& id, caf::message& command) {
        auto rp = self->make_response_promise();
        const auto i = host_index(id, st->hosts.size());
        if (!st->hosts[i]) {
          st->held_for[i].push_back({std::move(id), std::move(command), rp});
          return rp;
        }
        rp.delegate(st->hosts[i], protocol::to_entity_atom::value, std::move(id), std::move(command));
        return rp;
      },
      [self, st](supervisors::stopping_atom, const std::string&) {
        // A host escalates: hold its messages from now on (they go to its successor), then let it go.
        for (std::size_t i = 0; i < st->hosts.size(); ++i) {
          if (st->hosts[i] && st->hosts[i] == caf::actor_cast<caf::actor>(self->current_sender())) {
            st->retiring[i] = st->hosts[i].address();
            self->send(st->hosts[i], supervisors::release_atom::value);
            st->hosts[i] = caf::actor{};
            return;
          }
        }
      },
      [st, start_host](protocol::restart_atom, std::uint64_t i) {
        if (i < st->hosts.size() && !st->hosts[i]) {
          start_host(i);
        }
      },
      [self, st](protocol::idle_atom, caf::timespan idle_for) {
        auto rp = self->make_response_promise<std::uint64_t>();
        auto total = std::make_shared<std::uint64_t>(0);
        auto left = std::make_shared<std::size_t>(st->hosts.size());
        for (auto& h : st->hosts) {
          if (!h) {
            if (--*left == 0) rp.deliver(*total);
            continue;
          }
          self->request(h, std::chrono::seconds(10), protocol::idle_atom::value, idle_for)
              .then(
                  [rp, total, left](std::uint64_t asked) mutable {
                    *total += asked;
                    if (--*left == 0) rp.deliver(*total);
                  },
                  [rp, total, left](caf::error&) mutable {
                    if (--*left == 0) rp.deliver(*total);
                  });
        }
        return rp;
      },
      [self, st](drop_shard_atom, std::int32_t shard) {
        // Every host may hold entities of the shard (hosts split ids, not shards). Messages held for a
        // restarting host go back to the front door; its successor starts without entities.
        auto front = caf::actor_cast<caf::actor>(st->env->front);
        for (auto& q : st->held_for) {
          for (auto it = q.begin(); it != q.end();) {
            if (shard_of(it->id, st->env->shards) != shard) {
              ++it;
              continue;
            }
            if (front) {
              it->promise.delegate(front, protocol::to_entity_atom::value, std::move(it->id), std::move(it->command));
            } else {
              it->promise.deliver(caf::make_error(protocol::errc::entity_restarting, "the entity is moving; retry"));
            }
            it = q.erase(it);
          }
        }
        auto rp = self->make_response_promise<std::uint64_t>();
        auto total = std::make_shared<std::uint64_t>(0);
        auto left = std::make_shared<std::size_t>(st->hosts.size());
        auto failed = std::make_shared<caf::error>();
        auto done = [rp, total, left, failed]() mutable {
          if (--*left > 0) {
            return;
          }
          if (*failed) {
            rp.deliver(*failed);
          } else {
            rp.deliver(*total);
          }
        };
        for (auto& h : st->hosts) {
          if (!h) {
            done();
            continue;
          }
          // Entities flush their pending writes first: bounded by the writer's commit deadline.
          self->request(h, std::chrono::seconds(30), drop_shard_atom::value, shard)
              .then(
                  [total, done](std::uint64_t n) mutable {
                    *total += n;
                    done();
                  },
                  [failed, done](caf::error& e) mutable {
                    *failed = std::move(e);
                    done();
                  });
        }
        return rp;
      },
      [self, st](protocol::stats_atom) {
        auto rp = self->make_response_promise<std::uint64_t, std::uint64_t>();
        auto sums = std::make_shared<std::pair<std::uint64_t, std::uint64_t>>(0, 0);
        auto left = std::make_shared<std::size_t>(st->hosts.size());
        for (auto& h : st->hosts) {
          if (!h) {
            if (--*left == 0) rp.deliver(sums->first, sums->second);
            continue;
          }
          self->request(h, std::chrono::seconds(10), protocol::stats_atom::value)
              .then(
                  [rp, sums, left](std::uint64_t active, std::uint64_t waiting) mutable {
                    sums->first += active;
                    sums->second += waiting;
                    if (--*left == 0) rp.deliver(sums->first, sums->second);
                  },
                  [rp, sums, left](caf::error&) mutable {
                    if (--*left == 0) rp.deliver(sums->first, sums->second);
                  });
        }
        return rp;
      },
      // (stats_atom, parked_atom) -> (active, parked, unparks) summed over hosts (parked entities
      // count as active: they are resident, only without an actor).
      [self, st](protocol::stats_atom, parked_atom) {
        auto rp = self->make_response_promise<std::uint64_t, std::uint64_t, std::uint64_t>();
        auto sums = std::make_shared<std::array<std::uint64_t, 3>>();
        auto left = std::make_shared<std::size_t>(st->hosts.size());
        auto done = [rp, sums, left]() mutable {
          if (--*left == 0) rp.deliver((*sums)[0], (*sums)[1], (*sums)[2]);
        };
        for (auto& h : st->hosts) {
          if (!h) {
            done();
            continue;
          }
          self->request(h, std::chrono::seconds(10), protocol::stats_atom::value, parked_atom::value)
              .then(
                  [sums, done](std::uint64_t active, std::uint64_t parked, std::uint64_t unparks) mutable {
                    (*sums)[0] += active;
                    (*sums)[1] += parked;
                    (*sums)[2] += unparks;
                    done();
                  },
                  [done](caf::error&) mutable { done(); });
        }
        return rp;
      },
  };
}

}  // namespace mercato::supervisors
