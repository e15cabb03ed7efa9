#pragma once
// Reading an entity's stored snapshot (JSON) field by field, the same way in every entity kind: a
// required number that is missing makes the snapshot unreadable (the runtime reports it), it is never
// silently 0. And money as the seed's DECIMAL(12,2) projection columns take it.

#include <cstdint>
#include <stdexcept>
#include <string>

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

namespace mercato::actors {

// A string field; missing or null: "".
inline std::string text_field(const boost::json::object& o, const char* key) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) {
    return {};
  }
  return std::string(it->value().as_string());
}

// A required integer field.
inline std::int64_t int_field(const boost::json::object& o, const char* key) {
  auto it = o.find(key);
  if (it == o.end()) {
    throw std::invalid_argument(std::string("the snapshot lacks ") + key);
  }
  return it->value().to_number<std::int64_t>();
}

// An integer field added by a later release: `fallback` for snapshots written before it.
inline std::int64_t int_field_or(const boost::json::object& o, const char* key, std::int64_t fallback) {
  auto it = o.find(key);
  return it == o.end() ? fallback : it->value().to_number<std::int64_t>();
}

// Minor units as text for a DECIMAL(12,2) column: 12345 -> "123.45".
inline std::string minor_to_decimal(std::int64_t minor) {
  const bool negative = minor < 0;
  // The magnitude as unsigned: -INT64_MIN does not fit an int64 (a stored snapshot is input; the fuzzer found it).
  const std::uint64_t abs = negative ? 0 - static_cast<std::uint64_t>(minor) : static_cast<std::uint64_t>(minor);
  auto cents = std::to_string(abs % 100);
  if (cents.size() < 2) {
    cents.insert(cents.begin(), '0');
  }
  return (negative ? "-" : "") + std::to_string(abs / 100) + "." + cents;
}

// A JSON object kept as text (an address): parsed, or {} when empty or unreadable.
inline boost::json::value object_or_empty(const std::string& text) {
  if (text.empty()) {
    return boost::json::object{};
  }
  boost::system::error_code ec;
  auto v = boost::json::parse(text, ec);
  return ec ? boost::json::value(boost::json::object{}) : v;
}

}  // namespace mercato::actors
