#pragma once
// GET /api/v1/admin/analytics?window=5m|1h|24h (admin only): the business figures of the analytics
// actor (actors/analytics) over a window ending now. The edge never waits on the actor: a short-lived
// bridge actor asks it with a timeout and answers through the responder.

#include <chrono>
#include <string>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "http/router.hpp"

namespace mercato::http {

struct analytics_routes_options {
  std::chrono::milliseconds timeout{2000};  // the actor answers in microseconds; this bounds a stuck one
  std::string default_currency = "USD";      // of the money figures when the window has no orders
};

void add_analytics_routes(router& routes, caf::actor_system& sys, caf::actor analytics,
                          analytics_routes_options opts = {});

}  // namespace mercato::http
