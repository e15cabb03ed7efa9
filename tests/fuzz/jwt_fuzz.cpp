// Bearer tokens through verify_access_token at a fixed clock. The first byte picks the shape:
// - even: the rest is the token as a client sends it;
// - odd: the rest is "<header JSON>\n<payload JSON>", encoded and signed with the configured key here,
//   so the fuzzer reaches the header and claim checks behind the signature (it cannot forge HS256).
// Rules: an accepted token has a subject, is not expired, lives no longer than access_ttl (+ leeway);
// and its claims, signed again by sign_access_token, verify to the same claims.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <sodium.h>

#include "fuzz_check.hpp"
#include "security/jwt.hpp"

namespace {

using mercato::fuzz::require;
namespace sec = mercato::security;

const sec::jwt_settings& settings() {
  static const sec::jwt_settings s = [] {
    sec::jwt_settings j;
    j.secret = "fuzz-secret-fuzz-secret-fuzz-secret-0123";
    j.kid = "fuzz";
    return j;
  }();
  return s;
}

// 2026-09-21T..., the clock every verification reads (the seed tokens are valid at that time).
const auto now = std::chrono::system_clock::time_point{std::chrono::seconds{1'790'000'000}};

std::string b64url(std::string_view bytes) {
  std::string out(sodium_base64_ENCODED_LEN(bytes.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(),
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(out.find('\0'));
  return out;
}

std::string signed_token(std::string_view header, std::string_view payload) {
  const std::string input = b64url(header) + "." + b64url(payload);
  const auto& key = settings().secret;
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, reinterpret_cast<const unsigned char*>(key.data()), key.size());
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(input.data()), input.size());
  crypto_auth_hmacsha256_final(&st, mac);
  return input + "." + b64url({reinterpret_cast<const char*>(mac), sizeof mac});
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const bool sodium_ready = sodium_init() >= 0;
  require(sodium_ready, "libsodium initialises");
  if (size < 1) {
    return 0;
  }
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string token;
  if (data[0] % 2 == 0) {
    token = rest;
  } else {
    const auto nl = rest.find('\n');
    token = nl == std::string_view::npos
                ? signed_token(R"({"alg":"HS256","typ":"JWT","kid":"fuzz"})", rest)
                : signed_token(rest.substr(0, nl), rest.substr(nl + 1));
  }
  const auto& s = settings();
  const auto v = sec::verify_access_token(token, s, now);
  if (!v) {
    require(!sec::to_string(v.error()).empty(), "every refusal has a name");
    return 0;
  }
  const auto& c = v.claims();
  require(!c.subject.empty(), "an accepted token has a subject", token);
  require(now < c.expires_at + s.leeway, "an accepted token has not expired", token);
  require(c.expires_at - c.issued_at <= s.access_ttl + s.leeway, "an accepted token lives at most access_ttl", token);
  require(c.issued_at <= now + s.leeway, "an accepted token was not issued in the future", token);

  const auto again = sec::verify_access_token(sec::sign_access_token(c, s), s, now);
  require(again.ok(), "claims we accepted, signed again, verify", token);
  const auto& a = again.claims();
  require(a.subject == c.subject && a.roles == c.roles && a.vendor_id == c.vendor_id && a.token_id == c.token_id &&
              a.session_id == c.session_id && a.expires_at == c.expires_at && a.issued_at == c.issued_at,
          "claims we accepted, signed again, verify to the same claims", token);
  return 0;
}
