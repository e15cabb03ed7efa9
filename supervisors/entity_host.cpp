#include "supervisors/entity_host.hpp"

#include <malloc.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <unordered_map>
#include <utility>
#include <vector>

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

// Per-entity data that most entities never need: allocated on first use, released when unused.
struct entry_extra {
  // Held while the entity is passivating, parking, stopping or restarting: first the commands its
  // stopping incarnation handed back (in their original order), then the ones held here.
  std::vector<held_command> waiting;
  std::size_t requeued = 0;  // how many of `waiting` were handed back
  // Poison detection: the message that crashed the entity last, and how often in a row.
  std::string crash_signature;
  int crash_streak = 0;
  bool unused() const { return waiting.empty() && crash_streak == 0 && crash_signature.empty(); }
};

// Where an entity is. Every phase but `parked` has an actor (`restarting` is waiting for one).
enum class phase : std::uint8_t {
  live,         // handles commands; in the live list
  passivating,  // asked to stop; commands are held
  parking,      // asked to hand over its state and stop; commands are held; in the parked list
  stopping,     // stopping after a failed write or a crash; commands are held
  restarting,   // crashed; a new incarnation starts after the backoff; commands are held
  parked,       // no actor: the committed state is kept here; in the parked list
};

struct entry;
using slot = std::pair<const std::string, entry>;  // a node of the host's map (stable address)

struct entry {
  caf::actor handle;  // empty while restarting or parked
  clock::time_point last_used;
  slot* prev = nullptr;  // neighbours in the live or the parked list (both ordered by last_used)
  slot* next = nullptr;
  std::int64_t parked_version = 0;  // parking/parked: the committed state the entity handed over
  std::string parked_state;         // its encoding (empty for version 0: nothing stored yet)
  std::string parked_recent;        // the command ids it applied last
  std::unique_ptr<entry_extra> extra;
  std::uint32_t parked_bytes = 0;  // parked: what it counts for in host_state::parked_bytes
  phase ph = phase::live;
  bool has_parked_state = false;       // parking: the state arrived
  bool passivate_when_parked = false;  // parking: an idle scan asked for passivation meanwhile
};

// An intrusive list of map nodes, oldest use first: scans for parking and passivation walk from
// the front and stop at the first entity used too recently, instead of visiting every entity.
struct slot_list {
  slot* head = nullptr;
  slot* tail = nullptr;
  void push_back(slot* s) {
    auto& e = s->second;
    e.prev = tail;
    e.next = nullptr;
    if (tail) {
      tail->second.next = s;
    } else {
      head = s;
    }
    tail = s;
  }
  void unlink(slot* s) {
    auto& e = s->second;
    if (e.prev) {
      e.prev->second.next = e.next;
    } else {
      head = e.next;
    }
    if (e.next) {
      e.next->second.prev = e.prev;
    } else {
      tail = e.prev;
    }
    e.prev = e.next = nullptr;
  }
};

// A shard being dropped (handed off to another node, or lost): its entities still stopping, and who
// waits for the last one.
struct shard_drop {
  std::vector<caf::response_promise> waiters;
  std::size_t left = 0;
  std::uint64_t dropped = 0;
};

struct host_state {
  std::shared_ptr<const entity_env> env;
  std::unordered_map<int, shard_drop> drops;  // by shard; empty nearly always
  entity_spawner spawn;
  std::unordered_map<std::string, entry> entities;  // the only per-entity table
  slot_list live;    // phase live
  slot_list parked;  // phases parking and parked
  std::deque<clock::time_point> restarts;
  std::uint64_t active = 0;  // entities with an actor or parked state (the entities_active gauge)
  std::uint64_t parked_count = 0;
  std::uint64_t parked_bytes = 0;  // what the phase-parked entities take (parked_cost)
  std::uint64_t unparks = 0;
  // The kind's series this host moves on every park, unpark and drop, looked up once (a labelled
  // lookup takes the family's mutex); all null without metrics.
  struct {
    prometheus::Gauge* active = nullptr;        // mercato_entities_active{kind}
    prometheus::Gauge* parked = nullptr;        // mercato_entities_parked{kind}
    prometheus::Gauge* parked_bytes = nullptr;  // mercato_entities_parked_bytes{kind}
    prometheus::Counter* passivations = nullptr;  // mercato_entity_passivations_total{kind}
  } series;
};

