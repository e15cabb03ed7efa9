// How an entity's error reaches a client: one mapping at the edge (http::response_for).
#include <doctest/doctest.h>

#include <string>

#include <boost/json/parse.hpp>
#include <caf/all.hpp>

#include "actors/protocol/errors.hpp"
#include "http/entity_bridge.hpp"

using namespace mercato;

namespace {

std::string header(const http::response& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) {
      return v;
    }
  }
  return {};
}

boost::json::object body(const http::response& r) { return boost::json::parse(r.body).as_object(); }

}  // namespace

TEST_CASE("retryable entity errors are 503 with Retry-After and retry_safe") {
  for (auto code : {protocol::errc::outcome_unknown, protocol::errc::entity_restarting, protocol::errc::overloaded,
                    protocol::errc::shutting_down, protocol::errc::fenced, protocol::errc::unavailable}) {
    CAPTURE(protocol::to_string(code));
    auto r = http::response_for(caf::make_error(code, std::string("detail")));
    CHECK(r.status == 503);
    CHECK(r.content_type == "application/problem+json");
    CHECK_FALSE(header(r, "Retry-After").empty());
    CHECK(body(r).at("retry_safe").as_bool());
  }
  CHECK(body(http::response_for(caf::make_error(protocol::errc::outcome_unknown))).at("code").as_string() ==
        "outcome_unknown");
  auto timed_out = http::response_for(caf::make_error(caf::sec::request_timeout));
  CHECK(timed_out.status == 503);
  CHECK(body(timed_out).at("code").as_string() == "timeout");
}

TEST_CASE("client errors keep their status and stable code, without retry_safe") {
  auto stale = http::response_for(caf::make_error(protocol::errc::precondition_failed, std::string("the version is 3")));
  CHECK(stale.status == 412);
  CHECK(body(stale).at("code").as_string() == "precondition_failed");
  CHECK(body(stale).at("detail").as_string() == "the version is 3");
  CHECK_FALSE(body(stale).contains("retry_safe"));
  CHECK(http::response_for(caf::make_error(protocol::errc::not_found)).status == 404);
  auto short_stock = http::response_for(caf::make_error(protocol::errc::insufficient_stock, std::string("only 2")));
  CHECK(short_stock.status == 409);
  CHECK(body(short_stock).at("code").as_string() == "insufficient_stock");
  CHECK(http::response_for(caf::make_error(protocol::errc::entity_failed)).status == 500);
}
