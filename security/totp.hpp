#pragma once
// TOTP (RFC 6238) for MFA: HMAC-SHA1, 30 s steps from the Unix epoch, 6 digits. Pure functions: no I/O.
// Replay protection lives with the caller: verify_totp returns the matched time step, and the caller
// refuses a step at or below the last one it accepted for that user.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mercato::security {

inline constexpr std::int64_t totp_period_seconds = 30;
inline constexpr int totp_digits = 6;
inline constexpr unsigned totp_max_window = 10;

// A new shared secret: 20 random bytes (160 bits, the HMAC-SHA1 block recommendation of RFC 4226),
// base32 (RFC 4648) without padding: 32 characters of A-Z2-7.
std::string new_totp_secret();

// "otpauth://totp/<issuer>:<account>?secret=<secret>&issuer=<issuer>&algorithm=SHA1&digits=6&period=30"
// with issuer and account percent-encoded (everything but A-Z a-z 0-9 - . _ ~; a space is %20), for the
// enrolment QR code (Google Authenticator "Key Uri Format").
std::string otpauth_uri(std::string_view secret_base32, std::string_view account_email,
                        std::string_view issuer = "mercato");

// The RFC 6238 time step of `t`: floor(unix seconds / 30).
std::int64_t totp_step(std::chrono::system_clock::time_point t);

// The 6-digit code of `step` (zero-padded), or nullopt when the secret is not base32 (A-Z, a-z, 2-7,
// optional '=' padding) or decodes to fewer than 16 bytes, or the step is negative.
std::optional<std::string> totp_code(std::string_view secret_base32, std::int64_t step);

// Checks `code` against the steps totp_step(now) - window .. + window (window at most totp_max_window)
// and returns the matched step. Codes that are not exactly 6 ASCII digits are refused before any HMAC.
// Every step of the window is computed and compared in constant time.
std::optional<std::int64_t> verify_totp(std::string_view secret_base32, std::string_view code,
                                        std::chrono::system_clock::time_point now, unsigned window = 1);

}  // namespace mercato::security
