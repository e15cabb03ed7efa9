#include "http/codec.hpp"

#include <cctype>

#include <openssl/evp.h>

#include "persistence/uuid.hpp"

namespace mercato::http {

std::string base64url_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  while (!out.empty() && out.back() == '=') {
    out.pop_back();
  }
  for (auto& c : out) {
    if (c == '+') {
      c = '-';
    } else if (c == '/') {
      c = '_';
    }
  }
  return out;
}

std::optional<std::string> base64url_decode(std::string_view text) {
  if (text.empty() || text.size() > 4096) {
    return std::nullopt;
  }
  std::string in(text);
  for (auto& c : in) {
    if (c == '-') {
      c = '+';
    } else if (c == '_') {
      c = '/';
    } else if (!(std::isalnum(static_cast<unsigned char>(c)))) {
      return std::nullopt;
    }
  }
  const std::size_t pad = (4 - in.size() % 4) % 4;
  if (pad == 3) {
    return std::nullopt;
  }
  in.append(pad, '=');
  std::string out(3 * in.size() / 4, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  if (n < 0) {
    return std::nullopt;
  }
  // EVP_DecodeBlock counts the padding as zero bytes.
  out.resize(static_cast<std::size_t>(n) - pad);
  return out;
}

bool is_uuid(std::string_view s) { return persistence::is_uuid_text(s); }

std::string etag_for_version(std::int64_t version) { return "\"" + std::to_string(version) + "\""; }

bool etag_matches(std::string_view header, std::string_view etag) {
  std::size_t i = 0;
  while (i < header.size()) {
    while (i < header.size() && (header[i] == ' ' || header[i] == ',' || header[i] == '\t')) {
      ++i;
    }
    if (i >= header.size()) {
      break;
    }
    if (header[i] == '*') {
      return true;
    }
    if (header.substr(i, 2) == "W/") {
      i += 2;
    }
    auto end = header.find(',', i);
    if (end == std::string_view::npos) {
      end = header.size();
    }
    auto tag = header.substr(i, end - i);
    while (!tag.empty() && (tag.back() == ' ' || tag.back() == '\t')) {
      tag.remove_suffix(1);
    }
    if (tag == etag) {
      return true;
    }
    i = end;
  }
  return false;
}

std::optional<std::int64_t> if_match_version(std::string_view h) {
  if (h.empty() || h == "*") {
    return 0;
  }
  if (h.substr(0, 2) == "W/") {
    h.remove_prefix(2);
  }
  if (h.size() < 3 || h.front() != '"' || h.back() != '"') {
    return std::nullopt;
  }
  std::int64_t v = 0;
  for (char c : h.substr(1, h.size() - 2)) {
    if (c < '0' || c > '9' || v > 1'000'000'000'000) {
      return std::nullopt;
    }
    v = v * 10 + (c - '0');
  }
  return v > 0 ? std::optional<std::int64_t>(v) : std::nullopt;
}

}  // namespace mercato::http
