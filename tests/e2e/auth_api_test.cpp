// End-to-end: accounts, sessions and authorisation through a real mercatod (PostgreSQL + Redis of the
// test profile). Register/login/refresh rotation and reuse, logout, TOTP MFA, refused tokens, BOLA,
// BFLA, mass assignment, the admin bootstrap and the JSON edge of /auth/register.

#include <doctest/doctest.h>

#include <chrono>
#include <random>
#include <set>
#include <string>
#include <thread>

#include <boost/json.hpp>

#include "http/codec.hpp"
#include "security/jwt.hpp"
#include "security/password.hpp"
#include "security/totp.hpp"
#include "support/http_client.hpp"
#include "support/node_process.hpp"
#include "support/scratch_database.hpp"

namespace json = boost::json;
using mercato::test::http_client;
using mercato::test::http_reply;
using mercato::test::node_process;

namespace {

const std::string admin_email = "root-" + std::to_string(std::random_device{}()) + "@example.com";
const std::string admin_password = "admin password for tests";

// Its own database: the vendors and accounts made here must not show up in other tests.
mercato::test::scratch_database& database() {
  static mercato::test::scratch_database db;
  return db;
}

node_process& node() {
  static node_process n{{"--demo"},
                        {{"MERCATO_PG_DSN", database().dsn()},
                         {"MERCATO_ADMIN_EMAIL", admin_email},
                         {"MERCATO_ADMIN_PASSWORD", admin_password}}};
  static const bool ready = n.wait_ready(std::chrono::seconds(60));
  REQUIRE_MESSAGE(ready, "mercatod did not become ready; its log:\n" << n.log());
  return n;
}

std::string unique_email(const std::string& who) {
  static std::mt19937_64 gen{std::random_device{}()};
  return who + "-" + std::to_string(gen() % 1'000'000'000'000ull) + "@Example.COM";
}

using headers = std::vector<std::pair<std::string, std::string>>;

headers json_headers(const std::string& token = {}) {
  headers h{{"Content-Type", "application/json"}};
  if (!token.empty()) {
    h.emplace_back("Authorization", "Bearer " + token);
  }
  return h;
}

headers bearer(const std::string& token) { return {{"Authorization", "Bearer " + token}}; }

http_reply post(http_client& c, const std::string& path, const json::value& body, const std::string& token = {}) {
  return c.request("POST", path, json::serialize(body), json_headers(token));
}

std::string str(const json::value& v, const char* key) { return std::string(v.at(key).as_string()); }

std::string code_of(const http_reply& r) {
  try {
    return str(r.json(), "code");
  } catch (...) {
    return "<no problem body: " + r.body + ">";
  }
}

struct session {
  std::string user_id, email, access, refresh;
};

session register_user(http_client& c, const std::string& who, const std::string& password = "correct horse battery") {
  const auto email = unique_email(who);
  auto r = post(c, "/api/v1/auth/register", {{"email", email}, {"password", password}, {"name", who}});
  REQUIRE_MESSAGE(r.status == 201, r.body);
  auto j = r.json();
  return {str(j.at("user"), "id"), str(j.at("user"), "email"), str(j, "access_token"), str(j, "refresh_token")};
}

session login(http_client& c, const std::string& email, const std::string& password, const std::string& totp = {}) {
  json::object body{{"email", email}, {"password", password}};
  if (!totp.empty()) {
    body["totp_code"] = totp;
  }
  auto r = post(c, "/api/v1/auth/login", body);
  REQUIRE_MESSAGE(r.status == 200, r.body);
  auto j = r.json();
  return {str(j.at("user"), "id"), str(j.at("user"), "email"), str(j, "access_token"), str(j, "refresh_token")};
}

}  // namespace

TEST_CASE("register, then the profile; the email is normalised and unique") {
  http_client c{node().port()};
  const auto email = unique_email("Reg");
  auto r = post(c, "/api/v1/auth/register", {{"email", "  " + email + " "}, {"password", "correct horse battery"},
                                             {"name", "Reg"}});
  REQUIRE_MESSAGE(r.status == 201, r.body);
  auto j = r.json();
  CHECK(str(j.at("user"), "email") == mercato::security::normalize_email(email).value());
  CHECK(j.at("user").at("roles").as_array() == json::array{"customer"});
  CHECK(j.at("expires_in").as_int64() == 900);
  CHECK(j.at("refresh_token").as_string().size() >= 40);
  CHECK(r.header("cache-control") == "no-store");

  auto me = c.get("/api/v1/me", bearer(str(j, "access_token")));
  REQUIRE(me.status == 200);
  CHECK(str(me.json(), "id") == str(j.at("user"), "id"));
  CHECK(me.json().as_object().count("password_hash") == 0);

  // Same address in other letters: taken.
  auto again = post(c, "/api/v1/auth/register", {{"email", email}, {"password", "another good one"}, {"name", "X"}});
  CHECK(again.status == 409);
  CHECK(code_of(again) == "email_taken");
}

