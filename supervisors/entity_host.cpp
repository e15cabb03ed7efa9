#include "supervisors/entity_host.hpp"

#include <deque>
#include <unordered_map>

#include "actors/protocol/atoms.hpp"
#include "actors/protocol/errors.hpp"
#include "telemetry/logging.hpp"
#include "telemetry/metrics.hpp"

namespace mercato::supervisors {
namespace {

using clock = std::chrono::steady_clock;

struct held_command {
  caf::message command;
  caf::response_promise promise;
};

struct entry {
  caf::actor handle;  // empty while restarting or between passivation and the next activation
  clock::time_point last_used;
  bool passivating = false;
  bool restarting = false;
  std::deque<held_command> waiting;  // messages held while the entity is passivating or restarting
  // Poison detection: the message that crashed the entity last, and how often in a row.
  std::string crash_signature;
  int crash_streak = 0;
};

struct host_state {
  std::shared_ptr<const entity_env> env;
  entity_spawner spawn;
  std::unordered_map<std::string, entry> entities;
  std::unordered_map<caf::actor_addr, std::string> ids;
  std::deque<clock::time_point> restarts;
  std::uint64_t active = 0;
};

void set_active_gauge(host_state& st, std::int64_t delta) {
  st.active = static_cast<std::uint64_t>(static_cast<std::int64_t>(st.active) + delta);
  if (st.env->metrics) {
    st.env->metrics->entities_active(st.env->kind).Increment(static_cast<double>(delta));
  }
}

}  // namespace

caf::behavior entity_host(caf::event_based_actor* self, std::shared_ptr<const entity_env> env, entity_spawner spawn) {
  auto st = std::make_shared<host_state>();
  st->env = env;
  st->spawn = std::move(spawn);

  auto activate = [self, st](const std::string& id, entry& e) {
    e.handle = st->spawn(self, id, st->env);
    e.passivating = false;
    e.restarting = false;
    e.last_used = clock::now();
    st->ids[e.handle.address()] = id;
    set_active_gauge(*st, +1);
  };

  auto flush_waiting = [](entry& e) {
    while (!e.waiting.empty()) {
      auto w = std::move(e.waiting.front());
      e.waiting.pop_front();
      w.promise.delegate(e.handle, std::move(w.command));
    }
  };

  // An exit_reason (user_shutdown, unreachable, kill) can only come from the router going away;
  // then the host goes too.
  self->set_exit_handler([self](caf::exit_msg& em) {
    if (em.reason && em.reason.category() == caf::atom("exit") && em.reason != caf::exit_reason::normal) {
      self->quit(em.reason);
    }
  });
  // However the host ends (shutdown, escalation, a crash), its entities end with it, so a restarted
  // host can never meet a second live activation of the same id.
  self->attach_functor([st] {
    for (auto& [id, e] : st->entities) {
      if (e.handle) {
        caf::anon_send_exit(e.handle, caf::exit_reason::user_shutdown);
      }
    }
  });

  self->set_down_handler([self, st, activate, flush_waiting](caf::down_msg& dm) {
    auto it_id = st->ids.find(dm.source);
    if (it_id == st->ids.end()) {
      return;
    }
    const std::string id = it_id->second;
    st->ids.erase(it_id);
    auto it = st->entities.find(id);
    if (it == st->entities.end()) {
      return;
    }
    auto& e = it->second;
    e.handle = caf::actor{};
    set_active_gauge(*st, -1);
    const auto& env = *st->env;
    // mercato reasons other than `crashed` (unavailable, fenced, ...) are orderly stops.
    // (An empty caf::error has no category: check it first.)
    const bool ours = dm.reason && dm.reason.category() == caf::atom("mercato");
    const bool crashed = ours && dm.reason.code() == static_cast<std::uint8_t>(protocol::errc::crashed);
    const bool abnormal = !ours && dm.reason && dm.reason != caf::exit_reason::normal;
    if (crashed || abnormal) {
      // Restart intensity: too many restarts in the window means something is wrong beyond one
      // entity; escalate to the router, which restarts this host.
      const auto now = clock::now();
      st->restarts.push_back(now);
      while (!st->restarts.empty() && now - st->restarts.front() > env.limits.restart_window) {
        st->restarts.pop_front();
      }
      if (env.metrics) {
        env.metrics->entity_restarts(env.kind).Increment();
      }
      if (static_cast<int>(st->restarts.size()) > env.limits.restart_intensity) {
        telemetry::log_error("entity restart limit exceeded; escalating",
                             {{"kind", env.kind}, {"restarts", st->restarts.size()}});
        self->quit(caf::make_error(protocol::errc::restart_limit, env.kind));
        return;
      }
      const int streak = std::max(1, e.crash_streak);
      auto backoff = env.limits.backoff_initial * (1 << std::min(streak - 1, 16));
      if (backoff > env.limits.backoff_max) {
        backoff = env.limits.backoff_max;
      }
      e.restarting = true;
      self->delayed_send(self, backoff, protocol::retry_atom::value, id);
      return;
    }
    // Normal stop (passivation, failed activation, failed write): reactivate only if work waits.
    if (e.passivating && env.metrics) {
      env.metrics->entity_passivations(env.kind).Increment();
    }
    if (e.waiting.empty()) {
      st->entities.erase(it);
      return;
    }
    activate(id, e);
    flush_waiting(e);
  });

  auto scan_idle = [self, st](caf::timespan idle_for) {
    const auto now = clock::now();
    std::uint64_t asked = 0;
    for (auto& [id, e] : st->entities) {
      if (e.handle && !e.passivating && !e.restarting && now - e.last_used >= idle_for) {
        e.passivating = true;
        self->send(e.handle, protocol::passivate_atom::value);
        ++asked;
      }
    }
    return asked;
  };

  self->delayed_send(self, env->limits.idle_scan_interval, protocol::tick_atom::value);

  return {
      [self, st, activate](protocol::to_entity_atom, const std::string& id, caf::message& command) {
        auto rp = self->make_response_promise();
        auto& e = st->entities[id];
        if (e.passivating || e.restarting) {
          e.waiting.push_back({std::move(command), rp});
          return rp;
        }
        if (!e.handle) {
          activate(id, e);
        }
        e.last_used = clock::now();
        rp.delegate(e.handle, std::move(command));
        return rp;
      },
      [self, st, activate, flush_waiting](protocol::crashed_atom, const std::string& id, caf::message& command,
                                          caf::response_promise& promise) {
        auto it = st->entities.find(id);
        if (it == st->entities.end()) {
          promise.deliver(caf::make_error(protocol::errc::entity_failed, "entity is gone"));
          return;
        }
        auto& e = it->second;
        const std::string signature = caf::to_string(command);
        e.crash_streak = signature == e.crash_signature ? e.crash_streak + 1 : 1;
        e.crash_signature = signature;
        const auto& env = *st->env;
        if (e.crash_streak >= env.limits.poison_attempts) {
          telemetry::log_error("dropping a message that crashed its entity repeatedly",
                               {{"kind", env.kind}, {"id", id}, {"attempts", e.crash_streak}});
          if (env.metrics) {
            env.metrics->entity_poison_dropped(env.kind).Increment();
          }
          promise.deliver(caf::make_error(protocol::errc::entity_failed,
                                          "the command failed repeatedly and was dropped"));
          e.crash_streak = 0;
          e.crash_signature.clear();
          return;
        }
        // Retry it first on the next incarnation.
        e.waiting.push_front({std::move(command), std::move(promise)});
      },
      [st, activate, flush_waiting](protocol::retry_atom, const std::string& id) {
        auto it = st->entities.find(id);
        if (it == st->entities.end() || it->second.handle) {
          return;
        }
        auto& e = it->second;
        activate(id, e);
        flush_waiting(e);
      },
      [scan_idle](protocol::idle_atom, caf::timespan idle_for) { return static_cast<std::uint64_t>(scan_idle(idle_for)); },
      [self, st, scan_idle](protocol::tick_atom) {
        scan_idle(st->env->limits.passivate_after);
        self->delayed_send(self, st->env->limits.idle_scan_interval, protocol::tick_atom::value);
      },
      [st](protocol::stats_atom) {
        std::uint64_t waiting = 0;
        for (auto& [id, e] : st->entities) {
          waiting += e.waiting.size();
        }
        return caf::make_message(static_cast<std::uint64_t>(st->active), waiting);
      },
  };
}

int shard_of(const std::string& id, int shards) {
  std::uint32_t h = 2166136261u;
  for (unsigned char c : id) {
    h ^= c;
    h *= 16777619u;
  }
  return static_cast<int>(h % static_cast<std::uint32_t>(shards));
}

}  // namespace mercato::supervisors
