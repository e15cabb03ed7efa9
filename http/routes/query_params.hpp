#pragma once
// Reads and validates query parameters, collecting every problem so one 400 names all bad fields.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http/request.hpp"

namespace mercato::http {

class query_reader {
 public:
  explicit query_reader(const request_context& ctx) : ctx_(ctx) {}

  std::int64_t integer(std::string_view name, std::int64_t fallback, std::int64_t min, std::int64_t max);
  std::optional<std::int64_t> optional_integer(std::string_view name, std::int64_t min, std::int64_t max);
  std::optional<std::string> text(std::string_view name, std::size_t min_len, std::size_t max_len);
  std::optional<std::string> uuid(std::string_view name);
  bool boolean(std::string_view name, bool fallback);

  void fail(std::string_view name, std::string message);
  bool ok() const { return errors_.empty(); }
  http::problem to_problem() const;

 private:
  const request_context& ctx_;
  std::vector<field_error> errors_;
};

}  // namespace mercato::http