TEST_CASE("registration input is validated field by field and changes nothing") {
  http_client c{node().port()};
  auto r = post(c, "/api/v1/auth/register", {{"email", "not-an-email"}, {"password", "short"}, {"role", "admin"}});
  REQUIRE(r.status == 400);
  CHECK(r.header("content-type") == "application/problem+json");
  std::set<std::string> pointers;
  const auto problem = r.json();
  for (const auto& e : problem.at("errors").as_array()) {
    pointers.insert(str(e, "pointer"));
  }
  CHECK(pointers == std::set<std::string>{"/email", "/name", "/role"});

  const auto email = unique_email("same");
  auto same = post(c, "/api/v1/auth/register", {{"email", email}, {"password", email}, {"name", "S"}});
  CHECK(same.status == 400);
  CHECK(same.body.find("/password") != std::string::npos);
  // Nothing was created: the address is still free.
  CHECK(post(c, "/api/v1/auth/register", {{"email", email}, {"password", "a fine password"}, {"name", "S"}}).status ==
        201);

  // The JSON edge on a real public route: 415 without JSON, 400 with the position of a syntax error.
  auto no_json = c.request("POST", "/api/v1/auth/register", "email=a", {{"Content-Type", "text/plain"}});
  CHECK(no_json.status == 415);
  auto broken = c.request("POST", "/api/v1/auth/register", "{\"email\": ", json_headers());
  CHECK(broken.status == 400);
  CHECK(code_of(broken) == "malformed_json");
  CHECK(broken.body.find("line 1") != std::string::npos);
}

TEST_CASE("login: wrong password and unknown account look the same") {
  http_client c{node().port()};
  auto s = register_user(c, "login");
  auto wrong = post(c, "/api/v1/auth/login", {{"email", s.email}, {"password", "wrong password"}});
  CHECK(wrong.status == 401);
  CHECK(code_of(wrong) == "invalid_credentials");
  auto unknown = post(c, "/api/v1/auth/login", {{"email", unique_email("nobody")}, {"password", "wrong password"}});
  CHECK(unknown.status == 401);
  CHECK(code_of(unknown) == "invalid_credentials");
  CHECK(unknown.json().at("detail") == wrong.json().at("detail"));
  auto ok = login(c, s.email, "correct horse battery");
  CHECK(ok.user_id == s.user_id);
}

TEST_CASE("refresh rotates; a reused token revokes its whole family; logout revokes too") {
  http_client c{node().port()};
  auto s = register_user(c, "rotate");
  auto first = post(c, "/api/v1/auth/refresh", {{"refresh_token", s.refresh}});
  REQUIRE_MESSAGE(first.status == 200, first.body);
  const auto second_token = str(first.json(), "refresh_token");
  CHECK(second_token != s.refresh);
  CHECK(c.get("/api/v1/me", bearer(str(first.json(), "access_token"))).status == 200);

  // The old token again: reuse. The family is gone, including the token that replaced it.
  auto reuse = post(c, "/api/v1/auth/refresh", {{"refresh_token", s.refresh}});
  CHECK(reuse.status == 401);
  CHECK(code_of(reuse) == "refresh_token_reused");
  auto after = post(c, "/api/v1/auth/refresh", {{"refresh_token", second_token}});
  CHECK(after.status == 401);
  CHECK(code_of(after) == "invalid_refresh_token");

  // Another login is another family, unaffected; logout ends it.
  auto other = login(c, s.email, "correct horse battery");
  auto rotated = post(c, "/api/v1/auth/refresh", {{"refresh_token", other.refresh}});
  REQUIRE(rotated.status == 200);
  const auto latest = str(rotated.json(), "refresh_token");
  CHECK(post(c, "/api/v1/auth/logout", {{"refresh_token", latest}}).status == 204);
  CHECK(post(c, "/api/v1/auth/refresh", {{"refresh_token", latest}}).status == 401);
  CHECK(post(c, "/api/v1/auth/refresh", {{"refresh_token", "made-up"}}).status == 401);
  CHECK(post(c, "/api/v1/auth/refresh", json::object{}).status == 400);
}

