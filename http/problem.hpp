#pragma once
// RFC 9457 problem details: the one error shape every HTTP response uses (API.md "Errors").

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mercato::http {

struct field_error {
  std::string pointer;    // JSON pointer into the body ("/items/0/quantity") or "/query/<name>"
  std::string message;
};

struct problem {
  unsigned status = 500;
  std::string code;     // stable, machine-readable: "not_found", "invalid_request", ...
  std::string title;    // short, human-readable summary of the code
  std::string detail;   // this occurrence
  std::vector<field_error> errors;
  // Extension member (RFC 9457 §3.2) on 503s: whether repeating the request (with the same
  // Idempotency-Key) is safe. Absent when not set.
  std::optional<bool> retry_safe = std::nullopt;

  // application/problem+json body
  std::string to_json() const;
};

// `s` with every byte that does not belong to a well-formed UTF-8 sequence replaced by U+FFFD. A problem's
// text may quote what the client sent (a header value may hold any byte); JSON text is UTF-8 (RFC 8259 §8.1),
// and an answer that is not would be unreadable to the client's parser.
std::string valid_utf8(std::string_view s);

// The canonical problems; `detail` says what happened this time.
problem not_found(std::string detail = "no such resource");
problem method_not_allowed(std::string detail);
problem invalid_request(std::string detail, std::vector<field_error> errors = {});
problem malformed_json(std::string detail);
problem unsupported_media_type(std::string detail);
problem payload_too_large(std::string detail);
problem service_unavailable(std::string code, std::string detail);
problem internal_error(std::string detail);
// 412: If-Match does not name the resource's current version.
problem precondition_failed(std::string detail = "If-Match does not name the current version; read it again");

}  // namespace mercato::http
