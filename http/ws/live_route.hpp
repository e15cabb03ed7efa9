#pragma once
// GET /api/v1/ws: the HTTP side of the live-updates upgrade. The pipeline authenticates the
// Authorization header as for any route (and rate-limits the request); this handler also accepts the
// token as ?access_token= (browsers cannot set headers on a WebSocket), refuses a request that is not a
// WebSocket upgrade (426) or arrives when the node is full (503), and answers 101: the transport then
// hands the connection to a live-updates session (http/server.cpp).

namespace mercato::security {
struct jwt_settings;
}

namespace mercato::http {
class router;
}

namespace mercato::http::ws {

class hub;

inline constexpr const char* live_updates_path = "/api/v1/ws";

// `jwt` null: ?access_token= is refused like a bad token.
void add_live_updates_route(router& routes, const hub& live, const security::jwt_settings* jwt);

}  // namespace mercato::http::ws
