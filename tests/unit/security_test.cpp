#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>

#include "security/jwt.hpp"
#include "security/password.hpp"
#include "security/password_strength.hpp"
#include "security/totp.hpp"

using namespace mercato::security;
using std::chrono::seconds;
using std::chrono::system_clock;

namespace {

// Cheap parameters keep the suite fast; the defaults are checked separately.
const password_params fast{1, 8u * 1024 * 1024};

system_clock::time_point at(std::int64_t unix_seconds) { return system_clock::time_point(seconds(unix_seconds)); }

std::string b64url(std::string_view s) {
  constexpr int variant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
  std::string out(sodium_base64_ENCODED_LEN(s.size(), variant), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(s.data()), s.size(), variant);
  out.resize(out.size() - 1);
  return out;
}

std::string b64url_decode(std::string_view s) {
  std::string out(s.size(), '\0');
  std::size_t len = 0;
  REQUIRE(sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), s.data(), s.size(), nullptr,
                            &len, nullptr, sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0);
  out.resize(len);
  return out;
}

// An independent JWS signer (OpenSSL HMAC), to forge tokens libjwt would never produce.
std::string sign_raw(std::string_view header_json, std::string_view payload_json, std::string_view key,
                     const EVP_MD* md = EVP_sha256()) {
  const std::string input = b64url(header_json) + "." + b64url(payload_json);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(md, key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(input.data()),
       input.size(), mac, &len);
  return input + "." + b64url(std::string_view(reinterpret_cast<const char*>(mac), len));
}

jwt_settings settings() {
  jwt_settings s;
  s.kid = "k1";
  s.secret = "0123456789abcdef0123456789abcdef-test-key";
  return s;
}

constexpr std::int64_t now_s = 1700000000;

std::string payload(std::int64_t iat, std::int64_t nbf, std::int64_t exp, std::string_view iss = "mercato",
                    std::string_view aud = "\"mercato-api\"") {
  return R"({"iss":")" + std::string(iss) + R"(","aud":)" + std::string(aud) + R"(,"sub":"user-1","iat":)" +
         std::to_string(iat) + R"(,"nbf":)" + std::to_string(nbf) + R"(,"exp":)" + std::to_string(exp) +
         R"(,"jti":"j1","roles":["customer"]})";
}

const std::string good_header = R"({"alg":"HS256","typ":"JWT","kid":"k1"})";

jwt_error error_of(std::string_view token, system_clock::time_point now = at(now_s)) {
  auto r = verify_access_token(token, settings(), now);
  REQUIRE_FALSE(r.ok());
  return r.error();
}

const std::string rfc_secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";  // base32 of "12345678901234567890"

}  // namespace

// --- passwords ---------------------------------------------------------------------------------------------

TEST_CASE("argon2id: round trip, wrong password, parameters in the stored string") {
  const auto stored = hash_password("correct horse battery", fast);
  CHECK(stored.rfind("$argon2id$v=19$m=8192,t=1,p=1$", 0) == 0);
  CHECK(verify_password("correct horse battery", stored));
  CHECK_FALSE(verify_password("correct horse batterY", stored));
  CHECK_FALSE(verify_password("", stored));
  CHECK_FALSE(verify_password("correct horse battery", ""));
  CHECK_FALSE(verify_password("correct horse battery", "$argon2id$v=19$garbage"));
  CHECK_FALSE(verify_password("correct horse battery", std::string(300, 'x')));
  // a fresh salt each time
  CHECK(hash_password("correct horse battery", fast) != stored);
  CHECK_FALSE(verify_password_dummy("correct horse battery", fast));
}

TEST_CASE("argon2id: OWASP defaults (m=19 MiB, t=2, p=1) and needs_rehash") {
  const password_params owasp;
  CHECK(owasp.memory_bytes == 19u * 1024 * 1024);
  CHECK(owasp.iterations == 2);
  const auto stored = hash_password("a long enough password", owasp);
  CHECK(stored.rfind("$argon2id$v=19$m=19456,t=2,p=1$", 0) == 0);
  CHECK(verify_password("a long enough password", stored));
  CHECK_FALSE(needs_rehash(stored, owasp));
  CHECK(needs_rehash(stored, password_params{3, owasp.memory_bytes}));
  CHECK(needs_rehash(stored, password_params{2, 64u * 1024 * 1024}));
  CHECK(needs_rehash(hash_password("a long enough password", fast), owasp));
  CHECK(needs_rehash("not a hash", owasp));
  CHECK_THROWS_AS(hash_password("x", password_params{0, owasp.memory_bytes}), std::invalid_argument);
}

