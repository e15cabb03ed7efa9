#include "security/totp.hpp"

#include <array>
#include <stdexcept>
#include <vector>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>

namespace mercato::security {
namespace {

constexpr std::string_view base32_alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
constexpr std::size_t min_secret_bytes = 16;  // RFC 4226 §4 R6: at least 128 bits

void ensure_sodium() {
  static const bool ready = sodium_init() >= 0;
  if (!ready) {
    throw std::runtime_error("libsodium could not be initialised");
  }
}

std::string base32_encode(const unsigned char* data, std::size_t n) {
  std::string out;
  out.reserve((n * 8 + 4) / 5);
  std::uint32_t buffer = 0;
  int bits = 0;
  for (std::size_t i = 0; i < n; ++i) {
    buffer = (buffer << 8) | data[i];
    bits += 8;
    while (bits >= 5) {
      out.push_back(base32_alphabet[(buffer >> (bits - 5)) & 0x1F]);
      bits -= 5;
    }
  }
  if (bits > 0) {
    out.push_back(base32_alphabet[(buffer << (5 - bits)) & 0x1F]);
  }
  return out;
}

// RFC 4648 base32, case-insensitive, trailing '=' padding optional; anything else is invalid.
std::optional<std::vector<unsigned char>> base32_decode(std::string_view in) {
  while (!in.empty() && in.back() == '=') {
    in.remove_suffix(1);
  }
  const std::size_t rest = in.size() % 8;
  if (rest == 1 || rest == 3 || rest == 6) {
    return std::nullopt;  // no byte count encodes to these lengths
  }
  std::vector<unsigned char> out;
  out.reserve(in.size() * 5 / 8);
  std::uint32_t buffer = 0;
  int bits = 0;
  for (char c : in) {
    int v = -1;
    if (c >= 'A' && c <= 'Z') {
      v = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
      v = c - 'a';
    } else if (c >= '2' && c <= '7') {
      v = c - '2' + 26;
    }
    if (v < 0) {
      return std::nullopt;
    }
    buffer = (buffer << 5) | static_cast<std::uint32_t>(v);
    bits += 5;
    if (bits >= 8) {
      out.push_back(static_cast<unsigned char>((buffer >> (bits - 8)) & 0xFF));
      bits -= 8;
    }
  }
  return out;
}

// RFC 4226 HOTP with dynamic truncation, 6 digits.
std::array<char, totp_digits> hotp(const std::vector<unsigned char>& key, std::uint64_t counter) {
  unsigned char msg[8];
  for (int i = 7; i >= 0; --i) {
    msg[i] = static_cast<unsigned char>(counter & 0xFF);
    counter >>= 8;
  }
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  if (HMAC(EVP_sha1(), key.data(), static_cast<int>(key.size()), msg, sizeof msg, mac, &mac_len) == nullptr ||
      mac_len != 20) {
    throw std::runtime_error("HMAC-SHA1 failed");
  }
  const unsigned offset = mac[19] & 0x0F;
  std::uint32_t bin = (static_cast<std::uint32_t>(mac[offset] & 0x7F) << 24) |
                      (static_cast<std::uint32_t>(mac[offset + 1]) << 16) |
                      (static_cast<std::uint32_t>(mac[offset + 2]) << 8) | static_cast<std::uint32_t>(mac[offset + 3]);
  bin %= 1000000;
  std::array<char, totp_digits> code{};
  for (int i = totp_digits - 1; i >= 0; --i) {
    code[static_cast<std::size_t>(i)] = static_cast<char>('0' + bin % 10);
    bin /= 10;
  }
  OPENSSL_cleanse(mac, sizeof mac);
  return code;
}

std::optional<std::vector<unsigned char>> secret_key(std::string_view secret_base32) {
  auto key = base32_decode(secret_base32);
  if (!key || key->size() < min_secret_bytes) {
    return std::nullopt;
  }
  return key;
}

std::string percent_encode(std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~') {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 0x0F]);
    }
  }
  return out;
}

}  // namespace

std::string new_totp_secret() {
  ensure_sodium();
  unsigned char raw[20];
  randombytes_buf(raw, sizeof raw);
  auto out = base32_encode(raw, sizeof raw);
  sodium_memzero(raw, sizeof raw);
  return out;
}

std::string otpauth_uri(std::string_view secret_base32, std::string_view account_email, std::string_view issuer) {
  const auto iss = percent_encode(issuer);
  return "otpauth://totp/" + iss + ":" + percent_encode(account_email) + "?secret=" + percent_encode(secret_base32) +
         "&issuer=" + iss + "&algorithm=SHA1&digits=" + std::to_string(totp_digits) +
         "&period=" + std::to_string(totp_period_seconds);
}

std::int64_t totp_step(std::chrono::system_clock::time_point t) {
  const auto s = std::chrono::floor<std::chrono::seconds>(t.time_since_epoch()).count();
  // floor division, so times before the epoch give negative steps (refused by totp_code/verify_totp)
  return s >= 0 ? s / totp_period_seconds : -((-s + totp_period_seconds - 1) / totp_period_seconds);
}

std::optional<std::string> totp_code(std::string_view secret_base32, std::int64_t step) {
  const auto key = secret_key(secret_base32);
  if (!key || step < 0) {
    return std::nullopt;
  }
  const auto code = hotp(*key, static_cast<std::uint64_t>(step));
  return std::string(code.data(), code.size());
}

std::optional<std::int64_t> verify_totp(std::string_view secret_base32, std::string_view code,
                                        std::chrono::system_clock::time_point now, unsigned window) {
  if (code.size() != static_cast<std::size_t>(totp_digits)) {
    return std::nullopt;
  }
  for (char c : code) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
  }
  const auto key = secret_key(secret_base32);
  if (!key || window > totp_max_window) {
    return std::nullopt;
  }
  ensure_sodium();
  const std::int64_t current = totp_step(now);
  std::optional<std::int64_t> matched;
  // Order 0, -1, +1, -2, +2, ...: the first match wins, but every step is computed and compared.
  for (unsigned distance = 0; distance <= window; ++distance) {
    for (int sign : {-1, 1}) {
      if (distance == 0 && sign == 1) {
        continue;
      }
      const std::int64_t step = current + sign * static_cast<std::int64_t>(distance);
      if (step < 0) {
        continue;
      }
      const auto expected = hotp(*key, static_cast<std::uint64_t>(step));
      const bool equal = sodium_memcmp(expected.data(), code.data(), expected.size()) == 0;
      if (equal && !matched) {
        matched = step;
      }
    }
  }
  return matched;
}

}  // namespace mercato::security
