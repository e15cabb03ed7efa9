#include "persistence/uuid.hpp"

#include <cctype>
#include <chrono>

#include <boost/uuid/random_generator.hpp>
#include <boost/uuid/uuid.hpp>
#include <boost/uuid/uuid_io.hpp>

namespace mercato::persistence {

std::string time_ordered_uuid(std::uint64_t unix_ms) {
  thread_local boost::uuids::random_generator gen;  // the operating system's CSPRNG
  boost::uuids::uuid u = gen();                    // version 4: random, variant bits set
  for (int i = 0; i < 6; ++i) {                    // bytes 0-5: the timestamp, big-endian
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
