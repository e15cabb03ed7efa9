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