TEST_CASE("TOTP: enrolment, then login needs a code; expired and replayed codes are refused") {
  using namespace mercato::security;
  http_client c{node().port()};
  auto s = register_user(c, "mfa");
  auto enrol = post(c, "/api/v1/auth/mfa/totp", {{"password", "correct horse battery"}}, s.access);
  REQUIRE_MESSAGE(enrol.status == 200, enrol.body);
  const auto secret = str(enrol.json(), "secret");
  CHECK(str(enrol.json(), "otpauth_uri").rfind("otpauth://totp/", 0) == 0);
  CHECK(str(enrol.json(), "otpauth_uri").find("secret=" + secret) != std::string::npos);

  // Until verified, login works without a code.
  login(c, s.email, "correct horse battery");

  const auto now_step = totp_step(std::chrono::system_clock::now());
  auto bad = post(c, "/api/v1/auth/mfa/totp/verify", {{"code", "000000"}}, s.access);
  if (*totp_code(secret, now_step) != "000000") {
    CHECK(bad.status == 400);
  }
  auto verify = post(c, "/api/v1/auth/mfa/totp/verify", {{"code", *totp_code(secret, now_step)}}, s.access);
  REQUIRE_MESSAGE(verify.status == 204, verify.body);
  CHECK(c.get("/api/v1/me", bearer(s.access)).json().at("mfa_enabled") == true);

  auto no_code = post(c, "/api/v1/auth/login", {{"email", s.email}, {"password", "correct horse battery"}});
  CHECK(no_code.status == 401);
  CHECK(code_of(no_code) == "mfa_required");

  auto expired = post(c, "/api/v1/auth/login", {{"email", s.email}, {"password", "correct horse battery"},
                                                {"totp_code", *totp_code(secret, now_step - 4)}});
  CHECK(expired.status == 401);
  CHECK(code_of(expired) == "invalid_totp_code");

  // The code of the next step is inside the ±1 window and newer than the one used to verify.
  const auto next_code = *totp_code(secret, now_step + 1);
  auto good = post(c, "/api/v1/auth/login",
                   {{"email", s.email}, {"password", "correct horse battery"}, {"totp_code", next_code}});
  CHECK_MESSAGE(good.status == 200, good.body);
  auto replay = post(c, "/api/v1/auth/login",
                     {{"email", s.email}, {"password", "correct horse battery"}, {"totp_code", next_code}});
  CHECK(replay.status == 401);
  CHECK(code_of(replay) == "invalid_totp_code");

  // A wrong password with MFA on is still just invalid credentials (no hint that MFA exists).
  auto wrong = post(c, "/api/v1/auth/login", {{"email", s.email}, {"password", "not it at all"}});
  CHECK(code_of(wrong) == "invalid_credentials");
}

TEST_CASE("forged, expired, alg:none and wrong-audience tokens are refused with 401") {
  using namespace mercato::security;
  http_client c{node().port()};
  auto s = register_user(c, "tokens");
  jwt_settings good;
  good.secret = mercato::test::test_jwt_secret();
  good.kid = "mercato-1";
  const auto now = std::chrono::system_clock::now();

  auto status_with = [&](const std::string& token) { return c.get("/api/v1/me", bearer(token)).status; };
  CHECK(status_with(sign_access_token(make_access_claims(s.user_id, {"customer"}, "", good, now), good)) == 200);

  jwt_settings other_key = good;
  other_key.secret = std::string(48, 'x');
  CHECK(status_with(sign_access_token(make_access_claims(s.user_id, {"admin"}, "", other_key, now), other_key)) == 401);

  auto expired = make_access_claims(s.user_id, {"customer"}, "", good, now - std::chrono::hours(2));
  auto r = c.get("/api/v1/me", bearer(sign_access_token(expired, good)));
  CHECK(r.status == 401);
  CHECK(code_of(r) == "invalid_token");
  CHECK(r.header("www-authenticate").find("invalid_token") != std::string::npos);

  jwt_settings wrong_aud = good;
  wrong_aud.audience = "someone-else";
  CHECK(status_with(sign_access_token(make_access_claims(s.user_id, {"customer"}, "", wrong_aud, now), wrong_aud)) ==
        401);

  // alg "none": a valid payload with no signature, and roles raised to admin.
  const auto iat = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  json::object payload{{"iss", "mercato"}, {"aud", "mercato-api"}, {"sub", s.user_id}, {"iat", iat}, {"nbf", iat},
                       {"exp", iat + 600}, {"roles", json::array{"admin"}}};
  const auto none = mercato::http::base64url_encode(R"({"alg":"none","typ":"JWT","kid":"mercato-1"})") + "." +
                    mercato::http::base64url_encode(json::serialize(payload)) + ".";
  CHECK(status_with(none) == 401);

  // Tampered: the payload of an admin token glued to a customer's signature.
  const auto real = sign_access_token(make_access_claims(s.user_id, {"customer"}, "", good, now), good);
  const auto dot1 = real.find('.');
  const auto dot2 = real.rfind('.');
  const auto tampered = real.substr(0, dot1) + "." + mercato::http::base64url_encode(json::serialize(payload)) +
                        real.substr(dot2);
  CHECK(status_with(tampered) == 401);
  CHECK(status_with("not.a.token") == 401);
  CHECK(c.get("/api/v1/me", {{"Authorization", "Basic dXNlcjpwYXNz"}}).status == 401);
  auto anonymous = c.get("/api/v1/me");
  CHECK(anonymous.status == 401);
  CHECK(code_of(anonymous) == "unauthenticated");
}

