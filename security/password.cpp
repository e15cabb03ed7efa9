#include "security/password.hpp"

#include <cstdint>
#include <mutex>
#include <stdexcept>

#include <sodium.h>

#include "security/password_strength.hpp"

namespace mercato::security {
namespace {

void ensure_sodium() {
  static const bool ready = sodium_init() >= 0;  // thread-safe static init; sodium_init is idempotent
  if (!ready) {
    throw std::runtime_error("libsodium could not be initialised");
  }
}

void check_params(const password_params& p) {
  if (p.iterations < crypto_pwhash_argon2id_OPSLIMIT_MIN || p.iterations > crypto_pwhash_argon2id_OPSLIMIT_MAX ||
      p.memory_bytes < crypto_pwhash_argon2id_MEMLIMIT_MIN || p.memory_bytes > crypto_pwhash_argon2id_MEMLIMIT_MAX) {
    throw std::invalid_argument("argon2id parameters out of range");
  }
}

// Strict UTF-8 decoding (no overlong forms, no surrogates, nothing above U+10FFFF).
// Returns the number of code points, or nullopt for invalid UTF-8.
std::optional<std::size_t> utf8_length(std::string_view s) {
  std::size_t count = 0;
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t extra = 0;
    std::uint32_t cp = 0;
    std::uint32_t min = 0;
    if (c < 0x80) {
      cp = c;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1Fu;
      min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0Fu;
      min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07u;
      min = 0x10000;
    } else {
      return std::nullopt;  // continuation byte in lead position, or 0xF8..0xFF
    }
    if (s.size() - i <= extra) {
      return std::nullopt;
    }
    for (std::size_t k = 1; k <= extra; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) {
        return std::nullopt;
      }
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return std::nullopt;
    }
    i += extra + 1;
    ++count;
  }
  return count;
}

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && is_space(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

bool is_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }  // after lower-casing

bool is_atext(char c) {
  if (is_alnum(c)) {
    return true;
  }
  static constexpr std::string_view specials = "!#$%&'*+/=?^_`{|}~-";
  return specials.find(c) != std::string_view::npos;
}

bool valid_local(std::string_view local) {
  if (local.empty() || local.size() > 64 || local.front() == '.' || local.back() == '.') {
    return false;
  }
  char prev = 0;
  for (char c : local) {
    if (c == '.') {
      if (prev == '.') {
        return false;
      }
    } else if (!is_atext(c)) {
      return false;
    }
    prev = c;
  }
  return true;
}

bool valid_domain(std::string_view domain) {
  if (domain.empty() || domain.size() > 253) {
    return false;
  }
  std::size_t labels = 0;
  while (true) {
    const auto dot = domain.find('.');
    const auto label = domain.substr(0, dot);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      if (!is_alnum(c) && c != '-') {
        return false;
      }
    }
    ++labels;
    if (dot == std::string_view::npos) {
      break;
    }
    domain.remove_prefix(dot + 1);  // a trailing dot leaves an empty label: rejected above
  }
  return labels >= 2;
}

}  // namespace

std::string hash_password(std::string_view pw, const password_params& p) {
  ensure_sodium();
  check_params(p);
  char out[crypto_pwhash_argon2id_STRBYTES];
  if (crypto_pwhash_argon2id_str(out, pw.data(), pw.size(), p.iterations, p.memory_bytes) != 0) {
    throw std::runtime_error("argon2id hashing failed (out of memory?)");
  }
  return std::string(out);
}

bool verify_password(std::string_view pw, std::string_view stored) {
  ensure_sodium();
  // libsodium wants a NUL-terminated string that fits its buffer size.
  if (stored.empty() || stored.size() >= crypto_pwhash_argon2id_STRBYTES ||
      stored.find('\0') != std::string_view::npos) {
    return false;
  }
  const std::string s(stored);
  return crypto_pwhash_str_verify(s.c_str(), pw.data(), pw.size()) == 0;
}

bool verify_password_dummy(std::string_view pw, const password_params& p) {
  static std::mutex mu;
  static password_params cached_params{0, 0};
  static std::string cached_hash;
  std::string hash;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (cached_hash.empty() || cached_params.iterations != p.iterations ||
        cached_params.memory_bytes != p.memory_bytes) {
      cached_hash = hash_password("mercato dummy password, never valid", p);
      cached_params = p;
    }
    hash = cached_hash;
  }
  (void)verify_password(pw, hash);
  return false;
}

bool needs_rehash(std::string_view stored, const password_params& p) {
  ensure_sodium();
  check_params(p);
  if (stored.empty() || stored.size() >= crypto_pwhash_argon2id_STRBYTES ||
      stored.find('\0') != std::string_view::npos) {
    return true;
  }
  const std::string s(stored);
  // 0: same parameters; 1: other parameters; -1: not an argon2id string.
  return crypto_pwhash_argon2id_str_needs_rehash(s.c_str(), p.iterations, p.memory_bytes) != 0;
}

std::optional<std::string> password_problem(std::string_view pw, std::string_view email) {
  const auto length = utf8_length(pw);
  if (!length) {
    return "password must be valid UTF-8 text";
  }
  if (*length < 8) {
    return "password must be at least 8 characters long";
  }
  if (*length > 128) {
    return "password must be at most 128 characters long";
  }
  const auto e = trim(email);
  if (!e.empty() && e.size() == pw.size()) {
    bool same = true;
    for (std::size_t i = 0; i < pw.size(); ++i) {
      same = same && ascii_lower(pw[i]) == ascii_lower(e[i]);
    }
    if (same) {
      return "password must not be the same as the email address";
    }
  }
  return password_weakness(pw, e);
}

std::optional<std::string> normalize_email(std::string_view email) {
  const auto t = trim(email);
  if (t.empty() || t.size() > 254) {
    return std::nullopt;
  }
  std::string out;
  out.reserve(t.size());
  for (char c : t) {
    if (static_cast<unsigned char>(c) >= 0x80) {
      return std::nullopt;  // non-ASCII: not supported (documented)
    }
    out.push_back(ascii_lower(c));
  }
  const auto at = out.find('@');
  if (at == std::string::npos || out.find('@', at + 1) != std::string::npos) {
    return std::nullopt;
  }
  const std::string_view view(out);
  if (!valid_local(view.substr(0, at)) || !valid_domain(view.substr(at + 1))) {
    return std::nullopt;
  }
  return out;
}

}  // namespace mercato::security
