#pragma once
// What every fuzz target uses to state a rule: a broken rule aborts, so libFuzzer reports it like a
// crash and keeps the input (crash-<sha1>).

#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace mercato::fuzz {

[[noreturn]] inline void rule_broken(const char* rule, std::string_view detail) {
  const int shown = static_cast<int>(detail.size() > 2000 ? 2000 : detail.size());
  std::fprintf(stderr, "\nfuzz rule broken: %s\n  %.*s\n", rule, shown, detail.data());
  std::abort();
}

inline void require(bool ok, const char* rule, std::string_view detail = {}) {
  if (!ok) {
    rule_broken(rule, detail);
  }
}

}  // namespace mercato::fuzz