TEST_CASE("BOLA: a customer cannot see or delete another customer's addresses") {
  http_client c{node().port()};
  auto alice = register_user(c, "alice");
  auto bob = register_user(c, "bob");
  auto added = post(c, "/api/v1/me/addresses",
                    {{"name", "Alice"}, {"line1", "1 Main St"}, {"city", "Springfield"}, {"postal_code", "12345"},
                     {"country", "US"}},
                    alice.access);
  REQUIRE_MESSAGE(added.status == 201, added.body);
  const auto id = str(added.json(), "id");
  CHECK(added.json().at("is_default") == true);

  auto bobs = c.get("/api/v1/me/addresses", bearer(bob.access));
  REQUIRE(bobs.status == 200);
  CHECK(bobs.json().at("data").as_array().empty());
  auto steal = c.request("DELETE", "/api/v1/me/addresses/" + id, "", bearer(bob.access));
  CHECK(steal.status == 404);
  CHECK(c.get("/api/v1/me/addresses", bearer(alice.access)).json().at("data").as_array().size() == 1);

  auto bad = post(c, "/api/v1/me/addresses", {{"name", "A"}, {"line1", "x"}, {"city", "y"}, {"country", "usa"}},
                  alice.access);
  CHECK(bad.status == 400);
  CHECK(bad.body.find("/postal_code") != std::string::npos);
  CHECK(bad.body.find("/country") != std::string::npos);

  // Paging over the book: a second address, one per page.
  REQUIRE(post(c, "/api/v1/me/addresses",
               {{"name", "Alice"}, {"line1", "2 Side St"}, {"city", "Springfield"}, {"postal_code", "12345"},
                {"country", "US"}, {"is_default", true}},
               alice.access)
              .status == 201);
  auto page1 = c.get("/api/v1/me/addresses?limit=1", bearer(alice.access)).json();
  CHECK(page1.at("data").as_array().size() == 1);
  CHECK(page1.at("data").at(0).at("is_default") == false);  // the new default replaced the old one
  REQUIRE(page1.at("meta").at("has_more") == true);
  auto page2 = c.get("/api/v1/me/addresses?limit=1&cursor=" + str(page1.at("meta"), "next_cursor"),
                     bearer(alice.access)).json();
  CHECK(page2.at("data").at(0).at("line1") == "2 Side St");
  CHECK(page2.at("meta").at("has_more") == false);
  CHECK(c.get("/api/v1/me/addresses?limit=0", bearer(alice.access)).status == 400);
  auto ids = c.get("/api/v1/me/addresses", bearer(alice.access)).json();
  CHECK(c.request("DELETE", "/api/v1/me/addresses/" + id, "", bearer(alice.access)).status == 204);
  CHECK(c.request("DELETE", "/api/v1/me/addresses/" + str(ids.at("data").at(1), "id"), "", bearer(alice.access))
            .status == 204);
  CHECK(c.get("/api/v1/me/addresses", bearer(alice.access)).json().at("data").as_array().empty());
  auto notes = c.get("/api/v1/me/notifications", bearer(alice.access));
  CHECK(notes.status == 200);
  CHECK(notes.json().at("meta").at("has_more") == false);
}

