#include <doctest/doctest.h>

#include <string>
#include <vector>

#include <boost/json/parse.hpp>

#include "http/problem.hpp"
#include "http/request.hpp"
#include "http/routes/db_call.hpp"
#include "persistence/db_error.hpp"

using namespace mercato::http;

TEST_CASE("a problem renders as RFC 9457 JSON with a stable code") {
  auto p = invalid_request("two fields are wrong", {{"/items/0/quantity", "must be positive"}, {"/query/limit", "x"}});
  auto v = boost::json::parse(p.to_json()).as_object();
  CHECK(v.at("status").as_int64() == 400);
  CHECK(v.at("code").as_string() == "invalid_request");
  CHECK(v.at("type").as_string() == "urn:mercato:problem:invalid_request");
  CHECK(v.at("title").as_string() == "Invalid request");
  CHECK(v.at("detail").as_string() == "two fields are wrong");
  auto errs = v.at("errors").as_array();
  REQUIRE(errs.size() == 2);
  CHECK(errs[0].at("pointer").as_string() == "/items/0/quantity");
  CHECK(errs[0].at("message").as_string() == "must be positive");
}

TEST_CASE("problem text is escaped, never spliced into JSON") {
  auto p = not_found("no \"thing\" at \\path\n<script>");
  auto v = boost::json::parse(p.to_json()).as_object();
  CHECK(v.at("detail").as_string() == "no \"thing\" at \\path\n<script>");
  CHECK_FALSE(v.contains("errors"));
}

// Found by tests/fuzz (http_request): a 415 quoting a Content-Type of obs-text bytes was not valid JSON.
TEST_CASE("problem text that quotes bytes which are not UTF-8 still renders as valid JSON") {
  CHECK(valid_utf8("plain, \xC3\xA9t\xC3\xA9, \xE2\x82\xAC, \xF0\x9F\x98\x80") ==
        "plain, \xC3\xA9t\xC3\xA9, \xE2\x82\xAC, \xF0\x9F\x98\x80");
  CHECK(valid_utf8("a\xFF\xFE" "b") == "a\xEF\xBF\xBD\xEF\xBF\xBD" "b");
  CHECK(valid_utf8("\xC0\xAF") == "\xEF\xBF\xBD\xEF\xBF\xBD");          // overlong '/'
  CHECK(valid_utf8("\xED\xA0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // a surrogate
  CHECK(valid_utf8("\xE2\x82") == "\xEF\xBF\xBD\xEF\xBF\xBD");          // cut short
  auto p = unsupported_media_type("Content-Type must be application/json, got application\xFF\xFF/json");
  p.errors.push_back({"/h\x80", "bad \xC3"});
  boost::system::error_code ec;
  auto v = boost::json::parse(p.to_json(), ec);
  REQUIRE_FALSE(ec);
  CHECK(v.at("detail").as_string() ==
        "Content-Type must be application/json, got application\xEF\xBF\xBD\xEF\xBF\xBD/json");
  CHECK(v.at("errors").at(0).at("pointer").as_string() == "/h\xEF\xBF\xBD");
}

TEST_CASE("each canonical problem has its status and code") {
  CHECK(not_found().status == 404);
  CHECK(method_not_allowed("x").status == 405);
  CHECK(malformed_json("x").code == "malformed_json");
  CHECK(malformed_json("x").status == 400);
  CHECK(unsupported_media_type("x").status == 415);
  CHECK(payload_too_large("x").status == 413);
  CHECK(service_unavailable("overloaded", "x").status == 503);
  CHECK(service_unavailable("overloaded", "x").code == "overloaded");
  CHECK(internal_error("x").status == 500);
}

TEST_CASE("a response made from a problem is problem+json") {
  auto r = response::from(not_found("gone"));
  CHECK(r.status == 404);
  CHECK(r.content_type == "application/problem+json");
  CHECK(boost::json::parse(r.body).at("code").as_string() == "not_found");
}

TEST_CASE("responder answers once and answers 500 when dropped unanswered") {
  std::vector<response> got;
  {
    responder r{[&](response x) { got.push_back(std::move(x)); }};
    r(response::json_text(200, "{}"));
    r(response::json_text(201, "{}"));
  }
  REQUIRE(got.size() == 1);
  CHECK(got[0].status == 200);
  got.clear();
  { responder r{[&](response x) { got.push_back(std::move(x)); }}; }
  REQUIRE(got.size() == 1);
  CHECK(got[0].status == 500);
}

// OWASP API8 (docs/security.md): what a client sees of a database failure is a fixed text per kind;
// the server's message (SQL, table and constraint names, values) goes to the log only.
TEST_CASE("a database failure answers a fixed problem per kind and never the server's message or SQLSTATE") {
  using mercato::persistence::db_error;
  using mercato::persistence::db_error_kind;
  const std::string secret = "ERROR:  duplicate key value violates unique constraint \"users_email_key\" "
                             "DETAIL: Key (password_hash)=($argon2id$v=19$m=19456) SELECT * FROM users";
  struct expectation {
    db_error_kind kind;
    unsigned status;
    const char* code;
  };
  for (const auto& e : {expectation{db_error_kind::unavailable, 503, "database_unavailable"},
                        expectation{db_error_kind::timeout, 503, "database_timeout"},
                        expectation{db_error_kind::shutting_down, 503, "shutting_down"},
                        expectation{db_error_kind::conflict, 409, "conflict"},
                        expectation{db_error_kind::invalid, 400, "invalid_request"},
                        expectation{db_error_kind::internal, 500, "internal_error"}}) {
    CAPTURE(e.code);
    const auto r = response::from(problem_for(db_error{e.kind, secret, "23505"}));
    CHECK(r.status == e.status);
    CHECK(r.content_type == "application/problem+json");
    const auto body = boost::json::parse(r.body).as_object();
    CHECK(body.at("code").as_string() == e.code);
    for (const char* leak : {"users_email_key", "password_hash", "argon2id", "SELECT", "23505", "ERROR"}) {
      CAPTURE(leak);
      CHECK(r.body.find(leak) == std::string::npos);
    }
  }
  // A handler that never answers (a bug) gets the same fixed 500, not an exception text.
  std::vector<response> got;
  { responder dropped{[&](response x) { got.push_back(std::move(x)); }}; }
  REQUIRE(got.size() == 1);
  CHECK(got[0].status == 500);
  CHECK(boost::json::parse(got[0].body).at("code").as_string() == "internal_error");
  CHECK(boost::json::parse(got[0].body).at("detail").as_string() == "the request was not answered");
}
