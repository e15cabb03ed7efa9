#include "http/routes/order_routes.hpp"

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include <boost/json.hpp>
#include <caf/make_message.hpp>
#include <pqxx/pqxx>

#include "actors/order/order_model.hpp"
#include "actors/payment/payment_model.hpp"
#include "actors/protocol/cart_messages.hpp"
#include "actors/protocol/order_messages.hpp"
#include "actors/protocol/type_ids.hpp"
#include "http/body_reader.hpp"
#include "http/codec.hpp"
#include "http/routes/db_call.hpp"
#include "http/routes/query_params.hpp"
#include "persistence/catalog_store.hpp"
#include "security/jwt.hpp"

namespace mercato::http {
namespace {

namespace json = boost::json;

json::object money(std::int64_t amount, const std::string& currency) {
  return {{"amount", amount}, {"currency", currency}};
}

json::value parsed(const std::string& text) {
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  return ec ? json::value(json::object{}) : v;
}

json::object order_json(const protocol::order_view& o) {
  json::array items;
  for (const auto& l : o.items) {
    items.push_back(json::object{{"product_id", l.product_id},
                                 {"product_sku", l.sku},
                                 {"product_name", l.name},
                                 {"quantity", l.quantity},
                                 {"unit_price", money(l.unit_price, o.currency)},
                                 {"total_price", money(l.unit_price * l.quantity, o.currency)}});
  }
  json::array history;
  for (const auto& h : o.history) {
    if (h.status == "reserving") {
      continue;  // the checkout's own first step, not an order status
    }
    history.push_back(json::object{{"status", h.status}, {"at", h.at}});
  }
  json::value payment = nullptr;
  if (!o.payment_id.empty()) {
    payment = json::object{{"id", o.payment_id}, {"status", o.payment_status}};
  }
  return json::object{{"id", o.id},
                      {"order_number", o.order_number},
                      {"customer_id", o.customer_id},
                      {"status", o.status},
                      {"items", std::move(items)},
                      {"subtotal", money(o.subtotal, o.currency)},
                      {"tax_amount", money(o.tax, o.currency)},
                      {"shipping_amount", money(o.shipping, o.currency)},
                      {"discount_amount", money(o.discount, o.currency)},
                      {"total_amount", money(o.total, o.currency)},
                      {"currency", o.currency},
                      {"shipping_address", parsed(o.shipping_address)},
                      {"billing_address", parsed(o.billing_address)},
                      {"payment", std::move(payment)},
                      {"shipments", json::array{}},
                      {"history", std::move(history)},
                      {"version", o.version},
                      {"created_at", o.created_at},
                      {"updated_at", o.updated_at}};
}

response order_response(unsigned status, const protocol::order_view& o) {
  auto r = response::json(status, order_json(o));
  r.with_header("ETag", etag_for_version(o.version));
  r.with_header("Cache-Control", "no-store");
  return r;
}

// A UUID-shaped id from a hash (the order of a checkout: caller, cart and Idempotency-Key).
std::string uuid_from_hash(const std::string& hex) {
  std::string h = hex.substr(0, 32);
  h[12] = '4';
  h[16] = "89ab"[(std::stoi(std::string(1, h[16]), nullptr, 16)) & 3];
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" + h.substr(20, 12);
}

// An address object as API.md's AddressInput: line1, city, postal_code, country (ISO alpha-2) required.
std::optional<std::string> read_address(body_reader& body, const char* name, bool required) {
  auto text = body.object_json(name, required, 4096);
  if (!text) {
    return std::nullopt;
  }
  const auto v = parsed(*text);
  const auto& o = v.as_object();
  const std::string base = std::string("/") + name + "/";
  bool good = true;
  auto field = [&](const char* key, bool needed, std::size_t max) {
    auto it = o.find(key);
    if (it == o.end() || it->value().is_null()) {
      if (needed) {
        body.error_at(base + key, "is required");
        good = false;
      }
      return;
    }
    if (!it->value().is_string() || (needed && it->value().as_string().empty()) ||
        utf8_length(it->value().as_string()) > max) {
      body.error_at(base + key, needed ? "must be a non-empty string of at most " + std::to_string(max) + " characters"
                                       : "must be a string of at most " + std::to_string(max) + " characters");
      good = false;
    }
  };
  field("name", false, 200);
  field("line1", true, 200);
  field("line2", false, 200);
  field("city", true, 100);
  field("region", false, 100);
  field("postal_code", true, 20);
  field("country", true, 2);
  if (auto it = o.find("country"); it != o.end() && it->value().is_string()) {
    const auto& c = it->value().as_string();
    if (c.size() != 2 || !std::all_of(c.begin(), c.end(), [](char ch) { return ch >= 'A' && ch <= 'Z'; })) {
      body.error_at(base + "country", "must be an ISO 3166-1 alpha-2 code such as US");
      good = false;
    }
  }
  for (const auto& [k, val] : o) {
    static const std::vector<std::string> known{"name", "line1", "line2", "city", "region", "postal_code", "country"};
    if (std::find(known.begin(), known.end(), std::string(k)) == known.end()) {
      body.error_at(base + std::string(k), "is not a field of an address");
      good = false;
    }
  }
  if (!good) {
    return std::nullopt;
  }
  return text;
}

// How a finished checkout answers: 201 with the paid order, else the problem API.md names.
response checkout_answer(const caf::expected<protocol::order_view>& r) {
  if (!r) {
    return response_for(r.error());
  }
  const auto& o = *r;
  if (o.status == "failed" && o.failure_code == "insufficient_stock") {
    problem p{409, "insufficient_stock", "Insufficient stock", "some lines are short of stock; nothing was reserved", {}};
    const auto lines = parsed(o.failure_detail);
    if (lines.is_array()) {
      for (const auto& l : lines.as_array()) {
        p.errors.push_back({"/items/" + std::string(l.at("product_id").as_string()),
                            "requested " + std::to_string(l.at("requested").to_number<std::int64_t>()) + ", " +
                                std::to_string(l.at("available").to_number<std::int64_t>()) + " available"});
      }
    }
    return response::from(p);
  }
  if (o.status == "canceled" && o.failure_code == "payment_timeout") {
    problem p{504, "payment_timeout", "Payment provider timeout",
              "the payment provider did not answer in time; nothing was charged and the stock was released", {}};
    p.retry_safe = true;
    return response::from(p).with_header("Retry-After", "1");
  }
  if (o.status == "canceled") {
    problem p{402, "payment_declined", "Payment declined",
              "the payment was declined (" + (o.failure_detail.empty() ? std::string("card_declined") : o.failure_detail) +
                  "); nothing was charged and the stock was released",
              {}};
    return response::from(p);
  }
  auto res = order_response(201, o);
  res.with_header("Location", "/api/v1/orders/" + o.id);
  return res;
}

struct checkout_input {
  std::string cart_id;
  std::string user_id;
  std::string shipping;
  std::string billing;
  std::string token;
  std::string country;
  std::string order_id;
  std::int64_t expected_version = 0;  // If-Match: the cart's version (0: none)
  protocol::command_meta meta;
};

// After the cart and the catalog agree: the order and its saga.
void start_checkout(const std::shared_ptr<order_routes_context>& c, const checkout_input& in,
                    const protocol::cart_view& cart, const std::vector<persistence::product_view>& products,
                    const responder& respond) {
  protocol::order_create cmd;
  cmd.meta = in.meta;
  cmd.customer_id = in.user_id;
  cmd.cart_id = in.cart_id;
  cmd.currency = cart.currency;
  problem changed{409, "price_changed", "Price changed",
                  "the price of some lines changed since the cart was read; read the cart and check out again", {}};
  problem gone{409, "insufficient_stock", "Insufficient stock", "some products are no longer sold", {}};
  for (const auto& l : cart.items) {
    const persistence::product_view* p = nullptr;
    for (const auto& candidate : products) {
      if (candidate.id == l.product_id) {
        p = &candidate;
      }
    }
    if (!p || p->status != "active") {
      gone.errors.push_back({"/items/" + l.product_id, "requested " + std::to_string(l.quantity) + ", 0 available"});
      continue;
    }
    if (p->current_price != l.unit_price) {
      changed.errors.push_back({"/items/" + l.product_id, "was " + std::to_string(l.unit_price) + ", now " +
                                                               std::to_string(p->current_price)});
      continue;
    }
    cmd.items.push_back({l.product_id, l.sku, l.name, p->vendor_id.value_or(""), l.quantity, l.unit_price});
  }
  if (!gone.errors.empty()) {
    respond(gone);
    return;
  }
  if (!changed.errors.empty()) {
    respond(changed);
    return;
  }
  const auto totals = actors::price_cart(cart.items, *c->pricing, in.country);
  cmd.subtotal = totals.subtotal;
  cmd.tax = totals.tax;
  cmd.shipping = totals.shipping;
  cmd.discount = totals.discount;
  cmd.total = totals.total;
  cmd.shipping_address = in.shipping;
  cmd.billing_address = in.billing.empty() ? in.shipping : in.billing;
  cmd.payment_token = in.token;
  actors::run_checkout(c->system, c->checkout, in.order_id, std::move(cmd),
                       [respond](caf::expected<protocol::order_view> r) { respond(checkout_answer(r)); });
}

}  // namespace

void add_order_routes(router& routes, std::shared_ptr<order_routes_context> c) {
  routes.add(
      bhttp::verb::post, "/api/v1/carts/{id}/checkout",
      [c](auto ctx, responder respond) {
        const auto* id = ctx->param("id");
        if (!id || !is_uuid(*id)) {
          respond(not_found("no such cart"));
          return;
        }
        const auto key = ctx->header("Idempotency-Key");
        if (key.empty()) {
          respond(invalid_request("a checkout needs an Idempotency-Key header",
                                  {{"Idempotency-Key", "is required for a checkout"}}));
          return;
        }
        body_reader body(*ctx);
        body.allow_only({"shipping_address", "billing_address", "payment"});
        checkout_input in;
        auto shipping = read_address(body, "shipping_address", true);
        auto billing = read_address(body, "billing_address", false);
        auto payment = body.object_json("payment", true, 1024);
        if (payment) {
          const auto p = parsed(*payment).as_object();
          auto method = p.find("method");
          if (method == p.end() || !method->value().is_string() || method->value().as_string() != "card") {
            body.error_at("/payment/method", "must be card");
          }
          auto token = p.find("token");
          if (token == p.end() || !token->value().is_string() || token->value().as_string().empty() ||
              token->value().as_string().size() > 200) {
            body.error_at("/payment/token", "must be the provider's card token (1 to 200 characters)");
          } else {
            in.token = std::string(token->value().as_string());
          }
          for (const auto& [k, v] : p) {
            if (k != "method" && k != "token") {
              body.error_at("/payment/" + std::string(k), "is not a field of a payment method");
            }
          }
        }
        if (!body.ok()) {
          respond(body.to_problem());
          return;
        }
        in.cart_id = *id;
        in.user_id = ctx->caller->user_id;
        in.shipping = *shipping;
        in.billing = billing ? *billing : std::string{};
        in.country = std::string(parsed(*shipping).at("country").as_string());
        in.meta = command_meta_for(*ctx, "checkout", *id);
        const auto expected = if_match_version(ctx->header(bhttp::field::if_match));
        if (!expected) {
          respond(precondition_failed());
          return;
        }
        in.expected_version = *expected;
        in.order_id = uuid_from_hash(security::sha256_hex("checkout\n" + in.user_id + "\n" + *id + "\n" + std::string(key)));
        protocol::cart_get get;
        get.meta = in.meta;
        get.meta.command_id.clear();
        c->bridge.ask<protocol::cart_view>(
            "cart", *id, caf::make_message(std::move(get)), [c, in, respond](caf::expected<protocol::cart_view> r) {
              if (!r) {
                respond(response_for(r.error()));
                return;
              }
              auto cart = std::move(*r);
              if (cart.owner_user_id != in.user_id) {
                // A guest cart is claimed first (POST /carts/{id}/claim); someone else's is not found.
                if (cart.owner_user_id.empty()) {
                  respond(problem{409, "conflict", "Conflict", "claim the guest cart before checking it out", {}});
                } else {
                  respond(not_found("no such cart"));
                }
                return;
              }
              // A repeat of a finished checkout (same key): the order answers, whatever the cart holds now.
              with_db(c->pool, respond, [c, in, cart = std::move(cart), respond](pqxx::connection& conn) {
                {
                  pqxx::nontransaction tx{conn};
                  if (!tx.exec_params("SELECT 1 FROM order_sagas WHERE order_id = $1::uuid", in.order_id).empty()) {
                    protocol::order_create again;  // the order exists: only the meta is needed
                    again.meta = in.meta;
                    actors::run_checkout(c->system, c->checkout, in.order_id, std::move(again),
                                         [respond](caf::expected<protocol::order_view> r) {
                                           respond(checkout_answer(r));
                                         });
                    return;
                  }
                }
                if (in.expected_version != 0 && cart.version != in.expected_version) {
                  respond(precondition_failed());
                  return;
                }
                if (cart.status != "open" || cart.items.empty()) {
                  respond(problem{409, "conflict", "Conflict",
                                  cart.items.empty() ? "the cart is empty" : "the cart is " + cart.status, {}});
                  return;
                }
                std::vector<std::string> ids;
                for (const auto& l : cart.items) {
                  ids.push_back(l.product_id);
                }
                start_checkout(c, in, cart, persistence::catalog_store::find_products(conn, ids), respond);
              });
            });
      },
      signed_in_route(true));

  // Newest first from the `orders` projection (committed orders only); each order as its snapshot says.
  // Customers see their own; support and admin all, filtered by status and customer_id.
  routes.add(bhttp::verb::get, "/api/v1/orders", [c](auto ctx, responder respond) {
    query_reader q(*ctx);
    const auto limit = q.integer("limit", 20, 1, 100);
    const auto status = q.text("status", 1, 30);
    static const std::vector<std::string> statuses{"pending_payment", "paid",     "shipped",  "delivered",
                                                   "canceled",        "return_requested", "refunded",
                                                   "partially_refunded"};
    if (status && std::find(statuses.begin(), statuses.end(), *status) == statuses.end()) {
      q.fail("status", "must be one of the order statuses");
    }
    auto customer = q.uuid("customer_id");
    const auto cursor = q.text("cursor", 1, 200);
    std::string after_at;
    std::string after_id;
    if (cursor) {
      const auto raw = base64url_decode(*cursor);
      const auto bar = raw ? raw->find('|') : std::string::npos;
      if (!raw || bar == std::string::npos || !is_uuid(raw->substr(bar + 1))) {
        q.fail("cursor", "is not a cursor of this listing");
      } else {
        after_at = raw->substr(0, bar);
        after_id = raw->substr(bar + 1);
      }
    }
    if (!q.ok()) {
      respond(q.to_problem());
      return;
    }
    const bool everyone = ctx->caller->is_admin() || ctx->caller->has_role("support");
    if (!everyone) {
      customer = ctx->caller->user_id;  // a customer's list is their own, whatever they ask
    }
    run_db(c->pool, respond, [=](pqxx::connection& conn) {
      pqxx::nontransaction tx{conn};
      const auto rows = tx.exec_params(
          "SELECT o.id::text, to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
          "       s.state::text, s.version "
          "FROM orders o JOIN entity_snapshots s ON s.kind = 'order' AND s.id = o.id::text "
          "WHERE ($1::uuid IS NULL OR o.customer_id = $1::uuid) AND ($2::text IS NULL OR o.status = $2) "
          "  AND ($3::timestamptz IS NULL OR (o.created_at, o.id) < ($3::timestamptz, $4::uuid)) "
          "ORDER BY o.created_at DESC, o.id DESC LIMIT $5",
          customer, status, after_at.empty() ? std::optional<std::string>{} : std::optional<std::string>{after_at},
          after_id.empty() ? std::optional<std::string>{} : std::optional<std::string>{after_id}, limit + 1);
      json::array data;
      std::optional<std::string> next;
      for (std::size_t i = 0; i < rows.size(); ++i) {
        if (static_cast<std::int64_t>(i) == limit) {
          next = base64url_encode(rows[i - 1][1].as<std::string>() + "|" + rows[i - 1][0].as<std::string>());
          break;
        }
        const auto state = actors::order_model::decode(json::parse(rows[i][2].as<std::string>()));
        data.push_back(order_json(actors::order_model::view(rows[i][0].as<std::string>(), state,
                                                            rows[i][3].as<std::int64_t>())));
      }
      json::object meta{{"next_cursor", next ? json::value(*next) : json::value(nullptr)},
                        {"has_more", next.has_value()}};
      auto res = response::json(200, json::object{{"data", std::move(data)}, {"meta", std::move(meta)}});
      res.with_header("Cache-Control", "no-store");
      return res;
    });
  }, signed_in_route());

  routes.add(bhttp::verb::get, "/api/v1/orders/{id}", [c](auto ctx, responder respond) {
    const auto* id = ctx->param("id");
    if (!id || !is_uuid(*id)) {
      respond(not_found("no such order"));
      return;
    }
    protocol::order_get get;
    get.meta = command_meta_for(*ctx, "get", *id);
    get.meta.command_id.clear();
    get.meta.admin = ctx->caller->is_admin() || ctx->caller->has_role("support");
    c->bridge.ask<protocol::order_view>("order", *id, caf::make_message(std::move(get)),
                                        [respond](caf::expected<protocol::order_view> r) {
                                          respond(r ? order_response(200, *r) : response_for(r.error()));
                                        });
  }, signed_in_route());

  routes.add(bhttp::verb::get, "/api/v1/payments/{id}", [c](auto ctx, responder respond) {
    const auto* id = ctx->param("id");
    if (!id || !is_uuid(*id)) {
      respond(not_found("no such payment"));
      return;
    }
    protocol::payment_get get;
    get.meta = command_meta_for(*ctx, "get", *id);
    get.meta.command_id.clear();
    get.meta.admin = ctx->caller->is_admin() || ctx->caller->has_role("support");
    c->bridge.ask<protocol::payment_view>(
        "payment", *id, caf::make_message(std::move(get)), [respond](caf::expected<protocol::payment_view> r) {
          if (!r) {
            respond(response_for(r.error()));
            return;
          }
          const auto& p = *r;
          auto res = response::json(200, json::object{{"id", p.id},
                                                      {"order_id", p.order_id},
                                                      {"status", p.status},
                                                      {"amount", money(p.amount, p.currency)},
                                                      {"refunded_amount", money(p.refunded_amount, p.currency)},
                                                      {"provider", p.provider},
                                                      {"version", p.version}});
          res.with_header("ETag", etag_for_version(p.version));
          res.with_header("Cache-Control", "no-store");
          respond(std::move(res));
        });
  }, signed_in_route());
}

}  // namespace mercato::http
