#pragma once
// The analytics actor (issue 11): one per node, fed with the committed business events by an outbox
// subscriber (which only parses and sends, so the dispatcher thread is never held up), keeping a
// business_window of the last 24 h. It answers figures over a window to the admin endpoint and pushes
// the gauge figures and per-event counts to sinks the node wires to Prometheus, so this layer knows
// no metrics library.
//
// An actor rather than a mutex-guarded object: the events arrive on the dispatcher thread, queries on
// short-lived bridge actors and refreshes on a timer, and a mailbox serialises all three without a
// lock that an io thread could ever wait on; the edge asks with a timeout, like it asks entities.
//
// Local only: the messages below are not in the type-ID block (the counters describe this node's
// deliveries), so they must never be sent to another node.

#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>

#include "actors/analytics/business_window.hpp"

namespace mercato::actors {

// A batch of parsed events (from one outbox delivery).
struct business_batch {
  std::vector<business_event> events;
};

// (analytics_query_atom, std::int64_t window_seconds) -> business_figures
using analytics_query_atom = caf::atom_constant<caf::atom("an_query")>;
// (analytics_refresh_atom): push the gauge figures now (also done on a timer and after batches).
using analytics_refresh_atom = caf::atom_constant<caf::atom("an_refresh")>;

struct analytics_options {
  std::chrono::seconds gauge_window{3600};       // the window of the figures pushed to `gauges`
  std::chrono::milliseconds refresh{5000};       // gauges are pushed this often (windows slide with time)
  std::size_t dedup_capacity = 65'536;           // recent event ids remembered
  // Each event counted for the first time (in the window or not): Prometheus counters. May be empty.
  std::function<void(const business_event&)> counted;
  // The figures over gauge_window, on every refresh. May be empty.
  std::function<void(const business_figures&)> gauges;
  // The cart abandonment ratio now (the housekeeping gauge, computed from the carts table). May be empty (0).
  std::function<double()> cart_abandonment;
  // Unix seconds now; empty: the system clock.
  std::function<std::int64_t()> clock;
};

// Spawns the actor; hold the handle, and send it an exit before the actor system shuts down.
caf::actor spawn_analytics(caf::actor_system& sys, analytics_options opts);

}  // namespace mercato::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(mercato::actors::business_batch)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(mercato::actors::business_figures)