TEST_CASE("password policy") {
  CHECK(password_problem("short", "a@b.example"));
  CHECK(password_problem("1234567", "a@b.example"));
  CHECK_FALSE(password_problem("tq7#vz2k", "a@b.example"));
  std::string long_one;
  while (long_one.size() < 129) {
    long_one += "violet tractor sings at noon ";
  }
  CHECK_FALSE(password_problem(long_one.substr(0, 128), "a@b.example"));
  CHECK(password_problem(long_one.substr(0, 129), "a@b.example"));
  // code points, not bytes: 8 two-byte characters are long enough, 4 of them are not
  CHECK_FALSE(password_problem("\xC3\xA9\xC3\xA0\xC3\xBC\xC3\xB6\xC3\x9F\xC3\xA7\xC3\xB1\xC3\xB8", "a@b.example"));
  CHECK(password_problem("\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9", "a@b.example"));
  std::string emoji128;
  for (int i = 0; i < 128; ++i) {
    const int cp = 0x1F600 + i;  // 128 different 4-byte characters
    emoji128 += static_cast<char>(0xF0);
    emoji128 += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    emoji128 += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    emoji128 += static_cast<char>(0x80 | (cp & 0x3F));
  }
  CHECK_FALSE(password_problem(emoji128, "a@b.example"));
  CHECK(password_problem(emoji128 + "\xF0\x9F\x98\x80", "a@b.example"));
  CHECK(password_problem("abcdefg\xFF", "a@b.example"));          // invalid UTF-8
  CHECK(password_problem("abcdefg\xC0\xAF", "a@b.example"));      // overlong
  CHECK(password_problem("abcdefg\xED\xA0\x80", "a@b.example"));  // surrogate
  // not the email, case-insensitively
  CHECK(password_problem("Alice@Example.com", "alice@example.com"));
  CHECK(password_problem("alice@example.com", "  ALICE@example.COM "));
  CHECK(*password_problem("alice@example.com", "alice@example.com") ==
        "password must not be the same as the email address");
  // containing the name part of the email is refused too (a context-specific word)
  CHECK(password_problem("alice@example.com!", "alice@example.com")->find("email") != std::string::npos);
  CHECK_FALSE(password_problem("bob@example.com!", "alice@example.com"));
}

TEST_CASE("email normalisation") {
  CHECK(normalize_email("  Alice.Smith+shop@Example.COM \t") == "alice.smith+shop@example.com");
  CHECK(normalize_email("a@b.co") == "a@b.co");
  CHECK(normalize_email("o'hara_x-y@sub.mail-host.example") == "o'hara_x-y@sub.mail-host.example");
  CHECK_FALSE(normalize_email(""));
  CHECK_FALSE(normalize_email("   "));
  CHECK_FALSE(normalize_email("no-at.example.com"));
  CHECK_FALSE(normalize_email("two@@example.com"));
  CHECK_FALSE(normalize_email("a@b@example.com"));
  CHECK_FALSE(normalize_email("@example.com"));
  CHECK_FALSE(normalize_email("alice@"));
  CHECK_FALSE(normalize_email("alice@localhost"));
  CHECK_FALSE(normalize_email(".alice@example.com"));
  CHECK_FALSE(normalize_email("alice.@example.com"));
  CHECK_FALSE(normalize_email("al..ice@example.com"));
  CHECK_FALSE(normalize_email("al ice@example.com"));
  CHECK_FALSE(normalize_email("\"alice\"@example.com"));
  CHECK_FALSE(normalize_email("alice@-example.com"));
  CHECK_FALSE(normalize_email("alice@example-.com"));
  CHECK_FALSE(normalize_email("alice@example..com"));
  CHECK_FALSE(normalize_email("alice@example.com."));
  CHECK_FALSE(normalize_email("alice@[127.0.0.1]"));
  CHECK_FALSE(normalize_email("al\xC3\xAF" "ce@example.com"));
  CHECK_FALSE(normalize_email(std::string(65, 'a') + "@example.com"));
  CHECK(normalize_email(std::string(64, 'a') + "@example.com"));
  CHECK_FALSE(normalize_email("a@" + std::string(64, 'b') + ".com"));
  CHECK_FALSE(normalize_email(std::string(64, 'a') + "@" + std::string(63, 'b') + "." + std::string(63, 'c') + "." +
                              std::string(63, 'd') + ".com"));  // 260 characters: over 254
}

