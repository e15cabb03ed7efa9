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
// An If-Match header as the version an entity command must find: none or "*" → 0 (no condition);
// "<n>" or W/"<n>" → n; anything else names no version → nullopt (answer 412).
std::optional<std::int64_t> if_match_version(std::string_view header);

}  // namespace mercato::http
