#include <doctest/doctest.h>

#include <algorithm>
#include <memory>

#include <simdjson.h>

#include "http/body_reader.hpp"
#include "http/json_body.hpp"
#include "http/request.hpp"

using namespace mercato::http;

namespace {

std::unique_ptr<request_context> with_body(const std::string& json) {
  auto ctx = std::make_unique<request_context>();
  auto doc = std::make_unique<simdjson::dom::document>();
  REQUIRE_FALSE(parse_json(json, *doc).has_value());
  ctx->body_doc = std::move(doc);
  return ctx;
}

bool has_pointer(const problem& p, const std::string& pointer) {
  return std::any_of(p.errors.begin(), p.errors.end(), [&](const field_error& e) { return e.pointer == pointer; });
}

}  // namespace

TEST_CASE("fields are read with their bounds, and every problem is listed") {
  auto ctx = with_body(R"({"name":"Zoë","age":3,"tags":["a",1],"prefs":{"x":1},"flag":"yes","blank":""})");
  body_reader r(*ctx);
  CHECK(r.text("name", true, 1, 3).value() == "Zoë");  // 3 code points, 4 bytes
  CHECK_FALSE(r.text("age", true, 1, 10).has_value());
  CHECK_FALSE(r.text_array("tags", true, 5).has_value());
  CHECK(r.object_json("prefs", false, 100).value() == R"({"x":1})");
  CHECK_FALSE(r.boolean("flag", false).has_value());
  CHECK_FALSE(r.text("blank", true, 1, 5).has_value());
  CHECK_FALSE(r.text("missing", true, 1, 5).has_value());
  CHECK_FALSE(r.text("optional", false, 1, 5).has_value());
  CHECK_FALSE(r.ok());
  const auto p = r.to_problem();
  CHECK(p.status == 400);
  for (const char* ptr : {"/age", "/tags/1", "/flag", "/blank", "/missing"}) {
    CAPTURE(ptr);
    CHECK(has_pointer(p, ptr));
  }
  CHECK_FALSE(has_pointer(p, "/optional"));
  CHECK_FALSE(has_pointer(p, "/name"));
}

TEST_CASE("unknown fields are refused (mass assignment), known ones pass") {
  auto ctx = with_body(R"({"name":"a","roles":["admin"],"a/b":1})");
  body_reader r(*ctx);
  r.allow_only({"name", "preferences"}, "cannot be changed here");
  const auto p = r.to_problem();
  CHECK(has_pointer(p, "/roles"));
  CHECK(has_pointer(p, "/a~1b"));  // JSON pointer escaping
  CHECK_FALSE(has_pointer(p, "/name"));
}

TEST_CASE("a body that is not an object, or no body, is one error at the root") {
  auto arr = with_body("[1,2]");
  body_reader a(*arr);
  CHECK_FALSE(a.text("x", true, 1, 2).has_value());
  REQUIRE(a.to_problem().errors.size() == 1);
  CHECK(a.to_problem().errors[0].pointer.empty());
  request_context none;
  body_reader n(none);
  CHECK_FALSE(n.ok());
  CHECK(n.to_problem().detail == "a JSON object body is required");
}

TEST_CASE("control characters in text are refused; utf8_length counts code points") {
  auto ctx = with_body(R"({"name":"a\u0001b"})");
  body_reader r(*ctx);
  CHECK_FALSE(r.text("name", true, 1, 10).has_value());
  CHECK(utf8_length("Zoë") == 3);
  CHECK(utf8_length("") == 0);
}

TEST_CASE("a stored link is an http(s) URL or a path: no other scheme reaches a client") {
  // Paths and relative references are fine where a same-origin image may be meant.
  CHECK(is_web_link("/static/demo/lap-0001-1.jpg", false));
  CHECK(is_web_link("ok.jpg", false));
  CHECK(is_web_link("https://img.example/a.png?w=200#top", false));
  CHECK(is_web_link("HTTP://img.example/a.png", false));
  CHECK(is_web_link("//cdn.example/a.png", false));
  // Any other scheme, whatever its case, is refused, as is text that is not a URI reference.
  CHECK_FALSE(is_web_link("javascript:alert(1)", false));
  CHECK_FALSE(is_web_link("JaVaScRiPt:alert(1)", false));
  CHECK_FALSE(is_web_link("data:image/svg+xml;base64,PHN2Zz4=", false));
  CHECK_FALSE(is_web_link("vbscript:msgbox", false));
  CHECK_FALSE(is_web_link("file:///etc/passwd", false));
  CHECK_FALSE(is_web_link("https://img.example/a b.png", false));
  CHECK_FALSE(is_web_link("https://img.example/caf\xc3\xa9.png", false));
  CHECK_FALSE(is_web_link("http:", false));
  // Absolute: the scheme and a host are required.
  CHECK(is_web_link("https://carrier.example/labels/1Z999", true));
  CHECK_FALSE(is_web_link("/labels/1Z999", true));
  CHECK_FALSE(is_web_link("//carrier.example/labels/1Z999", true));
  CHECK_FALSE(is_web_link("https:///labels", true));
  CHECK_FALSE(is_web_link("javascript://carrier.example/%0aalert(1)", true));
}
