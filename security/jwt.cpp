#include "security/jwt.hpp"

#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <stdexcept>
#include <utility>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <jwt.h>
#include <sodium.h>

namespace mercato::security {
namespace {

namespace json = boost::json;
using std::chrono::system_clock;

void ensure_sodium() {
  static const bool ready = sodium_init() >= 0;
  if (!ready) {
    throw std::runtime_error("libsodium could not be initialised");
  }
}

void require_usable(const jwt_settings& s) {
  if (auto problem = jwt_settings_problem(s)) {
    throw std::invalid_argument("jwt settings: " + *problem);
  }
}

std::string base64url_encode(const unsigned char* data, std::size_t n) {
  constexpr int variant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
  std::string out(sodium_base64_ENCODED_LEN(n, variant), '\0');
  sodium_bin2base64(out.data(), out.size(), data, n, variant);
  out.resize(out.size() - 1);  // the encoded length counts the terminating NUL
  return out;
}

// Strict base64url without padding: only the URL-safe alphabet, unused trailing bits must be zero.
std::optional<std::string> base64url_decode(std::string_view in) {
  std::string out(in.size() / 4 * 3 + 3, '\0');
  std::size_t len = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), in.data(), in.size(), nullptr,
                        &len, nullptr, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0) {
    return std::nullopt;
  }
  out.resize(len);
  return out;
}

std::optional<json::object> decode_json_object(std::string_view part) {
  auto text = base64url_decode(part);
  if (!text) {
    return std::nullopt;
  }
  boost::system::error_code ec;
  json::value v = json::parse(*text, ec);
  if (ec || !v.is_object()) {
    return std::nullopt;
  }
  return std::move(v.as_object());
}

bool is_base64url_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

// NumericDate as whole seconds; only integers from 1970 up to what system_clock::time_point holds
// (about year 2262 with libstdc++'s nanoseconds), so converting a claim cannot overflow.
constexpr std::int64_t max_numeric_date =
    std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::duration::max()).count() - 1;

std::optional<std::int64_t> numeric_date(const json::value& v) {
  std::int64_t n = 0;
  if (v.is_int64()) {
    n = v.get_int64();
  } else if (v.is_uint64() && v.get_uint64() <= static_cast<std::uint64_t>(max_numeric_date)) {
    n = static_cast<std::int64_t>(v.get_uint64());
  } else {
    return std::nullopt;
  }
  if (n < 0 || n > max_numeric_date) {
    return std::nullopt;
  }
  return n;
}

std::int64_t unix_seconds(system_clock::time_point t) {
  return std::chrono::floor<std::chrono::seconds>(t.time_since_epoch()).count();
}

system_clock::time_point from_unix(std::int64_t s) { return system_clock::time_point(std::chrono::seconds(s)); }

const json::string* string_member(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  return (it != o.end() && it->value().is_string()) ? &it->value().get_string() : nullptr;
}

struct jwt_deleter {
  void operator()(jwt_t* j) const { jwt_free(j); }
};
using jwt_ptr = std::unique_ptr<jwt_t, jwt_deleter>;

struct malloc_deleter {
  void operator()(char* p) const { std::free(p); }
};

}  // namespace

std::optional<std::string> jwt_settings_problem(const jwt_settings& s) {
  if (s.secret.size() < jwt_min_secret_bytes) {
    return "the HS256 secret must be at least " + std::to_string(jwt_min_secret_bytes) + " bytes";
  }
  if (s.secret.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    return "the HS256 secret is too long";
  }
  if (s.issuer.empty() || s.audience.empty()) {
    return "issuer and audience must not be empty";
  }
  if (s.access_ttl.count() <= 0 || s.leeway.count() < 0 || s.leeway > std::chrono::hours(1)) {
    return "access_ttl must be positive and leeway between 0 and 1 h";
  }
  return std::nullopt;
}

access_claims make_access_claims(std::string subject, std::vector<std::string> roles, std::string vendor_id,
                                 const jwt_settings& s, system_clock::time_point now) {
  access_claims c;
  c.subject = std::move(subject);
  c.roles = std::move(roles);
  c.vendor_id = std::move(vendor_id);
  c.token_id = random_token(16);
  c.issued_at = from_unix(unix_seconds(now));
  c.expires_at = c.issued_at + s.access_ttl;
  return c;
}

