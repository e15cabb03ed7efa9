#include "http/ws/live_route.hpp"

#include <boost/beast/websocket/rfc6455.hpp>

#include "http/router.hpp"
#include "http/ws/hub.hpp"
#include "security/jwt.hpp"

namespace mercato::http::ws {

void add_live_updates_route(router& routes, const hub& live, const security::jwt_settings* jwt) {
  routes.add(
      bhttp::verb::get, live_updates_path,
      [&live, jwt](std::shared_ptr<request_context> ctx, responder respond) {
        if (!boost::beast::websocket::is_upgrade(ctx->raw)) {
          respond(response::from(problem{426, "upgrade_required", "Upgrade required",
                                         "this endpoint speaks WebSocket only: send a WebSocket upgrade request",
                                         {}})
                      .with_header("Upgrade", "websocket")
                      .with_header("Connection", "Upgrade"));
          return;
        }
        if (live.full()) {
          respond(service_unavailable("overloaded", "this node has as many live-updates connections as it takes; "
                                                    "try again later or another node"));
          return;
        }
        if (!ctx->caller) {
          if (const auto* token = ctx->query_param("access_token")) {
            if (jwt == nullptr) {
              respond(response::from(problem{401, "invalid_token", "Unauthorized",
                                             "this node does not accept access tokens", {}}));
              return;
            }
            auto verified = security::verify_access_token(*token, *jwt);
            if (!verified) {
              respond(response::from(problem{401, "invalid_token", "Unauthorized",
                                             "the access_token parameter is not a valid access token", {}})
                          .with_header("WWW-Authenticate", "Bearer realm=\"mercato\", error=\"invalid_token\""));
              return;
            }
            ctx->caller = principal{verified->subject, verified->roles, verified->vendor_id, verified->session_id,
                        verified->expires_at};
          }
        }
        respond(response::empty(101));
      },
      route_options{false, false, {}, true, false, true, true});
}

}  // namespace mercato::http::ws
