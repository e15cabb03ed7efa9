#pragma once
// JWT access tokens (HS256, RFC 7519) checked the RFC 8725 way, plus the small secret helpers the
// users actor needs for refresh tokens. Pure functions: no I/O.
//
// Verification never trusts the header: the algorithm is pinned to HS256 ("none", HS384/512, RS*, ES*,
// PS* and any spelling other than exactly "HS256" are wrong_algorithm), the `kid` must be the configured
// one, and the header may hold nothing but alg, typ and kid (crit, jku, jwk, x5u, cty, ... are refused:
// none of them is understood, and several name keys an attacker controls). iss, aud, sub, exp, nbf and
// iat are required, and a token may not live longer than the configured access_ttl. Signatures are
// computed and compared (constant time) by libjwt with the configured key only.

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace mercato::security {

struct jwt_settings {
  std::string issuer = "mercato";
  std::string audience = "mercato-api";
  std::string kid;     // key id written to and required in the header (empty: no kid written or required)
  std::string secret;  // HS256 key, at least 32 bytes (RFC 7518 §3.2: at least the hash size)
  std::chrono::seconds access_ttl{900};
  std::chrono::seconds leeway{30};  // clock skew allowed on exp, nbf and iat
};

// Minimum HS256 key length in bytes.
inline constexpr std::size_t jwt_min_secret_bytes = 32;

// A message when the settings cannot be used (short key, empty issuer/audience, negative durations);
// for configuration checks at startup. sign/verify throw std::invalid_argument on such settings.
std::optional<std::string> jwt_settings_problem(const jwt_settings& s);

struct access_claims {
  std::string subject;             // sub: the user id
  std::vector<std::string> roles;  // "roles": customer, vendor, support, admin
  std::string vendor_id;           // "vendor_id" (only for vendors; empty: not written)
  std::string token_id;            // jti
  std::string session_id;          // "sid": the refresh-token family (login) that minted it; empty: none
  std::chrono::system_clock::time_point issued_at, expires_at;  // iat (= nbf), exp; whole seconds
};

// Claims for a new access token: jti random, iat = now, exp = now + access_ttl (whole seconds).
access_claims make_access_claims(std::string subject, std::vector<std::string> roles, std::string vendor_id,
                                 const jwt_settings& s, std::chrono::system_clock::time_point now);

// Signs `c` as a compact JWS: header {"alg":"HS256","typ":"JWT","kid":...}, payload with iss, aud, sub,
// iat, nbf (= iat), exp, jti, roles, vendor_id and sid. Throws std::invalid_argument for unusable settings or
// an empty subject, std::runtime_error if libjwt fails.
std::string sign_access_token(const access_claims& c, const jwt_settings& s);

enum class jwt_error {
  malformed,         // not three base64url parts of JSON objects, too long, wrong claim types, crit header,
                     // exp not after iat
  bad_signature,     // signature does not match (tampered, other key)
  wrong_algorithm,   // header alg is not exactly HS256 (none, HS512, RS256, ES256, ...)
  wrong_kid,         // header kid differs from the configured one (or is missing)
  expired,           // now >= exp + leeway
  not_yet_valid,     // now + leeway < nbf
  issued_in_future,  // iat > now + leeway
  wrong_issuer,
  wrong_audience,    // aud (a string or an array of strings) does not contain the configured audience
  missing_claim,     // one of iss, aud, sub, exp, nbf, iat absent (sub also when empty)
  too_long_lived,    // exp - iat, or exp - now, exceeds access_ttl (+ leeway): not minted by us as configured
};

// Stable name of an error ("bad_signature", ...), for logs and metrics; never sent to clients.
std::string_view to_string(jwt_error e);

// Either the verified claims or the first reason the token was refused.
class verified_token {
 public:
  verified_token(access_claims c) : v_(std::move(c)) {}  // NOLINT: implicit by design
  verified_token(jwt_error e) : v_(e) {}                 // NOLINT
  bool ok() const noexcept { return std::holds_alternative<access_claims>(v_); }
  explicit operator bool() const noexcept { return ok(); }
  // Preconditions: ok() for claims(), !ok() for error() (std::bad_variant_access otherwise).
  const access_claims& claims() const { return std::get<access_claims>(v_); }
  const access_claims* operator->() const { return &claims(); }
  jwt_error error() const { return std::get<jwt_error>(v_); }

 private:
  std::variant<access_claims, jwt_error> v_;
};

// Tokens longer than this are malformed without further parsing.
inline constexpr std::size_t jwt_max_token_bytes = 8192;

// Verifies `token` (the bearer string, without "Bearer "). Checks, in order: shape and size, header
// (alg pinned to HS256, typ "JWT" if present, kid, no other parameter), signature, required claims and
// their types, iss, aud, exp, nbf, iat, lifetime. Throws std::invalid_argument only for unusable settings.
verified_token verify_access_token(std::string_view token, const jwt_settings& s,
                                   std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

// `n` bytes from the operating system's CSPRNG (libsodium randombytes_buf) into `out`.
void random_bytes(void* out, std::size_t n);
// `bytes` random bytes (random_bytes) as base64url without padding; for refresh tokens, cart tokens and
// jti. 32 bytes give 43 characters.
std::string random_token(std::size_t bytes = 32);

// Lower-case hex SHA-256 of `data` (64 characters); refresh tokens are stored this way, never in clear.
std::string sha256_hex(std::string_view data);

// Constant-time comparison for secrets of equal length (sodium_memcmp). Strings of different lengths
// are unequal at once: only the length can leak, never the position of the first difference.
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace mercato::security