std::string sign_access_token(const access_claims& c, const jwt_settings& s) {
  require_usable(s);
  if (c.subject.empty()) {
    throw std::invalid_argument("jwt: empty subject");
  }
  const auto iat = unix_seconds(c.issued_at);
  const auto exp = unix_seconds(c.expires_at);
  if (iat < 0 || exp > max_numeric_date || exp <= iat) {
    throw std::invalid_argument("jwt: expires_at must follow issued_at");
  }
  json::object payload;
  payload["iss"] = json::string_view(s.issuer);
  payload["aud"] = json::string_view(s.audience);
  payload["sub"] = json::string_view(c.subject);
  payload["iat"] = iat;
  payload["nbf"] = iat;
  payload["exp"] = exp;
  if (!c.token_id.empty()) {
    payload["jti"] = json::string_view(c.token_id);
  }
  json::array roles;
  for (const auto& r : c.roles) {
    roles.emplace_back(json::string_view(r));
  }
  payload["roles"] = std::move(roles);
  if (!c.vendor_id.empty()) {
    payload["vendor_id"] = json::string_view(c.vendor_id);
  }
  if (!c.session_id.empty()) {
    payload["sid"] = json::string_view(c.session_id);
  }
  const std::string payload_text = json::serialize(payload);

  jwt_t* raw = nullptr;
  if (jwt_new(&raw) != 0) {
    throw std::runtime_error("jwt_new failed");
  }
  jwt_ptr j(raw);
  if (jwt_set_alg(j.get(), JWT_ALG_HS256, reinterpret_cast<const unsigned char*>(s.secret.data()),
                  static_cast<int>(s.secret.size())) != 0) {
    throw std::runtime_error("jwt_set_alg failed");
  }
  if (!s.kid.empty() && jwt_add_header(j.get(), "kid", s.kid.c_str()) != 0) {
    throw std::runtime_error("jwt_add_header(kid) failed");
  }
  if (jwt_add_grants_json(j.get(), payload_text.c_str()) != 0) {
    throw std::runtime_error("jwt_add_grants_json failed (a claim contains NUL?)");
  }
  std::unique_ptr<char, malloc_deleter> out(jwt_encode_str(j.get()));  // typ "JWT" is added by libjwt
  if (!out) {
    throw std::runtime_error("jwt_encode_str failed");
  }
  return std::string(out.get());
}

std::string_view to_string(jwt_error e) {
  switch (e) {
    case jwt_error::malformed: return "malformed";
    case jwt_error::bad_signature: return "bad_signature";
    case jwt_error::wrong_algorithm: return "wrong_algorithm";
    case jwt_error::wrong_kid: return "wrong_kid";
    case jwt_error::expired: return "expired";
    case jwt_error::not_yet_valid: return "not_yet_valid";
    case jwt_error::issued_in_future: return "issued_in_future";
    case jwt_error::wrong_issuer: return "wrong_issuer";
    case jwt_error::wrong_audience: return "wrong_audience";
    case jwt_error::missing_claim: return "missing_claim";
    case jwt_error::too_long_lived: return "too_long_lived";
  }
  return "unknown";
}

