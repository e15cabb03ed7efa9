#include "actors/analytics/analytics_actor.hpp"

#include <memory>
#include <optional>
#include <utility>

#include <caf/all.hpp>

#include "actors/protocol/atoms.hpp"

namespace mercato::actors {
namespace {

std::int64_t system_now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

struct analytics_state {
  std::optional<business_window> window;
  analytics_options opts;
  std::int64_t last_push_s = -1;
  static inline const char* name = "analytics";

  std::int64_t now() const { return opts.clock ? opts.clock() : system_now_s(); }

  business_figures figures(std::int64_t window_s) {
    auto f = window->figures(window_s, now());
    if (opts.cart_abandonment) {
      f.cart_abandonment_rate = opts.cart_abandonment();
    }
    return f;
  }

  void push_gauges() {
    last_push_s = now();
    if (opts.gauges) {
      opts.gauges(figures(static_cast<std::int64_t>(opts.gauge_window.count())));
    }
  }
};

caf::behavior analytics(caf::stateful_actor<analytics_state>* self, analytics_options opts) {
  auto& st = self->state;
  st.opts = std::move(opts);
  st.window.emplace(st.now(), st.opts.dedup_capacity);
  st.push_gauges();
  self->delayed_send(self, st.opts.refresh, protocol::tick_atom::value);
  return {
      [self](business_batch& batch) {
        auto& st = self->state;
        const auto now = st.now();
        for (const auto& e : batch.events) {
          if (st.window->add(e, now) != business_window::outcome::duplicate && st.opts.counted) {
            st.opts.counted(e);
          }
        }
        // Gauges follow new events within a second, without recomputing for every batch of a burst.
        if (now != st.last_push_s) {
          st.push_gauges();
        }
      },
      [self](analytics_query_atom, std::int64_t window_s) -> business_figures {
        return self->state.figures(window_s);
      },
      [self](analytics_refresh_atom) { self->state.push_gauges(); },
      [self](protocol::tick_atom) {
        self->state.push_gauges();
        self->delayed_send(self, self->state.opts.refresh, protocol::tick_atom::value);
      },
  };
}

}  // namespace

caf::actor spawn_analytics(caf::actor_system& sys, analytics_options opts) { return sys.spawn(analytics, std::move(opts)); }

}  // namespace mercato::actors
