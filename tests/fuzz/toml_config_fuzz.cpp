// The TOML settings file: bytes given to the loader as a file's text (`config::load_toml_text`, the part of
// `mercatod --config <file>` after the file is read), through toml++, every key's validation and the checks of
// settings that belong together. The command line and the file read are left out: they take no file content,
// and building the CLI11 parser with every flag per input cost half of each execution. Rules: a load either
// gives settings or says why not, never both and never neither; the value parsers the file shares with the
// environment (rates, tax rates) give back what they read.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "config/settings.hpp"
#include "fuzz_check.hpp"

namespace {

using mercato::fuzz::require;
namespace cfg = mercato::config;

void check_value_parsers(std::string_view text) {
  if (auto r = cfg::parse_rate(text)) {
    const auto again = cfg::parse_rate(cfg::to_string(*r));
    require(again.has_value() && *again == *r, "to_string of a parsed rate parses to the same rate",
            std::string(text));
  }
  if (auto t = cfg::parse_tax_rates(text)) {
    for (const auto& [country, bp] : *t) {
      require(country.size() == 2 && bp <= 10'000, "a tax rate is a two-letter country and 0..10000 basis points",
              std::string(text));
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto result = cfg::load_toml_text(text, "fuzz.toml");
  require(result.value.has_value() != !result.errors.empty(), "a load gives settings or errors, exactly one of them");
  for (const auto& e : result.errors) {
    require(!e.to_string().empty(), "every configuration error can be told");
  }
  // Each line as a value of the environment (rates, tax rates).
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto nl = text.find('\n', start);
    check_value_parsers(text.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start));
    if (nl == std::string_view::npos) {
      break;
    }
    start = nl + 1;
  }
  return 0;
}