// Heap bytes a string owns: none while its text fits in the string itself, else what the allocator
// handed out for it (malloc_usable_size: the size class, not just the capacity; mimalloc, when it is
// mercatod's malloc, answers for its own blocks).
std::size_t heap_bytes(const std::string& text) {
  const auto* inside = reinterpret_cast<const char*>(&text);
  const std::less<const char*> before;  // a total order, also for pointers into different objects
  if (!before(text.data(), inside) && before(text.data(), inside + sizeof(text))) {
    return 0;
  }
  return std::max(text.capacity() + 1, malloc_usable_size(const_cast<char*>(text.data())));
}

// What a parked entity takes: its table node (the id, the entry and the hash table's own link and
// hash, rounded to the allocator's 16 bytes) and the blocks its strings own. The hash table's bucket
// array (8 bytes per entity or two, live ones too) is left out.
std::uint32_t parked_cost(const slot& s) {
  constexpr std::size_t node = (sizeof(slot) + 2 * sizeof(void*) + 15) / 16 * 16;
  const auto& e = s.second;
  return static_cast<std::uint32_t>(node + heap_bytes(s.first) + heap_bytes(e.parked_state) +
                                    heap_bytes(e.parked_recent));
}

// An entity enters or leaves phase parked: the count, the bytes and their gauges follow.
void count_parked_in(host_state& st, slot* s) {
  auto& e = s->second;
  e.parked_bytes = parked_cost(*s);
  ++st.parked_count;
  st.parked_bytes += e.parked_bytes;
  if (st.series.parked) {
    st.series.parked->Increment();
    st.series.parked_bytes->Increment(static_cast<double>(e.parked_bytes));
  }
}

void count_parked_out(host_state& st, slot* s) {
  auto& e = s->second;
  --st.parked_count;
  st.parked_bytes -= e.parked_bytes;
  if (st.series.parked) {
    st.series.parked->Decrement();
    st.series.parked_bytes->Decrement(static_cast<double>(e.parked_bytes));
  }
  e.parked_bytes = 0;
}

void count_passivation(host_state& st) {
  if (st.series.passivations) {
    st.series.passivations->Increment();
  }
}

void set_active_gauge(host_state& st, std::int64_t delta) {
  st.active = static_cast<std::uint64_t>(static_cast<std::int64_t>(st.active) + delta);
  if (st.series.active) {
    st.series.active->Increment(static_cast<double>(delta));
  }
}

// Forgets a parked entity (its state is committed): its next message reads the snapshot again.
void drop_parked(host_state& st, slot* s) {
  st.parked.unlink(s);
  count_parked_out(st, s);
  set_active_gauge(st, -1);
  count_passivation(st);
  st.entities.erase(s->first);
}

entry_extra& extra_of(entry& e) {
  if (!e.extra) {
    e.extra = std::make_unique<entry_extra>();
  }
  return *e.extra;
}

void release_extra_if_unused(entry& e) {
  if (e.extra && e.extra->unused()) {
    e.extra.reset();
  }
}

bool has_waiting(const entry& e) { return e.extra && !e.extra->waiting.empty(); }

void drop_parked_state(entry& e) {
  e.parked_version = 0;
  std::string{}.swap(e.parked_state);
  std::string{}.swap(e.parked_recent);
  e.has_parked_state = false;
  e.passivate_when_parked = false;
}

// A command for a shard this node is letting go: back to the kind's front door, which holds it until
// the shard's next owner is known (without a front, as in some tests, the caller may retry).
void hand_back(const entity_env& env, const std::string& id, caf::message command, caf::response_promise& rp) {
  auto front = caf::actor_cast<caf::actor>(env.front);
  if (!front) {
    rp.deliver(caf::make_error(protocol::errc::entity_restarting, "the entity is moving to another node; retry"));
    return;
  }
  rp.delegate(front, protocol::to_entity_atom::value, id, std::move(command));
}

