#pragma once
// GET /api/v1/me/notifications (API.md "Auth and users"): the caller's own notifications, newest first,
// cursor paging (`limit`, `cursor`), `unread=true` for the unread ones only. The notifications themselves
// are written by the outbox handlers in notifications/.

#include "http/router.hpp"
#include "persistence/pg_pool.hpp"

namespace mercato::http {

void add_notification_routes(router& routes, persistence::pg_pool& pool);

}  // namespace mercato::http