verified_token verify_access_token(std::string_view token, const jwt_settings& s, system_clock::time_point now) {
  require_usable(s);

  // 1. Shape: header.payload.signature, base64url characters only, bounded size (libjwt copies the token
  //    onto the stack), non-empty signature.
  if (token.empty() || token.size() > jwt_max_token_bytes) {
    return jwt_error::malformed;
  }
  const auto dot1 = token.find('.');
  const auto dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
    return jwt_error::malformed;
  }
  for (char c : token) {
    if (c != '.' && !is_base64url_char(c)) {
      return jwt_error::malformed;
    }
  }
  const auto head_part = token.substr(0, dot1);
  const auto body_part = token.substr(dot1 + 1, dot2 - dot1 - 1);
  const auto sig_part = token.substr(dot2 + 1);

  // 2. Header, read by us, never trusted for the choice of algorithm or key.
  const auto header = decode_json_object(head_part);
  if (!header) {
    return jwt_error::malformed;
  }
  const auto alg_it = header->find("alg");
  if (alg_it == header->end()) {
    return jwt_error::malformed;
  }
  if (!alg_it->value().is_string() || alg_it->value().get_string() != "HS256") {
    return jwt_error::wrong_algorithm;
  }
  // Only the parameters we write are accepted: crit names extensions we do not understand (RFC 7515
  // §4.1.11), jku/jwk/x5u/x5c point at keys an attacker chooses, cty/zip/b64 change how the payload is read.
  for (const auto& member : *header) {
    if (member.key() != "alg" && member.key() != "typ" && member.key() != "kid") {
      return jwt_error::malformed;
    }
  }
  if (auto it = header->find("typ"); it != header->end()) {
    const auto* typ = it->value().if_string();
    if (typ == nullptr || typ->size() != 3 || ((*typ)[0] | 0x20) != 'j' || ((*typ)[1] | 0x20) != 'w' ||
        ((*typ)[2] | 0x20) != 't') {
      return jwt_error::malformed;
    }
  }
  if (auto it = header->find("kid"); it == header->end()) {
    if (!s.kid.empty()) {
      return jwt_error::wrong_kid;
    }
  } else if (!it->value().is_string() || it->value().get_string() != s.kid) {
    return jwt_error::wrong_kid;
  }
  const auto payload = decode_json_object(body_part);
  if (!payload || sig_part.empty()) {
    return jwt_error::malformed;
  }

  // 3. Signature: libjwt recomputes HMAC-SHA256 over "header.payload" with our key and compares in
  //    constant time. Its own alg is checked again, in case its JSON parser read the header differently.
  {
    const std::string t(token);
    jwt_t* raw = nullptr;
    const int rc = jwt_decode(&raw, t.c_str(), reinterpret_cast<const unsigned char*>(s.secret.data()),
                              static_cast<int>(s.secret.size()));
    jwt_ptr j(raw);
    if (rc != 0 || !j) {
      return jwt_error::bad_signature;
    }
    if (jwt_get_alg(j.get()) != JWT_ALG_HS256) {
      return jwt_error::wrong_algorithm;
    }
  }

  // 4. Claims (from the payload bytes the signature covers).
  const json::object& p = *payload;
  for (const char* name : {"iss", "aud", "sub", "exp", "nbf", "iat"}) {
    if (!p.contains(name)) {
      return jwt_error::missing_claim;
    }
  }
  const auto* iss = string_member(p, "iss");
  const auto* sub = string_member(p, "sub");
  const auto exp = numeric_date(p.at("exp"));
  const auto nbf = numeric_date(p.at("nbf"));
  const auto iat = numeric_date(p.at("iat"));
  if (iss == nullptr || sub == nullptr || !exp || !nbf || !iat) {
    return jwt_error::malformed;
  }
  if (sub->empty()) {
    return jwt_error::missing_claim;
  }
  access_claims c;
  c.subject = std::string(*sub);
  if (auto it = p.find("roles"); it != p.end()) {
    const auto* arr = it->value().if_array();
    if (arr == nullptr) {
      return jwt_error::malformed;
    }
    for (const auto& r : *arr) {
      if (!r.is_string()) {
        return jwt_error::malformed;
      }
      c.roles.emplace_back(r.get_string());
    }
  }
  for (auto [name, field] : {std::pair{"vendor_id", &c.vendor_id}, std::pair{"jti", &c.token_id},
                             std::pair{"sid", &c.session_id}}) {
    if (auto it = p.find(name); it != p.end()) {
      if (!it->value().is_string()) {
        return jwt_error::malformed;
      }
      *field = std::string(it->value().get_string());
    }
  }

  if (*iss != s.issuer) {
    return jwt_error::wrong_issuer;
  }
  bool audience_ok = false;
  const auto& aud = p.at("aud");
  if (aud.is_string()) {
    audience_ok = aud.get_string() == s.audience;
  } else if (aud.is_array()) {
    for (const auto& a : aud.get_array()) {
      if (!a.is_string()) {
        return jwt_error::malformed;
      }
      audience_ok = audience_ok || a.get_string() == s.audience;
    }
  } else {
    return jwt_error::malformed;
  }
  if (!audience_ok) {
    return jwt_error::wrong_audience;
  }

  // A token that ends before it begins cannot have been minted by sign_access_token (which refuses
  // exp <= iat); within the leeway it would otherwise pass every check below.
  if (*exp <= *iat) {
    return jwt_error::malformed;
  }
  // Times: now is within the supported range, so none of these sums can overflow.
  const std::int64_t t = unix_seconds(now);
  const std::int64_t leeway = s.leeway.count();
  if (t - leeway >= *exp) {
    return jwt_error::expired;
  }
  if (t + leeway < *nbf) {
    return jwt_error::not_yet_valid;
  }
  if (t + leeway < *iat) {
    return jwt_error::issued_in_future;
  }
  // A lifetime longer than ours was not minted by this configuration (or a leaked key is being used to
  // make long-lived tokens): refuse it rather than honour a far-future exp.
  const std::int64_t ttl = s.access_ttl.count();
  if (*exp - *iat > ttl || *exp - t > ttl + leeway) {
    return jwt_error::too_long_lived;
  }
  c.issued_at = from_unix(*iat);
  c.expires_at = from_unix(*exp);
  return c;
}

void random_bytes(void* out, std::size_t n) {
  ensure_sodium();
  randombytes_buf(out, n);
}

std::string random_token(std::size_t bytes) {
  std::string raw(bytes, '\0');
  random_bytes(raw.data(), raw.size());
  auto out = base64url_encode(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
  sodium_memzero(raw.data(), raw.size());
  return out;
}

std::string sha256_hex(std::string_view data) {
  ensure_sodium();
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(data.data()), data.size());
  char hex[crypto_hash_sha256_BYTES * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
  return std::string(hex, crypto_hash_sha256_BYTES * 2);
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  ensure_sodium();
  if (a.size() != b.size()) {
    return false;
  }
  return a.empty() || sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace mercato::security
