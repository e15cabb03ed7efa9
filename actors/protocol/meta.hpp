#pragma once
// Who asked and why: carried by every command so events and logs can name their cause.

#include <string>

#include <caf/message.hpp>
#include <caf/meta/type_name.hpp>

namespace mercato::protocol {

struct command_meta {
  std::string request_id;  // correlation id (X-Request-Id)
  // Unique per command, the same on a retry: an entity applies a command id at most once (it keeps
  // the last ones it applied with its snapshot). Empty: no deduplication. At most 64 printable
  // ASCII characters without spaces.
  std::string command_id;
  // If-Match: the version the caller last saw; the entity refuses the command (precondition_failed)
  // when it has another one. 0: no condition.
  std::int64_t expected_version = 0;
  // For resources owned by a bearer secret rather than an account (guest carts): the SHA-256 (hex) of
  // the secret the caller presented. Empty: none.
  std::string credential_hash;
  bool admin = false;  // the caller is an administrator (may read what it does not own)
  std::string trace_id;    // W3C trace id
  std::string user_id;     // empty for guests
  std::string source = "http";
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, command_meta& x) {
  return f(caf::meta::type_name("command_meta"), x.request_id, x.command_id, x.expected_version,
           x.credential_hash, x.admin, x.trace_id, x.user_id, x.source);
}

inline bool operator==(const command_meta& a, const command_meta& b) {
  return a.request_id == b.request_id && a.command_id == b.command_id &&
         a.expected_version == b.expected_version && a.credential_hash == b.credential_hash && a.admin == b.admin &&
         a.trace_id == b.trace_id && a.user_id == b.user_id && a.source == b.source;
}

// The meta of the first of `Commands` that `msg` holds (an entity kind's meta_of), or null.
template <class... Commands>
const command_meta* meta_among(const caf::message& msg) {
  const command_meta* found = nullptr;
  ((found == nullptr && msg.match_elements<Commands>() ? (found = &msg.get_as<Commands>(0).meta) : found), ...);
  return found;
}

}  // namespace mercato::protocol