// --- JWT ---------------------------------------------------------------------------------------------------

TEST_CASE("jwt: round trip, header pinned and claims preserved") {
  const auto s = settings();
  auto c = make_access_claims("user-1", {"vendor", "customer"}, "vendor-9", s, at(now_s));
  CHECK(c.expires_at - c.issued_at == seconds(900));
  CHECK(c.token_id.size() >= 20);
  const auto token = sign_access_token(c, s);

  const auto header = boost::json::parse(b64url_decode(token.substr(0, token.find('.')))).as_object();
  CHECK(header.at("alg").as_string() == "HS256");
  CHECK(header.at("typ").as_string() == "JWT");
  CHECK(header.at("kid").as_string() == "k1");
  const auto body_part = token.substr(token.find('.') + 1, token.rfind('.') - token.find('.') - 1);
  const auto body = boost::json::parse(b64url_decode(body_part)).as_object();
  CHECK(body.at("iss").as_string() == "mercato");
  CHECK(body.at("aud").as_string() == "mercato-api");
  CHECK(body.at("nbf").as_int64() == now_s);
  CHECK(body.at("exp").as_int64() == now_s + 900);

  auto r = verify_access_token(token, s, at(now_s + 60));
  REQUIRE(r.ok());
  CHECK(r->subject == "user-1");
  CHECK(r->roles == std::vector<std::string>{"vendor", "customer"});
  CHECK(r->vendor_id == "vendor-9");
  CHECK(r->token_id == c.token_id);
  CHECK(r->issued_at == at(now_s));
  CHECK(r->expires_at == at(now_s + 900));

  // an independently signed token with the same content verifies too (libjwt and OpenSSL agree)
  CHECK(verify_access_token(sign_raw(good_header, payload(now_s, now_s, now_s + 900), s.secret), s, at(now_s)).ok());
  // aud may be an array containing ours
  CHECK(verify_access_token(
            sign_raw(good_header, payload(now_s, now_s, now_s + 900, "mercato", R"(["other","mercato-api"])"),
                     s.secret),
            s, at(now_s))
            .ok());
}

TEST_CASE("jwt: tampering and other keys give bad_signature") {
  const auto s = settings();
  const auto token = sign_access_token(make_access_claims("user-1", {"customer"}, "", s, at(now_s)), s);
  const auto d1 = token.find('.');
  const auto d2 = token.rfind('.');

  // payload swapped for one claiming admin, signature kept
  auto forged_body = payload(now_s, now_s, now_s + 900);
  forged_body.replace(forged_body.find("customer"), 8, "admin");
  const auto tampered = token.substr(0, d1 + 1) + b64url(forged_body) + token.substr(d2);
  CHECK(error_of(tampered) == jwt_error::bad_signature);

  // one signature character changed
  auto flipped = token;
  flipped.back() = flipped.back() == 'A' ? 'B' : 'A';
  CHECK(error_of(flipped) == jwt_error::bad_signature);

  // signed with another key
  auto other = s;
  other.secret = "another-secret-that-is-long-enough-0123456789";
  CHECK(error_of(sign_access_token(make_access_claims("user-1", {}, "", other, at(now_s)), other)) ==
        jwt_error::bad_signature);
  CHECK(error_of(sign_raw(good_header, payload(now_s, now_s, now_s + 900), other.secret)) ==
        jwt_error::bad_signature);
}

