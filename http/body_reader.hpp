#pragma once
// Reads and validates a JSON object body field by field, collecting every problem (API.md: "every
// invalid field listed in errors") instead of stopping at the first. Fields the endpoint does not
// know are refused too (allow_only), so a client cannot set what it must not (mass assignment) and a
// typo does not silently do nothing.

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http/problem.hpp"

namespace mercato::http {

struct request_context;

class body_reader {
 public:
  explicit body_reader(const request_context& ctx);
  ~body_reader();
  body_reader(const body_reader&) = delete;
  body_reader& operator=(const body_reader&) = delete;

  bool has(std::string_view name) const;  // present and not null
  // Length bounds count Unicode code points. Surrounding whitespace is kept (trim yourself if needed).
  std::optional<std::string> text(std::string_view name, bool required, std::size_t min_chars, std::size_t max_chars);
  std::optional<bool> boolean(std::string_view name, bool required);
  // A JSON integer within [min, max] (a float such as 1.0 or 1.5 is refused).
  std::optional<std::int64_t> integer(std::string_view name, bool required, std::int64_t min, std::int64_t max);
  // A JSON object, re-serialised (minified), at most `max_bytes`.
  std::optional<std::string> object_json(std::string_view name, bool required, std::size_t max_bytes);
  std::optional<std::vector<std::string>> text_array(std::string_view name, bool required, std::size_t max_items);

  // Every other field is an error with `why` ("is not a field of this request", "cannot be changed").
  void allow_only(std::initializer_list<std::string_view> names, std::string_view why = "is not a field of this request");

  void error(std::string_view name, std::string message);  // a field the caller judged invalid
  void error_at(std::string pointer, std::string message);  // a ready JSON pointer ("/roles/0")
  bool ok() const { return errors_.empty(); }
  problem to_problem() const;  // 400 invalid_request with every field error

 private:
  struct impl;
  impl* impl_;
  std::vector<field_error> errors_;
};

std::size_t utf8_length(std::string_view s);

// A URL the server stores for clients to render as a link or an image (product images, a shipment's label):
// an RFC 3986 URI reference whose scheme, if it has one, is http or https, so a stored `javascript:` or
// `data:` link cannot reach a storefront. `absolute` also requires the scheme and a host.
bool is_web_link(std::string_view v, bool absolute);

}  // namespace mercato::http