const shard_drop* dropping(const host_state& st, const std::string& id) {
  if (st.drops.empty()) {
    return nullptr;
  }
  auto it = st.drops.find(shard_of(id, st.env->shards));
  return it == st.drops.end() ? nullptr : &it->second;
}

}  // namespace

caf::behavior entity_host(caf::event_based_actor* self, std::shared_ptr<const entity_env> env, entity_spawner spawn,
                          caf::actor supervisor) {
  auto st = std::make_shared<host_state>();
  st->env = env;
  st->spawn = std::move(spawn);
  if (env->metrics) {
    st->series.active = &env->metrics->entities_active(env->kind);
    st->series.parked = &env->metrics->entities_parked(env->kind);
    st->series.parked_bytes = &env->metrics->entities_parked_bytes(env->kind);
    st->series.passivations = &env->metrics->entity_passivations(env->kind);
  }
  const bool parking_on = env->limits.park_after.count() > 0;

  // Starts an incarnation of `s`: from its snapshot (an activation) or, when it was parked, from
  // the committed state kept here (no database read). The first message tells the entity which;
  // nothing can reach the new actor before it.
  auto start = [self, st](slot* s, bool restore) {
    auto& e = s->second;
    e.handle = st->spawn(self, s->first, st->env);
    if (restore) {
      self->send(e.handle, restore_atom::value, e.parked_version, std::move(e.parked_state),
                 std::move(e.parked_recent));
      ++st->unparks;
    } else {
      self->send(e.handle, load_atom::value);
      set_active_gauge(*st, +1);
    }
    drop_parked_state(e);
    e.ph = phase::live;
    e.last_used = clock::now();
    st->live.push_back(s);
  };

  auto flush_waiting = [](entry& e) {
    if (!e.extra) {
      return;
    }
    auto waiting = std::move(e.extra->waiting);
    e.extra->waiting.clear();
    e.extra->requeued = 0;
    for (auto& w : waiting) {
      w.promise.delegate(e.handle, std::move(w.command));
    }
    release_extra_if_unused(e);
  };

  // Stops the host without dropping a reply: every held command is answered now, and so is every
  // command still in the mailbox, then it quits. A shutdown answers shutting_down and quits once a
  // marker sent to itself comes back; an escalation answers entity_restarting and quits once the
  // supervisor has released it (it forwards nothing after that).
  auto drain_and_quit = [self, st, supervisor](caf::error reason) {
    const bool shutdown = reason == caf::exit_reason::user_shutdown || reason == caf::exit_reason::kill;
    auto err = shutdown ? caf::make_error(protocol::errc::shutting_down, "the node is stopping")
                        : caf::make_error(protocol::errc::entity_restarting,
                                          "the entity host is restarting; retry with the same command id");
    // The held commands are answered last, right before quitting: a caller that retries at once then
    // reaches the supervisor after it stopped forwarding here (it holds the retry for the new host).
    auto finish = [self, st, err, reason] {
      for (auto& [id, e] : st->entities) {
        if (e.extra) {
          for (auto& w : e.extra->waiting) {
            w.promise.deliver(err);
          }
          e.extra->waiting.clear();
          e.extra->requeued = 0;
        }
      }
      self->quit(reason);
    };
    self->set_default_handler(caf::drop);
    self->become(caf::behavior{
        [err](protocol::to_entity_atom, const std::string&, caf::message&) -> caf::result<caf::message> {
          return err;
        },
        [err](requeue_atom, const std::string&, caf::message&, caf::response_promise& rp) { rp.deliver(err); },
        [err](protocol::crashed_atom, const std::string&, caf::message&, caf::response_promise& rp) {
          rp.deliver(err);
        },
        [finish](drained_atom) { finish(); },
        [finish](release_atom) { finish(); },
    });
    if (!shutdown && supervisor) {
      self->send(supervisor, stopping_atom::value, std::string{});
    } else {
      self->send(self, drained_atom::value);
    }
  };
  // An exit_reason (user_shutdown, unreachable, kill) can only come from the router going away;
  // then the host goes too.
  self->set_exit_handler([drain_and_quit](caf::exit_msg& em) {
    if (em.reason && em.reason.category() == caf::atom("exit") && em.reason != caf::exit_reason::normal) {
      drain_and_quit(em.reason);
    }
  });
  // However the host ends (shutdown, escalation, a crash), its entities end with it, so a restarted
  // host can never meet a second live activation of the same id. Parked state goes with the host:
  // it is committed, so a restarted host reads it back from the snapshots. The entities get the
  // host's reason, so they answer what they hold with shutting_down or entity_restarting.
  self->attach_functor([st](const caf::error& reason) {
    const caf::error why = reason ? reason : caf::error{caf::exit_reason::user_shutdown};
    for (auto& [id, e] : st->entities) {
      if (e.handle) {
        e.handle->enqueue(nullptr, caf::make_message_id(), caf::make_message(caf::exit_msg{e.handle.address(), why}),
                          nullptr);
      }
    }
    set_active_gauge(*st, -static_cast<std::int64_t>(st->active));
    if (st->series.parked) {
      st->series.parked->Decrement(static_cast<double>(st->parked_count));
      st->series.parked_bytes->Decrement(static_cast<double>(st->parked_bytes));
    }
  });

  // An entity of a shard being dropped is gone (or never had an actor): its waiting commands go back
  // to the front door, and the drop is answered once the shard's last entity is gone.
  auto forget = [st](slot* s, bool awaited) {
    auto& e = s->second;
    const std::string id = s->first;
    const int shard = shard_of(id, st->env->shards);
    if (e.ph == phase::live) {
      st->live.unlink(s);
    } else if (e.ph == phase::parking || e.ph == phase::parked) {
      st->parked.unlink(s);
      if (e.ph == phase::parked) {
        count_parked_out(*st, s);
      }
    }
    if (e.ph != phase::restarting) {
      set_active_gauge(*st, -1);  // restarting entities were counted out when they crashed
    }
    if (e.extra) {
      for (auto& w : e.extra->waiting) {
        hand_back(*st->env, id, std::move(w.command), w.promise);
      }
    }
    st->entities.erase(id);
    auto d = st->drops.find(shard);
    if (d == st->drops.end()) {
      return;
    }
    ++d->second.dropped;
    if (awaited && d->second.left > 0 && --d->second.left == 0) {
      for (auto& w : d->second.waiters) {
        w.deliver(d->second.dropped);
      }
      st->drops.erase(d);
    }
  };

  // An entity ended (reported by the exit hook its spawner attached).
  auto on_gone = [self, st, start, flush_waiting, drain_and_quit, forget](caf::actor_id aid, const std::string& id, const caf::error& reason) {
    auto it = st->entities.find(id);
    if (it == st->entities.end() || !it->second.handle || it->second.handle.id() != aid) {
      return;  // not the current incarnation
    }
    slot* s = &*it;
    auto& e = s->second;
    e.handle = caf::actor{};
    const auto& env = *st->env;
    if (dropping(*st, id)) {
      forget(s, true);
      return;
    }
    // mercato reasons other than `crashed` (unavailable, fenced, ...) are orderly stops.
    // (An empty caf::error has no category: check it first.)
    const bool ours = reason && reason.category() == caf::atom("mercato");
    const bool crashed = ours && reason.code() == static_cast<std::uint8_t>(protocol::errc::crashed);
    const bool abnormal = !ours && reason && reason != caf::exit_reason::normal;
    const bool parked_cleanly = e.ph == phase::parking && e.has_parked_state && !crashed && !abnormal;
    if (parked_cleanly) {
      // The actor is gone, its committed state is here: the entity stays resident (and in the
      // parked list, where it went when it was asked to park).
      if (e.passivate_when_parked) {
        count_passivation(*st);
      }
      if (has_waiting(e)) {  // commands arrived meanwhile: carry on from the state, in order
        st->parked.unlink(s);
        start(s, true);
        flush_waiting(e);
        return;
      }
      if (e.passivate_when_parked) {
        st->parked.unlink(s);
        set_active_gauge(*st, -1);
        st->entities.erase(it);
        return;
      }
      e.ph = phase::parked;
      count_parked_in(*st, s);
      return;
    }
    if (e.ph == phase::live) {
      st->live.unlink(s);
    } else if (e.ph == phase::parking) {
      st->parked.unlink(s);
    }
    const bool was_passivating = e.ph == phase::passivating || (e.ph == phase::parking && e.passivate_when_parked);
    drop_parked_state(e);
    set_active_gauge(*st, -1);
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
        drain_and_quit(caf::make_error(protocol::errc::restart_limit, env.kind));
        return;
      }
      const int streak = std::max(1, e.extra ? e.extra->crash_streak : 0);
      auto backoff = env.limits.backoff_initial * (1 << std::min(streak - 1, 16));
      if (backoff > env.limits.backoff_max) {
        backoff = env.limits.backoff_max;
      }
      e.ph = phase::restarting;
      self->delayed_send(self, backoff, protocol::retry_atom::value, id);
      return;
    }
    // Normal stop (passivation, failed activation, failed write): reactivate only if work waits.
    if (was_passivating) {
      count_passivation(*st);
    }
    if (!has_waiting(e)) {
      st->entities.erase(it);
      return;
    }
    start(s, false);
    flush_waiting(e);
  };

  // Parks the live entities quiet for park_after (oldest first; the live list is in use order).
  auto scan_park = [self, st] {
    const auto cutoff = clock::now() - st->env->limits.park_after;
    while (st->live.head && st->live.head->second.last_used <= cutoff) {
      slot* s = st->live.head;
      auto& e = s->second;
      st->live.unlink(s);
      e.ph = phase::parking;
      st->parked.push_back(s);  // still in last-use order: everything older went in earlier scans
      self->send(e.handle, park_atom::value);
    }
  };

  // Drops the least recently used parked states while the host holds more than its share of
  // max_parked or max_parked_bytes (they are committed; the entity's next message reads its snapshot
  // again).
  auto trim_parked = [st] {
    const auto& limits = st->env->limits;
    const auto over = [st, &limits] {
      return (limits.max_parked > 0 && st->parked_count > limits.max_parked) ||
             (limits.max_parked_bytes > 0 && st->parked_bytes > limits.max_parked_bytes);
    };
    for (slot* s = st->parked.head; s && over();) {
      slot* next = s->second.next;
      if (s->second.ph == phase::parked) {
        drop_parked(*st, s);
      }
      s = next;
    }
  };

  // Passivates the live entities idle at least `idle_for` (they are asked to stop) and the parked ones
  // idle at least `parked_idle_for`: those are dropped at once (their state is committed); parking ones
  // stop once their state is here.
  auto scan_idle = [self, st](caf::timespan idle_for, caf::timespan parked_idle_for) {
    const auto now = clock::now();
    std::uint64_t asked = 0;
    while (st->live.head && now - st->live.head->second.last_used >= idle_for) {
      slot* s = st->live.head;
      auto& e = s->second;
      st->live.unlink(s);
      e.ph = phase::passivating;
      self->send(e.handle, protocol::passivate_atom::value);
      ++asked;
    }
    for (slot* s = st->parked.head; s && now - s->second.last_used >= parked_idle_for;) {
      slot* next = s->second.next;
      auto& e = s->second;
      if (e.ph == phase::parked) {
        drop_parked(*st, s);
        ++asked;
      } else if (!e.passivate_when_parked) {
        e.passivate_when_parked = true;
        ++asked;
      }
      s = next;
    }
    return asked;
  };

  self->delayed_send(self, env->limits.idle_scan_interval, protocol::tick_atom::value);
  if (parking_on) {
    self->delayed_send(self, env->limits.park_scan_interval, park_tick_atom::value);
  }

  return {
      [self, st, start](protocol::to_entity_atom, const std::string& id, caf::message& command) {
        auto rp = self->make_response_promise();
        if (dropping(*st, id)) {
          hand_back(*st->env, id, std::move(command), rp);
          return rp;
        }
        auto [it, fresh] = st->entities.try_emplace(id);
        slot* s = &*it;
        auto& e = s->second;
        if (fresh) {
          start(s, false);
        } else {
          switch (e.ph) {
            case phase::passivating:
            case phase::parking:
            case phase::stopping:
            case phase::restarting:
              extra_of(e).waiting.push_back({std::move(command), rp});
              return rp;
            case phase::parked:
              st->parked.unlink(s);
              count_parked_out(*st, s);
              start(s, true);
              break;
            case phase::live:
              st->live.unlink(s);
              st->live.push_back(s);
              e.last_used = clock::now();
              break;
          }
        }
        rp.delegate(e.handle, std::move(command));
        return rp;
      },
      [on_gone](gone_atom, caf::actor_id aid, const std::string& id, const caf::error& reason) {
        on_gone(aid, id, reason);
      },
      [self, st](parked_atom, const std::string& id, std::int64_t version, std::string& state, std::string& recent) {
        // From an entity asked to park, right before it stops (its exit report follows and decides).
        auto it = st->entities.find(id);
        if (it == st->entities.end()) {
          return;
        }
        auto& e = it->second;
        if (e.ph != phase::parking || !e.handle || e.handle != caf::actor_cast<caf::actor>(self->current_sender())) {
          return;
        }
        e.parked_version = version;
        e.parked_state = std::move(state);
        e.parked_state.shrink_to_fit();
        e.parked_recent = std::move(recent);
        e.parked_recent.shrink_to_fit();
        e.has_parked_state = true;
      },
      [self, st](stopping_atom, const std::string& id) {
        // The entity stops after a failed write or a crash: hold its commands from now on and tell
        // it so behind every command already forwarded to it (it hands those back).
        auto it = st->entities.find(id);
        if (it == st->entities.end() || !it->second.handle ||
            it->second.handle != caf::actor_cast<caf::actor>(self->current_sender())) {
          return;
        }
        slot* s = &*it;
        auto& e = s->second;
        if (e.ph == phase::live) {
          st->live.unlink(s);
        } else if (e.ph == phase::parking) {
          st->parked.unlink(s);
          drop_parked_state(e);
        }
        e.ph = phase::stopping;
        self->send(e.handle, release_atom::value);
      },
      [st](requeue_atom, const std::string& id, caf::message& command, caf::response_promise& promise) {
        // A command its stopping entity handed back: it runs on the next incarnation, in its order.
        auto it = st->entities.find(id);
        if (it == st->entities.end()) {
          if (dropping(*st, id)) {
            hand_back(*st->env, id, std::move(command), promise);
            return;
          }
          promise.deliver(caf::make_error(protocol::errc::entity_restarting, "the entity is restarting; retry"));
          return;
        }
        auto& x = extra_of(it->second);
        x.waiting.insert(x.waiting.begin() + static_cast<std::ptrdiff_t>(x.requeued),
                         held_command{std::move(command), std::move(promise)});
        ++x.requeued;
      },
      [st](protocol::crashed_atom, const std::string& id, caf::message& command, caf::response_promise& promise) {
        auto it = st->entities.find(id);
        if (it == st->entities.end()) {
          promise.deliver(caf::make_error(protocol::errc::entity_failed, "entity is gone"));
          return;
        }
        auto& e = it->second;
        auto& x = extra_of(e);
        std::string signature = caf::to_string(command);
        x.crash_streak = signature == x.crash_signature ? x.crash_streak + 1 : 1;
        x.crash_signature = std::move(signature);
        const auto& env = *st->env;
        if (x.crash_streak >= env.limits.poison_attempts) {
          telemetry::log_error("dropping a message that crashed its entity repeatedly",
                               {{"kind", env.kind}, {"id", id}, {"attempts", x.crash_streak}});
          if (env.metrics) {
            env.metrics->entity_poison_dropped(env.kind).Increment();
          }
          promise.deliver(caf::make_error(protocol::errc::entity_failed,
                                          "the command failed repeatedly and was dropped"));
          x.crash_streak = 0;
          x.crash_signature.clear();
          release_extra_if_unused(e);
          return;
        }
        // Retry it on the next incarnation, before what arrived after it.
        x.waiting.insert(x.waiting.begin() + static_cast<std::ptrdiff_t>(x.requeued),
                         held_command{std::move(command), std::move(promise)});
        ++x.requeued;
      },
      [st, start, flush_waiting](protocol::retry_atom, const std::string& id) {
        auto it = st->entities.find(id);
        if (it == st->entities.end() || it->second.ph != phase::restarting) {
          return;
        }
        start(&*it, false);
        flush_waiting(it->second);
      },
      [self, st, forget](drop_shard_atom, std::int32_t shard) {
        auto rp = self->make_response_promise<std::uint64_t>();
        if (auto running = st->drops.find(shard); running != st->drops.end()) {
          running->second.waiters.push_back(rp);  // already under way: answered with it
          return rp;
        }
        auto& d = st->drops[shard];
        d.waiters.push_back(rp);
        std::vector<slot*> now_gone;
        for (auto& kv : st->entities) {
          if (shard_of(kv.first, st->env->shards) != shard) {
            continue;
          }
          slot* s = &kv;
          auto& e = s->second;
          switch (e.ph) {
            case phase::parked:
            case phase::restarting:  // no actor: nothing to wait for
              now_gone.push_back(s);
              break;
            case phase::live:
              st->live.unlink(s);
              e.ph = phase::passivating;
              self->send(e.handle, protocol::passivate_atom::value);
              ++d.left;
              break;
            case phase::parking:
              e.passivate_when_parked = true;
              ++d.left;
              break;
            case phase::passivating:
            case phase::stopping:
              ++d.left;
              break;
          }
        }
        for (slot* s : now_gone) {
          forget(s, false);
        }
        if (d.left == 0) {
          for (auto& w : d.waiters) {
            w.deliver(d.dropped);
          }
          st->drops.erase(shard);
        }
        return rp;
      },
      [scan_idle](protocol::idle_atom, caf::timespan idle_for) {
        return static_cast<std::uint64_t>(scan_idle(idle_for, idle_for));
      },
      [self, st, scan_idle](protocol::tick_atom) {
        scan_idle(st->env->limits.passivate_after, st->env->limits.keep_parked);
        self->delayed_send(self, st->env->limits.idle_scan_interval, protocol::tick_atom::value);
      },
      [self, st, scan_park, trim_parked](park_tick_atom) {
        scan_park();
        trim_parked();
        self->delayed_send(self, st->env->limits.park_scan_interval, park_tick_atom::value);
      },
      [st](protocol::stats_atom) {
        std::uint64_t waiting = 0;
        for (auto& [id, e] : st->entities) {
          waiting += e.extra ? e.extra->waiting.size() : 0;
        }
        return caf::make_message(static_cast<std::uint64_t>(st->active), waiting);
      },
      // (stats_atom, parked_atom) -> (active, parked, unparks): active includes the parked ones.
      [st](protocol::stats_atom, parked_atom) {
        return caf::make_message(st->active, st->parked_count, st->unparks);
      },
  };
}

bool entity_env::serving(int shard) const {
  const auto& l = leases[static_cast<std::size_t>(shard)];
  if (l.epoch.load(std::memory_order_acquire) <= 0) {
    return false;
  }
  const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  return now < l.serving_until.load(std::memory_order_acquire);
}

void entity_env::hold(int shard, std::int64_t epoch, std::chrono::steady_clock::time_point until) {
  auto& l = leases[static_cast<std::size_t>(shard)];
  l.serving_until.store(epoch > 0 ? until.time_since_epoch().count() : 0, std::memory_order_release);
  l.epoch.store(epoch, std::memory_order_release);
}

void entity_env::extend(int shard, std::chrono::steady_clock::time_point until) {
  leases[static_cast<std::size_t>(shard)].serving_until.store(until.time_since_epoch().count(),
                                                               std::memory_order_release);
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
