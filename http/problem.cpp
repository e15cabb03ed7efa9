#include "http/problem.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

namespace mercato::http {

std::string valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    // The sequence length a lead byte announces (0: never a lead byte: continuation, C0, C1, F5..FF).
    const std::size_t len = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3
                                       : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
    bool ok = len > 0 && i + len <= s.size();
    for (std::size_t k = 1; ok && k < len; ++k) {
      const auto ck = static_cast<unsigned char>(s[i + k]);
      // RFC 3629 §4: the second byte's range excludes overlong forms, surrogates and code points past U+10FFFF.
      unsigned lo = 0x80;
      unsigned hi = 0xBF;
      if (k == 1) {
        lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
      }
      ok = ck >= lo && ck <= hi;
    }
    if (ok) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER, for this one byte
      ++i;
    }
  }
  return out;
}

std::string problem::to_json() const {
  boost::json::object o;
  o["type"] = "urn:mercato:problem:" + valid_utf8(code);
  o["title"] = valid_utf8(title);
  o["status"] = status;
  o["code"] = valid_utf8(code);
  o["detail"] = valid_utf8(detail);
  if (!errors.empty()) {
    boost::json::array arr;
    arr.reserve(errors.size());
    for (const auto& e : errors) {
      arr.push_back(boost::json::object{{"pointer", valid_utf8(e.pointer)}, {"message", valid_utf8(e.message)}});
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