TEST_CASE("jwt: alg none and other algorithms are refused") {
  const auto s = settings();
  const auto body = payload(now_s, now_s, now_s + 900);
  // alg none: empty signature, with and without the trailing dot
  CHECK(error_of(b64url(R"({"alg":"none","typ":"JWT"})") + "." + b64url(body) + ".") == jwt_error::wrong_algorithm);
  CHECK(error_of(b64url(R"({"alg":"none","typ":"JWT","kid":"k1"})") + "." + b64url(body) + ".") ==
        jwt_error::wrong_algorithm);
  CHECK(error_of(b64url(R"({"alg":"None","typ":"JWT","kid":"k1"})") + "." + b64url(body) + ".") ==
        jwt_error::wrong_algorithm);
  CHECK(error_of(b64url(R"({"alg":"none"})") + "." + b64url(body)) == jwt_error::malformed);
  // a correctly signed HS512 token with the right key is still the wrong algorithm
  CHECK(error_of(sign_raw(R"({"alg":"HS512","typ":"JWT","kid":"k1"})", body, s.secret, EVP_sha512())) ==
        jwt_error::wrong_algorithm);
  // key confusion: RS256 / ES256 header, HMAC signature with the secret
  CHECK(error_of(sign_raw(R"({"alg":"RS256","typ":"JWT","kid":"k1"})", body, s.secret)) ==
        jwt_error::wrong_algorithm);
  CHECK(error_of(sign_raw(R"({"alg":"ES256","typ":"JWT","kid":"k1"})", body, s.secret)) ==
        jwt_error::wrong_algorithm);
  CHECK(error_of(sign_raw(R"({"alg":"hs256","typ":"JWT","kid":"k1"})", body, s.secret)) ==
        jwt_error::wrong_algorithm);
  CHECK(error_of(sign_raw(R"({"alg":["HS256"],"typ":"JWT","kid":"k1"})", body, s.secret)) ==
        jwt_error::wrong_algorithm);
  CHECK(error_of(sign_raw(R"({"typ":"JWT","kid":"k1"})", body, s.secret)) == jwt_error::malformed);
  // duplicate "alg" members: whichever one a parser keeps, the token is refused
  CHECK_FALSE(verify_access_token(b64url(R"({"alg":"HS256","alg":"none","typ":"JWT","kid":"k1"})") + "." +
                                      b64url(body) + ".",
                                  s, at(now_s))
                  .ok());
  CHECK_FALSE(verify_access_token(b64url(R"({"alg":"none","alg":"HS256","typ":"JWT","kid":"k1"})") + "." +
                                      b64url(body) + ".",
                                  s, at(now_s))
                  .ok());
  CHECK_FALSE(verify_access_token(sign_raw(R"({"alg":"HS256","alg":"HS512","typ":"JWT","kid":"k1"})", body,
                                           s.secret, EVP_sha512()),
                                  s, at(now_s))
                  .ok());
  CHECK_FALSE(verify_access_token(sign_raw(R"({"alg":"HS512","alg":"HS256","typ":"JWT","kid":"k1"})", body,
                                           s.secret, EVP_sha512()),
                                  s, at(now_s))
                  .ok());
}

TEST_CASE("jwt: kid must match") {
  const auto s = settings();
  const auto body = payload(now_s, now_s, now_s + 900);
  CHECK(error_of(sign_raw(R"({"alg":"HS256","typ":"JWT","kid":"k2"})", body, s.secret)) == jwt_error::wrong_kid);
  CHECK(error_of(sign_raw(R"({"alg":"HS256","typ":"JWT"})", body, s.secret)) == jwt_error::wrong_kid);
  CHECK(error_of(sign_raw(R"({"alg":"HS256","typ":"JWT","kid":1})", body, s.secret)) == jwt_error::wrong_kid);
  auto rotated = s;
  rotated.kid = "k2";
  CHECK(verify_access_token(sign_raw(R"({"alg":"HS256","typ":"JWT","kid":"k2"})", body, s.secret), rotated,
                            at(now_s))
            .ok());
}

TEST_CASE("jwt: time claims with leeway") {
  const auto s = settings();  // leeway 30 s
  const auto exp = now_s + 900;
  const auto token = sign_raw(good_header, payload(now_s, now_s, exp), s.secret);
  CHECK(verify_access_token(token, s, at(exp - 1)).ok());
  CHECK(verify_access_token(token, s, at(exp + 29)).ok());  // within leeway
  CHECK(error_of(token, at(exp + 30)) == jwt_error::expired);
  CHECK(error_of(token, at(exp + 3600)) == jwt_error::expired);

  // nbf in the future (iat now)
  const auto later = sign_raw(good_header, payload(now_s, now_s + 300, now_s + 900), s.secret);
  CHECK(error_of(later) == jwt_error::not_yet_valid);
  CHECK(verify_access_token(later, s, at(now_s + 271)).ok());
  CHECK(verify_access_token(sign_raw(good_header, payload(now_s, now_s + 30, exp), s.secret), s, at(now_s)).ok());

  // iat beyond the leeway
  const auto future = sign_raw(good_header, payload(now_s + 120, now_s, now_s + 900), s.secret);
  CHECK(error_of(future) == jwt_error::issued_in_future);
  CHECK(verify_access_token(sign_raw(good_header, payload(now_s + 30, now_s, exp), s.secret), s, at(now_s)).ok());
}

