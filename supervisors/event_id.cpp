#include "supervisors/event_id.hpp"

#include <random>

namespace mercato::supervisors {

std::string new_event_id() {
  thread_local std::mt19937_64 gen{std::random_device{}()};
  static constexpr char hex[] = "0123456789abcdef";
  std::string out(36, '-');
  std::uint64_t a = gen();
  std::uint64_t b = gen();
  a = (a & ~0xF000ULL) | 0x4000ULL;                    // version 4
  b = (b & ~(0xCULL << 60)) | (0x8ULL << 60);          // variant 10xx
  const std::uint64_t parts[2] = {a, b};
  int pos = 0;
  for (int w = 0; w < 2; ++w) {
    for (int i = 15; i >= 0; --i) {
      if (pos == 8 || pos == 13 || pos == 18 || pos == 23) {
        ++pos;
      }
      out[pos++] = hex[(parts[w] >> (i * 4)) & 0xF];
    }
  }
  return out;
}

}  // namespace mercato::supervisors
