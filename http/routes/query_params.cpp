#include "http/routes/query_params.hpp"

#include <charconv>

#include "http/codec.hpp"

namespace mercato::http {

void query_reader::fail(std::string_view name, std::string message) {
  errors_.push_back({"/query/" + std::string(name), std::string(name) + " " + message});
}

std::optional<std::int64_t> query_reader::optional_integer(std::string_view name, std::int64_t min,
                                                           std::int64_t max) {
  const auto* v = ctx_.query_param(name);
  if (!v) {
    return std::nullopt;
  }
  std::int64_t out = 0;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  if (v->empty() || ec != std::errc{} || p != v->data() + v->size() || out < min || out > max) {
    fail(name, "must be an integer from " + std::to_string(min) + " to " + std::to_string(max));
    return std::nullopt;
  }
  return out;
}

std::int64_t query_reader::integer(std::string_view name, std::int64_t fallback, std::int64_t min,
                                   std::int64_t max) {
  return optional_integer(name, min, max).value_or(fallback);
}

std::optional<std::string> query_reader::text(std::string_view name, std::size_t min_len, std::size_t max_len) {
  const auto* v = ctx_.query_param(name);
  if (!v) {
    return std::nullopt;
  }
  if (v->size() < min_len || v->size() > max_len) {
    fail(name, "must be " + std::to_string(min_len) + " to " + std::to_string(max_len) + " characters long");
    return std::nullopt;
  }
  return *v;
}

std::optional<std::string> query_reader::uuid(std::string_view name) {
  const auto* v = ctx_.query_param(name);
  if (!v) {
    return std::nullopt;
  }
  if (!is_uuid(*v)) {
    fail(name, "must be a UUID");
    return std::nullopt;
  }
  return *v;
}

bool query_reader::boolean(std::string_view name, bool fallback) {
  const auto* v = ctx_.query_param(name);
  if (!v) {
    return fallback;
  }
  if (*v == "true") {
    return true;
  }
  if (*v == "false") {
    return false;
  }
  fail(name, "must be true or false");
  return fallback;
}

problem query_reader::to_problem() const {
  std::string detail;
  for (const auto& e : errors_) {
    detail += (detail.empty() ? "" : "; ") + e.message;
  }
  return invalid_request(detail, errors_);
}

}  // namespace mercato::http
