// A small HDR-style latency histogram: log-bucketed, fixed memory, mergeable.
//
// Values are nanoseconds. Below 256 ns every value has its own bucket; above, each power of two is split into
// 128 equal buckets, so a bucket is at most 1/128 of its value wide (the midpoint we report is within ~0.4%).
// Memory is fixed (~35 KB) however many values are recorded, and histograms of several threads merge exactly.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace mercato::bench {

class latency_histogram {
 public:
  static constexpr int sub_bucket_bits = 8;
  static constexpr int half_sub_buckets = 1 << (sub_bucket_bits - 1);
  static constexpr int max_value_bits = 40;  // 2^40 ns ≈ 18 minutes; larger values are clamped
  static constexpr std::uint64_t max_trackable = (std::uint64_t{1} << max_value_bits) - 1;

  latency_histogram() : counts_(index_of(max_trackable) + 1, 0) {}

  void record(std::int64_t nanoseconds) {
    const std::uint64_t v =
        nanoseconds <= 0 ? 0 : std::min<std::uint64_t>(static_cast<std::uint64_t>(nanoseconds), max_trackable);
    ++counts_[index_of(v)];
    ++count_;
    sum_ += static_cast<double>(v);
    min_ = std::min(min_, v);
    max_ = std::max(max_, v);
  }

  void merge(const latency_histogram& other) {
    for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
    count_ += other.count_;
    sum_ += other.sum_;
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
  }

  [[nodiscard]] std::uint64_t count() const { return count_; }
  [[nodiscard]] std::uint64_t min() const { return count_ == 0 ? 0 : min_; }
  [[nodiscard]] std::uint64_t max() const { return max_; }
  [[nodiscard]] double mean() const { return count_ == 0 ? 0.0 : sum_ / static_cast<double>(count_); }

  // The value at percentile p (0..100): the midpoint of the bucket holding the value of that rank,
  // clamped to the exact min and max seen.
  [[nodiscard]] std::uint64_t percentile(double p) const {
    if (count_ == 0) return 0;
    p = std::clamp(p, 0.0, 100.0);
    auto rank = static_cast<std::uint64_t>(std::ceil(p / 100.0 * static_cast<double>(count_)));
    rank = std::clamp<std::uint64_t>(rank, 1, count_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank) {
        const std::uint64_t low = lowest_in(i);
        const std::uint64_t mid = low + (highest_in(i) - low) / 2;
        return std::clamp(mid, min(), max_);
      }
    }
    return max_;
  }

  static std::size_t index_of(std::uint64_t v) {
    if (v < (std::uint64_t{1} << sub_bucket_bits)) return static_cast<std::size_t>(v);
    const int msb = 63 - count_leading_zeros(v);
    const int shift = msb - sub_bucket_bits + 1;
    const std::uint64_t mantissa = v >> shift;  // in [half_sub_buckets, 2 * half_sub_buckets)
    return static_cast<std::size_t>(shift) * half_sub_buckets + static_cast<std::size_t>(mantissa);
  }

  static std::uint64_t lowest_in(std::size_t index) {
    if (index < (std::size_t{1} << sub_bucket_bits)) return index;
    const std::size_t shift = index / half_sub_buckets - 1;
    const std::uint64_t mantissa = index - shift * half_sub_buckets;
    return mantissa << shift;
  }

  static std::uint64_t highest_in(std::size_t index) { return lowest_in(index + 1) - 1; }

 private:
  static int count_leading_zeros(std::uint64_t v) {  // v != 0
    return __builtin_clzll(static_cast<unsigned long long>(v));
  }

  std::vector<std::uint64_t> counts_;
  std::uint64_t count_ = 0;
  double sum_ = 0.0;
  std::uint64_t min_ = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t max_ = 0;
};

}  // namespace mercato::bench
