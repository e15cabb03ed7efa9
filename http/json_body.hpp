#pragma once
// Request bodies are parsed with simdjson. When a body is malformed, simdjson says what is wrong but
// not where, so only on that error path Boost.JSON's incremental parser finds the offset.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace simdjson::dom {
class document;
}

namespace mercato::http {

struct json_syntax_error {
  std::size_t offset = 0;  // bytes consumed before the error
  std::size_t line = 1;    // 1-based
  std::size_t column = 1;  // 1-based, in bytes
  std::string message;
  std::string describe() const;  // "unexpected character at line 1, column 9 (offset 8)"
};

// Parses `body` into `doc`. Returns the error (with its position) when the body is not valid JSON.
std::optional<json_syntax_error> parse_json(std::string_view body, simdjson::dom::document& doc);

// What a body that is valid JSON may still not carry, with the JSON pointer of the first place found:
//  - a repeated member name: RFC 8259 leaves objects with repeated names to the implementation (simdjson
//    keeps them all, lookups find the first), so we refuse them;
//  - U+0000 in a member name or a string: valid JSON, but neither PostgreSQL's text nor its jsonb can hold
//    it, so it would fail the write that stores it (a 5xx, or an entity's failed write) instead of the
//    request.
struct json_flaw {
  enum kind { repeated_member, nul_character };
  std::string pointer;
  kind what;
};
std::optional<json_flaw> find_json_flaw(const simdjson::dom::document& doc);

// Locates a syntax error in text already known to be invalid JSON.
json_syntax_error locate_json_error(std::string_view body);

}  // namespace mercato::http
