#include "persistence/uuid.hpp"

#include <array>
#include <cctype>
#include <chrono>
#include <cstring>

#include <boost/uuid/uuid.hpp>
#include <boost/uuid/uuid_io.hpp>

#include "security/jwt.hpp"

namespace mercato::persistence {

namespace {

// A uuid's 16 bytes from the operating system's CSPRNG (security::random_bytes), refilled 4 KB at a time into a
// per-thread pool and each handed out once. Boost's generator made one getrandom call per UUID; an
// add-to-cart makes three UUIDs, and those calls were 1.5 % of the node's CPU at its maximum (issue 14).
void fill_random(boost::uuids::uuid& u) {
  constexpr std::size_t n = sizeof(u.data);
  thread_local std::array<std::uint8_t, 4096> pool;
  thread_local std::size_t used = pool.size();
  if (pool.size() - used < n) {
    security::random_bytes(pool.data(), pool.size());
    used = 0;
  }
  std::memcpy(u.data, pool.data() + used, n);
  std::memset(pool.data() + used, 0, n);  // no copy of an id's random bits stays behind in the pool
  used += n;
}

}  // namespace

std::string time_ordered_uuid(std::uint64_t unix_ms) {
  boost::uuids::uuid u;
  fill_random(u);
  for (int i = 0; i < 6; ++i) {  // bytes 0-5: the timestamp, big-endian
    u.data[i] = static_cast<std::uint8_t>(unix_ms >> (8 * (5 - i)));
  }
  u.data[6] = static_cast<std::uint8_t>(0x70 | (u.data[6] & 0x0F));  // version 7
  u.data[8] = static_cast<std::uint8_t>(0x80 | (u.data[8] & 0x3F));  // variant 10xx
  return boost::uuids::to_string(u);
}

std::string time_ordered_uuid() {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return time_ordered_uuid(static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(now).count()));
}

bool is_uuid_text(std::string_view s) {
  if (s.size() != 36) {
    return false;
  }
  for (std::size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i]))) {
      return false;
    }
  }
  return true;
}

}  // namespace mercato::persistence
