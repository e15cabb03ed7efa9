#pragma once
// Password hashing (argon2id through libsodium), the password policy and email normalisation.
// Pure functions: no I/O. Hashing is deliberately slow (~tens of ms, 19 MiB): callers run it off the
// I/O threads.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace mercato::security {

// argon2id cost. Defaults are the OWASP Password Storage Cheat Sheet minimum for argon2id:
// m = 19 MiB (19456 KiB), t = 2 iterations, p = 1 (libsodium always uses one lane; p is not settable).
struct password_params {
  unsigned long long iterations = 2;          // t, libsodium's opslimit
  std::size_t memory_bytes = 19u * 1024 * 1024;  // m, libsodium's memlimit (stored in KiB: m=19456)
};

// Hashes `pw` with argon2id and a fresh random salt. The result is self-describing, parameters beside
// the hash: "$argon2id$v=19$m=19456,t=2,p=1$<salt b64>$<hash b64>" (at most 127 characters).
// Throws std::invalid_argument for parameters below libsodium's minimum, std::runtime_error when
// hashing fails (out of memory).
std::string hash_password(std::string_view pw, const password_params& p = {});

// True when `pw` matches `stored` (a string from hash_password). The comparison is constant time inside
// libsodium. A malformed or empty `stored` is simply false.
bool verify_password(std::string_view pw, std::string_view stored);

// Spends the same time as verify_password against a real hash (made once with `p`) and returns false.
// For logins with an unknown email, so the response time does not tell which accounts exist.
bool verify_password_dummy(std::string_view pw, const password_params& p = {});

// True when `stored` was made with other parameters than `p` (or another algorithm, or is malformed):
// after a successful login the caller re-hashes the password and stores the new string.
bool needs_rehash(std::string_view stored, const password_params& p = {});

// Password policy: 8..128 characters, counted as Unicode code points (the password must be valid
// UTF-8), not equal to the email (compared case-insensitively, surrounding spaces of the email
// ignored), and not common, trivial or context-specific (security/password_strength.hpp). No
// composition rules (NIST SP 800-63B). Returns a message for the client naming the rule, or nullopt.
std::optional<std::string> password_problem(std::string_view pw, std::string_view email);

// Normalises an email address for storage and lookup, or nullopt when it is not acceptable.
// - surrounding ASCII whitespace is trimmed, then the whole address is lower-cased (ASCII);
// - at most 254 characters; exactly one '@';
// - local part: 1..64 characters of A-Z a-z 0-9 and !#$%&'*+/=?^_`{|}~.- with no leading, trailing or
//   doubled dot (a "dot-atom"; quoted local parts are not accepted);
// - domain: at least two dot-separated labels, each 1..63 characters of a-z 0-9 and '-', not starting or
//   ending with '-'; no trailing dot; no IP literals.
// Non-ASCII addresses (internationalised local parts or domains) are rejected: enter the punycode form.
std::optional<std::string> normalize_email(std::string_view email);

}  // namespace mercato::security
