#pragma once
// Small encodings used at the edge: base64url (opaque cursors), UUID syntax, ETag matching.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mercato::http {

std::string base64url_encode(std::string_view bytes);
std::optional<std::string> base64url_decode(std::string_view text);

// Canonical textual UUID: 8-4-4-4-12 hex digits (either case).
bool is_uuid(std::string_view s);

// "\"<version>\""
std::string etag_for_version(std::int64_t version);
// True when an If-None-Match header value matches the entity tag (weak comparison, "*" matches).
bool etag_matches(std::string_view if_none_match, std::string_view etag);

}  // namespace mercato::http
