#pragma once
// Request handling, separate from transport: identity (X-Request-Id, traceparent), routing
// (404/405), body checks (415/400 with the parse position), the handler, then the access log and
// metrics. The Beast session hands each complete request here and writes whatever comes back.

#include <functional>
#include <memory>

#include "http/request.hpp"
#include "http/router.hpp"

namespace mercato::telemetry {
class metrics;
}
namespace mercato::security {
struct jwt_settings;
}

namespace mercato::http {

class rate_gate;
class idempotency_gate;

struct pipeline_options {
  const security::jwt_settings* jwt = nullptr;  // null: bearer tokens are not accepted (every caller anonymous)
  rate_gate* limits = nullptr;                   // null or disabled: no rate limiting
  const idempotency_gate* idempotency = nullptr;  // null: Idempotency-Key is not honoured
};

class pipeline {
 public:
  using done_fn = std::function<void(response)>;

  pipeline(const router& routes, telemetry::metrics* metrics, pipeline_options opts = {});

  // Handles one request; `done` is called exactly once, on whichever thread answered.
  void dispatch(std::shared_ptr<request_context> ctx, done_fn done) const;

 private:
  // After routing: authentication (and for live_caller routes the check against current state), then
  // authorize().
  void admit(const route& r, std::shared_ptr<request_context> ctx, responder respond) const;
  // Roles, JSON checks, then the handler.
  void authorize(const route& r, std::shared_ptr<request_context> ctx, responder respond) const;

  const router& routes_;
  telemetry::metrics* metrics_;
  pipeline_options opts_;
};

// Identity helpers, exposed for tests.
bool valid_request_id(std::string_view id);
std::string generate_request_id();
// Parses a W3C traceparent; returns {trace_id, parent_id} when valid.
std::optional<std::pair<std::string, std::string>> parse_traceparent(std::string_view header);
std::string random_hex(std::size_t chars);

}  // namespace mercato::http