TEST_CASE("jwt: issuer, audience and required claims") {
  const auto s = settings();
  CHECK(error_of(sign_raw(good_header, payload(now_s, now_s, now_s + 900, "evil"), s.secret)) ==
        jwt_error::wrong_issuer);
  CHECK(error_of(sign_raw(good_header, payload(now_s, now_s, now_s + 900, "mercato", "\"other-api\""), s.secret)) ==
        jwt_error::wrong_audience);
  CHECK(error_of(sign_raw(good_header, payload(now_s, now_s, now_s + 900, "mercato", R"(["a","b"])"), s.secret)) ==
        jwt_error::wrong_audience);

  const std::string base = payload(now_s, now_s, now_s + 900);
  for (const char* claim : {"exp", "nbf", "iat", "iss", "aud", "sub"}) {
    CAPTURE(claim);
    auto body = boost::json::parse(base).as_object();
    body.erase(claim);
    CHECK(error_of(sign_raw(good_header, boost::json::serialize(body), s.secret)) == jwt_error::missing_claim);
  }
  auto empty_sub = boost::json::parse(base).as_object();
  empty_sub["sub"] = "";
  CHECK(error_of(sign_raw(good_header, boost::json::serialize(empty_sub), s.secret)) == jwt_error::missing_claim);
  auto string_exp = boost::json::parse(base).as_object();
  string_exp["exp"] = "1700000900";
  CHECK(error_of(sign_raw(good_header, boost::json::serialize(string_exp), s.secret)) == jwt_error::malformed);
  auto huge_exp = boost::json::parse(base).as_object();
  huge_exp["exp"] = std::int64_t{9223372036854775807};
  CHECK(error_of(sign_raw(good_header, boost::json::serialize(huge_exp), s.secret)) == jwt_error::malformed);
  auto bad_roles = boost::json::parse(base).as_object();
  bad_roles["roles"] = "admin";
  CHECK(error_of(sign_raw(good_header, boost::json::serialize(bad_roles), s.secret)) == jwt_error::malformed);
}

TEST_CASE("jwt: malformed input") {
  const auto s = settings();
  const auto token = sign_access_token(make_access_claims("user-1", {}, "", s, at(now_s)), s);
  CHECK(error_of("") == jwt_error::malformed);
  CHECK(error_of("abc") == jwt_error::malformed);
  CHECK(error_of("a.b") == jwt_error::malformed);
  CHECK(error_of("a.b.c.d") == jwt_error::malformed);
  CHECK(error_of(token + ".") == jwt_error::malformed);
  CHECK(error_of(token.substr(0, token.rfind('.') + 1)) == jwt_error::malformed);  // signature stripped
  CHECK(error_of("Bearer " + token) == jwt_error::malformed);
  CHECK(error_of(token + "=") == jwt_error::malformed);
  CHECK(error_of(b64url("not json") + "." + b64url("{}") + ".c2ln") == jwt_error::malformed);
  CHECK(error_of(b64url("[1]") + "." + b64url("{}") + ".c2ln") == jwt_error::malformed);
  CHECK(error_of(std::string(jwt_max_token_bytes + 1, 'a')) == jwt_error::malformed);
  CHECK(error_of(sign_raw(R"({"alg":"HS256","typ":"JWT","kid":"k1","crit":["exp"]})",
                          payload(now_s, now_s, now_s + 900), s.secret)) == jwt_error::malformed);
  CHECK(error_of(sign_raw(R"({"alg":"HS256","typ":"at+jwt","kid":"k1"})", payload(now_s, now_s, now_s + 900),
                          s.secret)) == jwt_error::malformed);
  CHECK(error_of(sign_raw(good_header, "[]", s.secret)) == jwt_error::malformed);
  CHECK(to_string(jwt_error::bad_signature) == "bad_signature");
  // No header parameter beyond alg, typ and kid: keys named by the token are never fetched or used.
  for (const char* extra : {R"("jku":"https://x.example/k")", R"("jwk":{"kty":"oct"})", R"("x5u":"https://x")",
                            R"("cty":"JWT")", R"("zip":"DEF")", R"("b64":false)"}) {
    CAPTURE(extra);
    CHECK(error_of(sign_raw(std::string(R"({"alg":"HS256","typ":"JWT","kid":"k1",)") + extra + "}",
                            payload(now_s, now_s, now_s + 900), s.secret)) == jwt_error::malformed);
  }
}

