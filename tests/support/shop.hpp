#pragma once
// A storefront client for end-to-end tests: customers with forged access tokens (the node shares the
// test JWT secret), a real admin account, carts, stock levels and checkouts over HTTP. Shared by the
// checkout tests so each test file says only what it checks.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <boost/json/value.hpp>

#include "support/http_client.hpp"

namespace mercato::test::shop {

using headers = std::vector<std::pair<std::string, std::string>>;

std::string random_uuid();
// A signed access token for `user` with `roles` (no account needed for routes that only check the token).
std::string token_for(const std::string& user, std::vector<std::string> roles = {"customer"});
headers bearer(const std::string& token, headers extra = {});
headers json_body(headers h);
std::string str(const boost::json::value& v, const char* key);
std::string code_of(const http_reply& r);  // the problem's code, or a description of the body
long scalar(const std::string& dsn, const std::string& sql, const std::string& param = {});

struct customer {
  std::string id = random_uuid();
  std::string token = token_for(id);
};

// A registered customer account (privileged routes confirm the caller's session, which a forged token
// lacks: it would get 401 where a real customer gets 403).
customer registered_customer(http_client& c);

// A real admin account in the node's database `dsn` (privileged routes confirm the caller there);
// its access token.
std::string admin_token(http_client& c, const std::string& dsn);
// The `index`-th demo product by name, its stock set so that exactly `available` units are available.
std::string product_with_stock(http_client& c, const std::string& dsn, int index, std::int64_t available);
std::int64_t available_of(http_client& c, const std::string& product);
std::int64_t reserved_of(http_client& c, const std::string& product);

std::string new_cart(http_client& c, const customer& who);
void add(http_client& c, const customer& who, const std::string& cart, const std::string& product, int qty);
// POST `body` (JSON, none when empty) to `path` as the bearer of `token`.
http_reply post(http_client& c, const std::string& path, const std::string& token, const std::string& body = {},
                headers extra = {});
// Adds one unit of `product` with an Idempotency-Key (a retry with the same key applies once); the reply as is.
http_reply add_one(http_client& c, const customer& who, const std::string& cart, const std::string& product,
                   const std::string& key);
// The units in a cart (the sum of its lines' quantities).
std::int64_t quantity_in(const boost::json::value& cart);
std::string checkout_body(const std::string& card, const std::string& country = "US");
http_reply checkout(http_client& c, const customer& who, const std::string& cart, const std::string& card,
                    const std::string& key, const std::string& country = "US");

}  // namespace mercato::test::shop
