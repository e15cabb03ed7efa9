#include "persistence/uuid.hpp"

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

}  // namespace mercato::persistence