TEST_CASE("BFLA: a customer cannot call admin routes (403); the bootstrap admin can") {
  http_client c{node().port()};
  auto cust = register_user(c, "bfla");
  auto r = post(c, "/api/v1/vendors", {{"name", "Nope"}}, cust.access);
  CHECK(r.status == 403);
  CHECK(code_of(r) == "forbidden");
  CHECK(c.request("PUT", "/api/v1/admin/users/" + cust.user_id + "/roles", R"({"roles":["admin"]})",
                  json_headers(cust.access))
            .status == 403);
  CHECK(post(c, "/api/v1/categories", {{"name", "Nope"}}, cust.access).status == 403);
  CHECK(post(c, "/api/v1/vendors", {{"name", "Nope"}}).status == 401);

  auto admin = login(c, admin_email, admin_password);
  const auto vendor_name = "Vendor " + cust.user_id.substr(0, 8);
  auto vendor = post(c, "/api/v1/vendors", {{"name", vendor_name}}, admin.access);
  REQUIRE_MESSAGE(vendor.status == 201, vendor.body);
  const auto vendor_id = str(vendor.json(), "id");
  CHECK(c.get("/api/v1/vendors/" + vendor_id).status == 200);
  CHECK(post(c, "/api/v1/vendors", {{"name", vendor_name}}, admin.access).status == 409);

  // Vendor role needs a vendor; unknown roles are refused; then the link works.
  auto missing = c.request("PUT", "/api/v1/admin/users/" + cust.user_id + "/roles", R"({"roles":["vendor"]})",
                           json_headers(admin.access));
  CHECK(missing.status == 400);
  auto unknown = c.request("PUT", "/api/v1/admin/users/" + cust.user_id + "/roles",
                           R"({"roles":["customer","overlord"]})", json_headers(admin.access));
  CHECK(unknown.status == 400);
  CHECK(unknown.body.find("\"/roles/1\"") != std::string::npos);
  auto linked = c.request("PUT", "/api/v1/admin/users/" + cust.user_id + "/roles",
                          json::serialize(json::object{{"roles", json::array{"vendor"}}, {"vendor_id", vendor_id}}),
                          json_headers(admin.access));
  REQUIRE_MESSAGE(linked.status == 200, linked.body);
  CHECK(str(linked.json(), "vendor_id") == vendor_id);
  // Role changes end the user's sessions: new tokens come from a new login and carry the new role.
  CHECK(post(c, "/api/v1/auth/refresh", {{"refresh_token", cust.refresh}}).status == 401);
  auto relogged = login(c, cust.email, "correct horse battery");
  CHECK(c.get("/api/v1/me", bearer(relogged.access)).json().at("roles").as_array() == json::array{"vendor"});
  CHECK(c.request("PUT", "/api/v1/admin/users/00000000-0000-4000-8000-000000000000/roles", R"({"roles":["admin"]})",
                  json_headers(admin.access))
            .status == 404);
}

TEST_CASE("mass assignment: PATCH /me changes name and preferences only") {
  http_client c{node().port()};
  auto s = register_user(c, "mass");
  auto sneaky = c.request("PATCH", "/api/v1/me",
                          R"({"name":"New","roles":["admin"],"email_verified":true,"email":"x@example.com"})",
                          json_headers(s.access));
  CHECK(sneaky.status == 400);
  for (const char* p : {"/roles", "/email_verified", "/email"}) {
    CHECK(sneaky.body.find(p) != std::string::npos);
  }
  auto me = c.get("/api/v1/me", bearer(s.access)).json();
  CHECK(me.at("name") == "mass");  // the valid part of a refused request is not applied either
  CHECK(me.at("roles").as_array() == json::array{"customer"});

  auto ok = c.request("PATCH", "/api/v1/me", R"({"name":"Massimo","preferences":{"currency":"EUR"}})",
                      json_headers(s.access));
  REQUIRE_MESSAGE(ok.status == 200, ok.body);
  CHECK(ok.json().at("name") == "Massimo");
  CHECK(ok.json().at("preferences").at("currency") == "EUR");
  CHECK(ok.json().at("email_verified") == false);
}

TEST_CASE("mercatod admin create makes an admin who can sign in; bad input changes nothing") {
  http_client c{node().port()};
  const auto email = unique_email("cli-admin");
  const std::string binary = MERCATOD_PATH;
  const auto dsn = database().dsn();
  auto create = [&](const std::string& password, const std::string& address) {
    return mercato::test::run_command("printf '%s\\n' '" + password + "' | '" + binary + "' admin create --email '" +
                                      address + "' --password-stdin --pg-dsn '" + dsn + "' >/dev/null");
  };
  CHECK(create("short", email) != 0);
  CHECK(post(c, "/api/v1/auth/login", {{"email", email}, {"password", "short"}}).status == 401);
  CHECK(create("a long admin password", "not an email") != 0);
  REQUIRE(create("a long admin password", email) == 0);
  auto admin = login(c, email, "a long admin password");
  CHECK(c.get("/api/v1/me", bearer(admin.access)).json().at("roles").as_array() == json::array{"admin"});
  // Run again with another password: still one account, the new password works.
  REQUIRE(create("the second admin password", email) == 0);
  CHECK(login(c, email, "the second admin password").user_id == admin.user_id);
}
