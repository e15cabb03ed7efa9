#include "http/problem.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

namespace mercato::http {

std::string problem::to_json() const {
  boost::json::object o;
  o["type"] = "urn:mercato:problem:" + code;
  o["title"] = title;
  o["status"] = status;
  o["code"] = code;
  o["detail"] = detail;
  if (!errors.empty()) {
    boost::json::array arr;
    arr.reserve(errors.size());
    for (const auto& e : errors) {
      arr.push_back(boost::json::object{{"pointer", e.pointer}, {"message", e.message}});
    }
    o["errors"] = std::move(arr);
  }
  if (retry_safe) {
    o["retry_safe"] = *retry_safe;
  }
  return boost::json::serialize(o);
}

problem not_found(std::string detail) { return {404, "not_found", "Not found", std::move(detail), {}}; }

problem method_not_allowed(std::string detail) {
  return {405, "method_not_allowed", "Method not allowed", std::move(detail), {}};
}

problem invalid_request(std::string detail, std::vector<field_error> errors) {
  return {400, "invalid_request", "Invalid request", std::move(detail), std::move(errors)};
}

problem malformed_json(std::string detail) { return {400, "malformed_json", "Malformed JSON", std::move(detail), {}}; }

problem unsupported_media_type(std::string detail) {
  return {415, "unsupported_media_type", "Unsupported media type", std::move(detail), {}};
}

problem payload_too_large(std::string detail) {
  return {413, "payload_too_large", "Payload too large", std::move(detail), {}};
}

problem service_unavailable(std::string code, std::string detail) {
  return {503, std::move(code), "Service unavailable", std::move(detail), {}};
}

problem precondition_failed(std::string detail) {
  return {412, "precondition_failed", "Precondition failed", std::move(detail), {}};
}

problem internal_error(std::string detail) {
  return {500, "internal_error", "Internal server error", std::move(detail), {}};
}

}  // namespace mercato::http
