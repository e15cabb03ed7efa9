#pragma once
// Writes a JSON document straight into a string, for hot paths (the cart's answer to an add, its snapshot):
// no intermediate boost::json tree, so no allocation per object. The caller's calls give the structure;
// the writer adds the commas and colons, and escapes strings with Boost.JSON's serializer (the same bytes
// boost::json::serialize would write for them).

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

#include <boost/json/serializer.hpp>

namespace mercato::protocol {

class json_writer {
 public:
  explicit json_writer(std::string& out) : out_(out) {}

  json_writer& begin_object() { return open('{'); }
  json_writer& end_object() { return close('}'); }
  json_writer& begin_array() { return open('['); }
  json_writer& end_array() { return close(']'); }
  // The next member's name; a value or a begin_ call must follow.
  json_writer& key(std::string_view name);
  json_writer& value(std::string_view s);
  json_writer& value(const char* s) { return value(std::string_view(s)); }
  json_writer& value(bool b);
  template <class I, std::enable_if_t<std::is_integral_v<I> && !std::is_same_v<I, bool>, int> = 0>
  json_writer& value(I n) {
    static_assert(std::is_signed_v<I> || sizeof(I) < sizeof(std::int64_t), "would not fit an int64");
    return integer(static_cast<std::int64_t>(n));
  }
  json_writer& null();

  template <class T>
  json_writer& member(std::string_view name, const T& v) {
    key(name);
    return value(v);
  }

 private:
  json_writer& open(char bracket);
  json_writer& close(char bracket);
  json_writer& integer(std::int64_t n);
  void separate();
  void quoted(std::string_view s);

  std::string& out_;
  bool need_comma_ = false;
  boost::json::serializer escaper_;
};

}  // namespace mercato::protocol
