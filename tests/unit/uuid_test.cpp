// Time-ordered ids (persistence/uuid.hpp): RFC 9562 version 7, ordered by their millisecond, random below it.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <thread>

#include "http/codec.hpp"
#include "persistence/uuid.hpp"

using mercato::persistence::time_ordered_uuid;

namespace {

// The text form the API's id checks accept (http::is_uuid), in lower case as Boost writes it.
bool canonical(const std::string& s) {
  return mercato::http::is_uuid(s) &&
         std::none_of(s.begin(), s.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

}  // namespace

TEST_CASE("a time-ordered uuid is version 7 with the RFC variant and its millisecond in the first 48 bits") {
  const std::uint64_t ms = 0x0193'7a2b'4c5dULL;  // 2024-12-01
  const auto id = time_ordered_uuid(ms);
  CHECK(canonical(id));
  CHECK(id.substr(0, 13) == "01937a2b-4c5d");
  CHECK(id[14] == '7');
  CHECK(std::string("89ab").find(id[19]) != std::string::npos);
}

TEST_CASE("time-ordered uuids sort by their millisecond and differ within one") {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    seen.insert(time_ordered_uuid(1'700'000'000'000ULL));
  }
  CHECK(seen.size() == 1000);  // 74 random bits each
  CHECK(time_ordered_uuid(1'700'000'000'000ULL) < time_ordered_uuid(1'700'000'000'001ULL));
  CHECK(time_ordered_uuid(0x00ff'ffff'ffffULL) < time_ordered_uuid(0x0100'0000'0000ULL));
  const auto now = time_ordered_uuid();
  CHECK(canonical(now));
  CHECK(now > time_ordered_uuid(1'700'000'000'000ULL));  // after 2023-11-14
}

TEST_CASE("uuids drawn across many refills of the per-thread random pool are all distinct and well formed") {
  // 256 uuids use one 4 KB read of the operating system's CSPRNG; 5,000 span about twenty reads, and
  // a thread of its own starts with an empty pool.
  std::set<std::string> seen;
  for (int i = 0; i < 5000; ++i) {
    const auto id = time_ordered_uuid(1'700'000'000'000ULL);
    REQUIRE(canonical(id));
    seen.insert(id);
  }
  std::string other;
  std::thread([&other] { other = time_ordered_uuid(1'700'000'000'000ULL); }).join();
  CHECK(canonical(other));
  seen.insert(other);
  CHECK(seen.size() == 5001);
}
