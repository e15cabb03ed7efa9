#pragma once
// How many distinct ids were seen, in bounded memory: exact up to `exact_limit` ids (their 64-bit
// hashes), then a HyperLogLog sketch of 2^10 one-byte registers (standard error 1.04/sqrt(1024) ≈ 3.3 %).
// Counters merge (a union), so per-minute counts add up to a window's distinct count. Either way one
// counter holds at most about 1 KB, whatever the traffic: the analytics window keeps two per minute for
// a day, and before this kept every cart id, so its memory grew with the day's traffic.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

namespace mercato::actors {

class distinct_count {
 public:
  static constexpr std::size_t exact_limit = 128;
  static constexpr int precision = 10;
  static constexpr std::size_t registers = std::size_t{1} << precision;

  void insert(std::string_view id) { insert_hash(mix(std::hash<std::string_view>{}(id))); }

  void merge(const distinct_count& o) {
    if (o.sketch_) {
      to_sketch();
      for (std::size_t i = 0; i < registers; ++i) {
        (*sketch_)[i] = std::max((*sketch_)[i], (*o.sketch_)[i]);
      }
      return;
    }
    for (auto h : o.exact_) {
      insert_hash(h);
    }
  }

  std::int64_t size() const {
    if (!sketch_) {
      return static_cast<std::int64_t>(exact_.size());
    }
    double sum = 0;
    std::size_t zeros = 0;
    for (auto r : *sketch_) {
      sum += std::ldexp(1.0, -static_cast<int>(r));
      zeros += r == 0 ? 1 : 0;
    }
    const double m = static_cast<double>(registers);
    const double alpha = 0.7213 / (1.0 + 1.079 / m);
    double estimate = alpha * m * m / sum;
    if (estimate <= 2.5 * m && zeros > 0) {
      estimate = m * std::log(m / static_cast<double>(zeros));  // linear counting for small counts
    }
    return static_cast<std::int64_t>(std::llround(estimate));
  }

  bool exact() const { return !sketch_; }

 private:
  static std::uint64_t mix(std::uint64_t x) {  // splitmix64's finaliser: every bit of the id moves every bit
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
  }

  void insert_hash(std::uint64_t h) {
    if (sketch_) {
      add_to_sketch(h);
      return;
    }
    auto at = std::lower_bound(exact_.begin(), exact_.end(), h);
    if (at != exact_.end() && *at == h) {
      return;
    }
    exact_.insert(at, h);
    if (exact_.size() > exact_limit) {
      to_sketch();
    }
  }

  void to_sketch() {
    if (sketch_) {
      return;
    }
    sketch_ = std::make_unique<std::array<std::uint8_t, registers>>();
    sketch_->fill(0);
    for (auto h : exact_) {
      add_to_sketch(h);
    }
    exact_.clear();
    exact_.shrink_to_fit();
  }

  void add_to_sketch(std::uint64_t h) {
    const auto index = static_cast<std::size_t>(h >> (64 - precision));
    const std::uint64_t rest = h << precision;
    const auto rank = static_cast<std::uint8_t>(rest == 0 ? 64 - precision + 1 : __builtin_clzll(rest) + 1);
    (*sketch_)[index] = std::max((*sketch_)[index], rank);
  }

  std::vector<std::uint64_t> exact_;  // sorted hashes while exact
  std::unique_ptr<std::array<std::uint8_t, registers>> sketch_;
};

}  // namespace mercato::actors