TEST_CASE("jwt: a lifetime beyond access_ttl is refused") {
  const auto s = settings();  // access_ttl 900 s, leeway 30 s
  CHECK(verify_access_token(sign_raw(good_header, payload(now_s, now_s, now_s + 900), s.secret), s, at(now_s)).ok());
  CHECK(error_of(sign_raw(good_header, payload(now_s, now_s, now_s + 901), s.secret)) == jwt_error::too_long_lived);
  CHECK(error_of(sign_raw(good_header, payload(now_s, now_s, now_s + 10LL * 365 * 86400), s.secret)) ==
        jwt_error::too_long_lived);
  // iat set back to hide a long exp still cannot reach beyond now + ttl + leeway
  CHECK(error_of(sign_raw(good_header, payload(now_s - 3000, now_s - 3000, now_s + 2000), s.secret)) ==
        jwt_error::too_long_lived);
}

// Found by tests/fuzz (jwt): exp <= iat within the leeway passed every check, though sign_access_token
// refuses to mint such a token (and threw when the accepted claims were signed again).
TEST_CASE("jwt: a token that expires when or before it was issued is refused") {
  const auto s = settings();
  CHECK(error_of(sign_raw(good_header, payload(now_s - 10, now_s - 10, now_s - 10), s.secret)) == jwt_error::malformed);
  CHECK(error_of(sign_raw(good_header, payload(now_s, now_s - 10, now_s - 5), s.secret)) == jwt_error::malformed);
  CHECK(verify_access_token(sign_raw(good_header, payload(now_s - 10, now_s - 10, now_s - 9), s.secret), s, at(now_s))
            .ok());  // one second of life, expired 9 s ago: still within the 30 s leeway
}

TEST_CASE("password policy: common passwords, trivial patterns, context words") {
  for (const char* common : {"12345678", "password", "Password1", "PASSWORD123!", "iloveyou", "sunshine"}) {
    CAPTURE(common);
    REQUIRE(password_problem(common, "a@b.example"));
    CHECK(password_problem(common, "a@b.example")->find("commonly used") != std::string::npos);
  }
  for (const char* trivial : {"        ", "aaaaaaaa", "abcdefgh", "98765432", "abababab", "poiuytrewq", "cde3xsw2"}) {
    CAPTURE(trivial);
    REQUIRE(password_problem(trivial, "a@b.example"));
    CHECK(password_problem(trivial, "a@b.example")->find("pattern") != std::string::npos);
  }
  CHECK(password_problem("my mercato account", "a@b.example")->find("name of this service") != std::string::npos);
  CHECK(password_problem("alice-rocks-1999", "alice@b.example")->find("email") != std::string::npos);
  CHECK_FALSE(password_problem("violet tractor sings", "alice@b.example"));
  CHECK(is_common_password("qwerty"));
  CHECK_FALSE(is_common_password("violet tractor sings"));
}

TEST_CASE("jwt: settings are checked") {
  auto s = settings();
  CHECK_FALSE(jwt_settings_problem(s));
  s.secret = std::string(31, 'k');
  CHECK(jwt_settings_problem(s));
  CHECK_THROWS_AS(sign_access_token(make_access_claims("u", {}, "", s, at(now_s)), s), std::invalid_argument);
  CHECK_THROWS_AS(verify_access_token("a.b.c", s, at(now_s)), std::invalid_argument);
}

TEST_CASE("random tokens, sha256_hex, constant_time_equal") {
  const auto a = random_token(32);
  const auto b = random_token(32);
  CHECK(a.size() == 43);
  CHECK(a != b);
  CHECK(a.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == std::string::npos);
  CHECK(random_token(16).size() == 22);
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(constant_time_equal("secret", "secret"));
  CHECK(constant_time_equal("", ""));
  CHECK_FALSE(constant_time_equal("secret", "secreT"));
  CHECK_FALSE(constant_time_equal("secret", "secret2"));
  CHECK_FALSE(constant_time_equal("", "x"));
}

// --- TOTP --------------------------------------------------------------------------------------------------

