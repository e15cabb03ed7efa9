#include "http/entity_bridge.hpp"

#include <caf/sec.hpp>

#include "actors/protocol/errors.hpp"
#include "http/problem.hpp"

namespace mercato::http {
namespace {

std::string detail_of(const caf::error& err) {
  if (err.context().match_elements<std::string>()) {
    return err.context().get_as<std::string>(0);
  }
  return {};
}

// A 503 with Retry-After; `retry_safe` tells the client that retrying the same request is safe.
response unavailable(std::string code, std::string detail, bool retry_safe, int retry_after_s = 1) {
  problem p = service_unavailable(std::move(code), std::move(detail));
  std::string body = p.to_json();
  // problem+json extension member (RFC 9457 §3.2): appended before the closing brace.
  if (!body.empty() && body.back() == '}') {
    body.pop_back();
    body += std::string(",\"retry_safe\":") + (retry_safe ? "true" : "false") + "}";
  }
  response r;
  r.status = 503;
  r.content_type = "application/problem+json";
  r.body = std::move(body);
  r.with_header("Retry-After", std::to_string(retry_after_s));
  return r;
}

}  // namespace

response response_for(const caf::error& err) {
  using protocol::errc;
  if (err.category() == caf::atom("mercato")) {
    const auto detail = detail_of(err);
    switch (static_cast<errc>(err.code())) {
      case errc::not_found: return response::from(not_found(detail.empty() ? "no such resource" : detail));
      case errc::invalid: return response::from(invalid_request(detail));
      case errc::conflict: {
        problem p{409, "conflict", "Conflict", detail, {}};
        return response::from(p);
      }
      case errc::insufficient_stock: {
        problem p{409, "insufficient_stock", "Insufficient stock", detail, {}};
        return response::from(p);
      }
      case errc::precondition_failed: {
        problem p{412, "precondition_failed", "Precondition failed",
                  detail.empty() ? "If-Match does not name the current version" : detail, {}};
        return response::from(p);
      }
      case errc::overloaded:
        return unavailable("overloaded", "the server is busy; retry shortly", true);
      case errc::unavailable:
        return unavailable("service_unavailable", detail.empty() ? "the change could not be stored" : detail, true);
      case errc::fenced:
        return unavailable("entity_moved", "the entity is being taken over by another node; retry", true);
      case errc::outcome_unknown:
        return unavailable("outcome_unknown",
                           "the change may or may not have been stored; retry with the same Idempotency-Key", true);
      case errc::entity_restarting:
        return unavailable("entity_restarting", "the entity is restarting; retry with the same Idempotency-Key", true);
      case errc::shutting_down:
        return unavailable("shutting_down", "the node is stopping; retry", true, 2);
      case errc::timeout:
        return unavailable("timeout", "no answer in time; retry with the same Idempotency-Key", true);
      case errc::entity_failed:
      case errc::crashed:
      case errc::restart_limit:
        return response::from(internal_error("the request could not be processed"));
    }
  }
  if (err == caf::sec::request_timeout) {
    return unavailable("timeout", "no answer in time; retry with the same Idempotency-Key", true);
  }
  if (err == caf::sec::request_receiver_down) {
    return unavailable("entity_restarting", "the entity is restarting; retry with the same Idempotency-Key", true);
  }
  return response::from(internal_error("the request could not be processed"));
}

}  // namespace mercato::http
