#include "support/shop.hpp"

#include <chrono>
#include <cstdio>
#include <random>

#include <boost/json.hpp>
#include <doctest/doctest.h>
#include <pqxx/pqxx>

#include "security/jwt.hpp"
#include "support/node_process.hpp"

namespace mercato::test::shop {

namespace json = boost::json;

std::string random_uuid() {
  static thread_local std::mt19937_64 gen{std::random_device{}()};
  char buf[40];
  const auto a = gen(), b = gen();
  std::snprintf(buf, sizeof buf, "%08llx-%04llx-4%03llx-8%03llx-%012llx", static_cast<unsigned long long>(a >> 32),
                static_cast<unsigned long long>((a >> 16) & 0xffff), static_cast<unsigned long long>(a & 0xfff),
                static_cast<unsigned long long>(b >> 52), static_cast<unsigned long long>(b & 0xffffffffffffull));
  return buf;
}

std::string token_for(const std::string& user, std::vector<std::string> roles) {
  security::jwt_settings s;
  s.secret = test_jwt_secret();
  s.kid = "mercato-1";
  return security::sign_access_token(
      security::make_access_claims(user, std::move(roles), "", s, std::chrono::system_clock::now()), s);
}

headers bearer(const std::string& token, headers extra) {
  extra.emplace_back("Authorization", "Bearer " + token);
  return extra;
}

headers json_body(headers h) {
  h.emplace_back("Content-Type", "application/json");
  return h;
}

std::string str(const json::value& v, const char* key) { return std::string(v.at(key).as_string()); }

std::string code_of(const http_reply& r) {
  try {
    return str(r.json(), "code");
  } catch (...) {
    return "<no problem body: " + r.body + ">";
  }
}

long scalar(const std::string& dsn, const std::string& sql, const std::string& param) {
  pqxx::connection conn{dsn};
  pqxx::nontransaction tx{conn};
  return param.empty() ? tx.exec1(sql)[0].as<long>() : tx.exec_params1(sql, param)[0].as<long>();
}

customer registered_customer(http_client& c) {
  const auto email = "shop-customer-" + random_uuid() + "@example.com";
  auto reg = c.request("POST", "/api/v1/auth/register",
                       json::serialize(json::object{{"email", email}, {"password", "correct horse battery"}, {"name", "C"}}),
                       json_body({}));
  REQUIRE_MESSAGE(reg.status == 201, reg.body);
  customer out;
  out.id = str(reg.json().at("user"), "id");
  out.token = str(reg.json(), "access_token");
  return out;
}

std::string admin_token(http_client& c, const std::string& dsn) {
  const auto email = "shop-admin-" + random_uuid() + "@example.com";
  auto reg = c.request("POST", "/api/v1/auth/register",
                       json::serialize(json::object{{"email", email}, {"password", "correct horse battery"}, {"name", "A"}}),
                       json_body({}));
  REQUIRE_MESSAGE(reg.status == 201, reg.body);
  {
    pqxx::connection conn{dsn};
    pqxx::work tx{conn};
    tx.exec_params("UPDATE users SET roles = ARRAY['admin'] WHERE id = $1::uuid", str(reg.json().at("user"), "id"));
    tx.commit();
  }
  auto login = c.request("POST", "/api/v1/auth/login",
                         json::serialize(json::object{{"email", email}, {"password", "correct horse battery"}}),
                         json_body({}));
  REQUIRE_MESSAGE(login.status == 200, login.body);
  return str(login.json(), "access_token");
}

std::string product_with_stock(http_client& c, const std::string& dsn, int index, std::int64_t available) {
  auto r = c.get("/api/v1/products?limit=100&sort=name");
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const auto page = r.json();
  const auto& data = page.at("data").as_array();
  REQUIRE(index < static_cast<int>(data.size()));
  const auto id = str(data[static_cast<std::size_t>(index)], "id");
  const auto now = available_of(c, id);
  if (now != available) {
    auto adj = c.request("POST", "/api/v1/inventory/" + id + "/adjustments",
                         json::serialize(json::object{{"delta", available - now}, {"reason", "test stock"}}),
                         json_body(bearer(admin_token(c, dsn))));
    REQUIRE_MESSAGE(adj.status == 200, adj.body);
  }
  return id;
}

std::int64_t available_of(http_client& c, const std::string& product) {
  auto r = c.get("/api/v1/inventory/" + product);
  REQUIRE_MESSAGE(r.status == 200, r.body);
  return r.json().at("available").to_number<std::int64_t>();
}

std::int64_t reserved_of(http_client& c, const std::string& product) {
  auto r = c.get("/api/v1/inventory/" + product);
  REQUIRE_MESSAGE(r.status == 200, r.body);
  return r.json().at("reserved").to_number<std::int64_t>();
}

std::string new_cart(http_client& c, const customer& who) {
  auto r = c.request("POST", "/api/v1/carts", {}, bearer(who.token));
  REQUIRE_MESSAGE(r.status == 201, r.body);
  return str(r.json(), "id");
}

void add(http_client& c, const customer& who, const std::string& cart, const std::string& product, int qty) {
  auto r = c.request("POST", "/api/v1/carts/" + cart + "/items",
                     json::serialize(json::object{{"product_id", product}, {"quantity", qty}}),
                     json_body(bearer(who.token)));
  REQUIRE_MESSAGE(r.status == 200, r.body);
}

http_reply add_one(http_client& c, const customer& who, const std::string& cart, const std::string& product,
                   const std::string& key) {
  return c.request("POST", "/api/v1/carts/" + cart + "/items",
                   json::serialize(json::object{{"product_id", product}, {"quantity", 1}}),
                   json_body(bearer(who.token, {{"Idempotency-Key", key}})));
}

std::int64_t quantity_in(const json::value& cart) {
  std::int64_t q = 0;
  for (const auto& line : cart.at("items").as_array()) {
    q += line.at("quantity").to_number<std::int64_t>();
  }
  return q;
}

std::string checkout_body(const std::string& card, const std::string& country) {
  return json::serialize(json::object{
      {"shipping_address",
       {{"name", "Ada"}, {"line1", "1 Main St"}, {"city", "Springfield"}, {"postal_code", "12345"}, {"country", country}}},
      {"payment", {{"method", "card"}, {"token", card}}}});
}

http_reply post(http_client& c, const std::string& path, const std::string& token, const std::string& body,
                headers extra) {
  auto h = bearer(token, std::move(extra));
  return c.request("POST", path, body, body.empty() ? h : json_body(h));
}

http_reply checkout(http_client& c, const customer& who, const std::string& cart, const std::string& card,
                    const std::string& key, const std::string& country) {
  return c.request("POST", "/api/v1/carts/" + cart + "/checkout", checkout_body(card, country),
                   json_body(bearer(who.token, {{"Idempotency-Key", key}})));
}

}  // namespace mercato::test::shop
