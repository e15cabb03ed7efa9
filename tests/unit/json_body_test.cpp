#include <doctest/doctest.h>

#include <simdjson.h>

#include "http/json_body.hpp"

using namespace mercato::http;

TEST_CASE("valid JSON parses with simdjson") {
  simdjson::dom::document doc;
  auto err = parse_json(R"({"email":"a@b.c","n":3})", doc);
  CHECK_FALSE(err.has_value());
  std::string_view email;
  CHECK(doc.root()["email"].get(email) == simdjson::SUCCESS);
  CHECK(email == "a@b.c");
}

TEST_CASE("malformed JSON reports line and column") {
  simdjson::dom::document doc;
  auto err = parse_json("{\n  \"a\": 1,\n  \"b\": tru\n}", doc);
  REQUIRE(err.has_value());
  CHECK(err->line == 3);
  CHECK(err->column >= 8);
  CHECK(err->describe().find("line 3") != std::string::npos);
}

TEST_CASE("truncated, empty and trailing-garbage bodies are errors with a position") {
  simdjson::dom::document doc;
  auto truncated = parse_json(R"({"a": [1, 2)", doc);
  REQUIRE(truncated.has_value());
  CHECK(truncated->offset == 11);
  auto empty = parse_json("", doc);
  REQUIRE(empty.has_value());
  CHECK(empty->message == "empty body");
  auto trailing = parse_json(R"({"a":1} x)", doc);
  REQUIRE(trailing.has_value());
  CHECK(trailing->offset == 8);
  CHECK(trailing->column == 9);
}

TEST_CASE("a repeated member name or a NUL character is found, with its JSON pointer") {
  auto flaw_of = [](const char* json) {
    simdjson::dom::document doc;
    REQUIRE_FALSE(parse_json(json, doc).has_value());
    return find_json_flaw(doc);
  };
  CHECK_FALSE(flaw_of(R"({"a":"x\n","b":[1,"y"],"c":{"d":null}})").has_value());  // other escapes are fine
  auto dup = flaw_of(R"({"a":{"b":1,"b":2}})");
  REQUIRE(dup.has_value());
  CHECK(dup->what == json_flaw::repeated_member);
  CHECK(dup->pointer == "/a/b");
  auto in_value = flaw_of(R"({"a":{"list":["ok","x\u0000y"]}})");
  REQUIRE(in_value.has_value());
  CHECK(in_value->what == json_flaw::nul_character);
  CHECK(in_value->pointer == "/a/list/1");
  auto in_key = flaw_of(R"({"a\u0000":1})");
  REQUIRE(in_key.has_value());
  CHECK(in_key->what == json_flaw::nul_character);
  CHECK(in_key->pointer.size() == 3);  // "/a" and the NUL itself
  CHECK_FALSE(flaw_of(R"({"text":"a\\u0000b"})").has_value());  // an escaped backslash, then "u0000": no NUL
}