TEST_CASE("totp: RFC 6238 Appendix B vectors (SHA-1), last 6 digits") {
  CHECK(totp_step(at(59)) == 1);
  CHECK(totp_code(rfc_secret, totp_step(at(59))) == "287082");
  CHECK(totp_code(rfc_secret, totp_step(at(1111111109))) == "081804");
  CHECK(totp_code(rfc_secret, totp_step(at(1111111111))) == "050471");
  CHECK(totp_code(rfc_secret, totp_step(at(1234567890))) == "005924");
  CHECK(totp_code(rfc_secret, totp_step(at(2000000000))) == "279037");
  CHECK(totp_code(rfc_secret, 20000000000 / 30) == "353130");  // beyond system_clock's range in ns

  CHECK(verify_totp(rfc_secret, "287082", at(59)) == 1);
  CHECK(verify_totp(rfc_secret, "081804", at(1111111109)) == 37037036);
  CHECK(verify_totp(rfc_secret, "050471", at(1111111111)) == 37037037);
  CHECK(verify_totp(rfc_secret, "005924", at(1234567890)) == 41152263);
  CHECK(verify_totp(rfc_secret, "279037", at(2000000000)) == 66666666);
  // lower-case and padded secrets decode the same
  CHECK(verify_totp("gezdgnbvgy3tqojqgezdgnbvgy3tqojq", "287082", at(59)) == 1);
}

TEST_CASE("totp: window of one step either side, matched step returned") {
  const auto now = at(1234567890);
  const auto step = totp_step(now);
  const auto code = [&](std::int64_t s) { return *totp_code(rfc_secret, s); };
  CHECK(verify_totp(rfc_secret, code(step), now) == step);
  CHECK(verify_totp(rfc_secret, code(step - 1), now) == step - 1);
  CHECK(verify_totp(rfc_secret, code(step + 1), now) == step + 1);
  CHECK_FALSE(verify_totp(rfc_secret, code(step - 2), now));
  CHECK_FALSE(verify_totp(rfc_secret, code(step + 2), now));
  CHECK(verify_totp(rfc_secret, code(step + 2), now, 2) == step + 2);
  CHECK(verify_totp(rfc_secret, code(step), now, 0) == step);
  CHECK_FALSE(verify_totp(rfc_secret, code(step + 1), now, 0));
  CHECK_FALSE(verify_totp(rfc_secret, code(step), now, totp_max_window + 1));
}

TEST_CASE("totp: malformed codes and secrets are refused") {
  const auto now = at(59);
  CHECK_FALSE(verify_totp(rfc_secret, "28708", now));     // 5 digits
  CHECK_FALSE(verify_totp(rfc_secret, "2870820", now));   // 7 digits
  CHECK_FALSE(verify_totp(rfc_secret, "94287082", now));  // the 8-digit form
  CHECK_FALSE(verify_totp(rfc_secret, "28708a", now));
  CHECK_FALSE(verify_totp(rfc_secret, " 287082", now));
  CHECK_FALSE(verify_totp(rfc_secret, "287 82", now));
  CHECK_FALSE(verify_totp(rfc_secret, "+28708", now));
  CHECK_FALSE(verify_totp(rfc_secret, "", now));
  CHECK_FALSE(verify_totp(rfc_secret, "\xD9\xA2\xD9\xA8\xD9\xA7", now));  // Arabic-Indic digits
  CHECK_FALSE(verify_totp("not base32!", "287082", now));
  CHECK_FALSE(verify_totp("GEZDGNBV", "287082", now));  // 5 bytes: too short a secret
  CHECK_FALSE(totp_code(rfc_secret, -1));
}

TEST_CASE("totp: new secrets and the otpauth URI") {
  const auto a = new_totp_secret();
  CHECK(a.size() == 32);
  CHECK(a.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") == std::string::npos);
  CHECK(a != new_totp_secret());
  CHECK(totp_code(a, 1));

  CHECK(otpauth_uri("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "alice+shop@example.com") ==
        "otpauth://totp/mercato:alice%2Bshop%40example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
        "&issuer=mercato&algorithm=SHA1&digits=6&period=30");
  CHECK(otpauth_uri("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "bob@example.com", "Mercato Shop: EU&Co") ==
        "otpauth://totp/Mercato%20Shop%3A%20EU%26Co:bob%40example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
        "&issuer=Mercato%20Shop%3A%20EU%26Co&algorithm=SHA1&digits=6&period=30");
}
