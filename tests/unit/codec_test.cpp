#include <doctest/doctest.h>

#include <cstdint>
#include <limits>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "http/codec.hpp"
#include "actors/protocol/json_writer.hpp"
#include "http/pipeline.hpp"

using namespace mercato::http;
using mercato::protocol::json_writer;

TEST_CASE("base64url round-trips any bytes without padding") {
  static const char binary[] = "p1|name|Zed's \xff\x00 lamp|id";  // an embedded NUL and a non-UTF-8 byte
  for (std::string s : {std::string(""), std::string("a"), std::string("ab"), std::string("abc"),
                        std::string(binary, sizeof binary - 1)}) {
    auto enc = base64url_encode(s);
    CHECK(enc.find('=') == std::string::npos);
    CHECK(enc.find('+') == std::string::npos);
    CHECK(enc.find('/') == std::string::npos);
    if (!s.empty()) {
      auto dec = base64url_decode(enc);
      REQUIRE(dec.has_value());
      CHECK(*dec == s);
    }
  }
  CHECK_FALSE(base64url_decode("not base64!").has_value());
  CHECK_FALSE(base64url_decode("").has_value());
  CHECK_FALSE(base64url_decode("a").has_value());
}

TEST_CASE("UUID syntax") {
  CHECK(is_uuid("64b081ce-35e4-5009-b9d6-bac4e78ec2af"));
  CHECK(is_uuid("64B081CE-35E4-5009-B9D6-BAC4E78EC2AF"));
  CHECK_FALSE(is_uuid("64b081ce35e45009b9d6bac4e78ec2af"));
  CHECK_FALSE(is_uuid("64b081ce-35e4-5009-b9d6-bac4e78ec2ag"));
  CHECK_FALSE(is_uuid("' OR 1=1 --"));
}

TEST_CASE("If-None-Match matching") {
  CHECK(etag_matches("\"3\"", "\"3\""));
  CHECK(etag_matches("W/\"3\"", "\"3\""));
  CHECK(etag_matches("\"1\", \"3\"", "\"3\""));
  CHECK(etag_matches("*", "\"3\""));
  CHECK_FALSE(etag_matches("\"4\"", "\"3\""));
  CHECK_FALSE(etag_matches("\"33\"", "\"3\""));
  CHECK(etag_for_version(12) == "\"12\"");
}

TEST_CASE("request ids and traceparent") {
  CHECK(valid_request_id("abc-123_x.y:z"));
  CHECK_FALSE(valid_request_id(""));
  CHECK_FALSE(valid_request_id("has space"));
  CHECK_FALSE(valid_request_id(std::string(129, 'a')));
  auto id = generate_request_id();
  CHECK(is_uuid(id));
  CHECK(id[14] == '4');
  CHECK(generate_request_id() != id);

  auto tp = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  REQUIRE(tp.has_value());
  CHECK(tp->first == "4bf92f3577b34da6a3ce929d0e0e4736");
  CHECK(tp->second == "00f067aa0ba902b7");
  CHECK_FALSE(parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01").has_value());
  CHECK_FALSE(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01").has_value());
  CHECK_FALSE(parse_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").has_value());
  CHECK_FALSE(parse_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").has_value());
  CHECK_FALSE(parse_traceparent("garbage").has_value());
  CHECK(random_hex(32).size() == 32);
}

TEST_CASE("If-Match as the version an entity command must find") {
  using mercato::http::if_match_version;
  CHECK(if_match_version("") == 0);
  CHECK(if_match_version("*") == 0);
  CHECK(if_match_version("\"7\"") == 7);
  CHECK(if_match_version("W/\"12\"") == 12);
  CHECK_FALSE(if_match_version("7").has_value());
  CHECK_FALSE(if_match_version("\"0\"").has_value());
  CHECK_FALSE(if_match_version("\"x1\"").has_value());
  CHECK_FALSE(if_match_version("\"\"").has_value());
  CHECK_FALSE(if_match_version("\"99999999999999999999\"").has_value());
}

TEST_CASE("json_writer writes the bytes boost::json::serialize writes for the same document") {
  // Strings that need escaping: quotes, backslashes, every kind of control character, a slash (not escaped),
  // and multi-byte UTF-8 (passed through); numbers at the int64 limits.
  const std::string tricky = std::string("a\"b\\c/d\n\r\t\b\f") + std::string(1, '\0') + "\x01\x1f caf\xc3\xa9 \xe2\x82\xac";
  const std::int64_t lo = std::numeric_limits<std::int64_t>::min();
  const std::int64_t hi = std::numeric_limits<std::int64_t>::max();
  const std::string long_text(1000, '"');  // longer than the escaper's buffer, every byte escaped

  std::string out;
  json_writer w(out);
  w.begin_object()
      .member("s", tricky)
      .key(tricky)
      .value(std::int32_t{-7})
      .key("n")
      .null()
      .member("t", true)
      .member("f", false)
      .key("empty_array")
      .begin_array()
      .end_array()
      .key("empty_object")
      .begin_object()
      .end_object()
      .key("list")
      .begin_array()
      .value(lo)
      .value(hi)
      .value(std::int64_t{0})
      .begin_object()
      .member("k", "v")
      .end_object()
      .begin_array()
      .value("x")
      .end_array()
      .end_array()
      .member("long", long_text)
      .end_object();

  boost::json::object expected{{"s", tricky},
                               {tricky, -7},
                               {"n", nullptr},
                               {"t", true},
                               {"f", false},
                               {"empty_array", boost::json::array{}},
                               {"empty_object", boost::json::object{}},
                               {"list", boost::json::array{lo, hi, 0, boost::json::object{{"k", "v"}},
                                                           boost::json::array{"x"}}},
                               {"long", long_text}};
  CHECK(out == boost::json::serialize(expected));
  // And it parses back to the same document.
  CHECK(boost::json::parse(out) == boost::json::value(expected));
}

TEST_CASE("json_writer appends to what the string holds and separates top-level values of an array") {
  std::string out = "prefix:";
  json_writer w(out);
  w.begin_array().value(1).value("two").null().end_array();
  CHECK(out == R"(prefix:[1,"two",null])");
}
