#include "http/routes/order_routes.hpp"

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include <boost/json.hpp>
#include <caf/make_message.hpp>
#include <pqxx/pqxx>

#include "actors/order/order_model.hpp"
#include "actors/order/order_ops.hpp"
#include "actors/snapshot_fields.hpp"
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


json::array shipments_json(const protocol::order_view& o) {
  json::array out;
  for (const auto& x : o.shipments) {
    out.push_back(json::object{{"id", x.id},
                               {"carrier", x.carrier},
                               {"tracking_number", x.tracking_number},
                               {"label_url", x.label_url.empty() ? json::value(nullptr) : json::value(x.label_url)},
                               {"created_at", x.shipped_at}});
  }
  return out;
}

json::array returns_json(const protocol::order_view& o) {
  json::array out;
  for (const auto& r : o.returns) {
    json::array items;
    for (const auto& l : r.items) {
      items.push_back(json::object{{"product_id", l.product_id}, {"quantity", l.quantity}});
    }
    json::object x{{"id", r.id},
                   {"status", r.status},
                   {"items", std::move(items)},
                   {"reason", r.reason},
                   {"created_at", r.requested_at},
                   {"received_at", r.received_at.empty() ? json::value(nullptr) : json::value(r.received_at)}};
    if (r.status == "received") {
      x["refund_amount"] = money(r.refund_amount, o.currency);
    }
    out.push_back(std::move(x));
  }
  return out;
}

json::object payment_json(const protocol::payment_view& p) {
  return json::object{{"id", p.id},
                      {"order_id", p.order_id},
                      {"status", p.status},
                      {"amount", money(p.amount, p.currency)},
                      {"refunded_amount", money(p.refunded_amount, p.currency)},
                      {"provider", p.provider},
                      {"version", p.version}};
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
                      {"shipping_address", actors::object_or_empty(o.shipping_address)},
                      {"billing_address", actors::object_or_empty(o.billing_address)},
                      {"payment", std::move(payment)},
                      {"shipments", shipments_json(o)},
                      {"returns", returns_json(o)},
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
  const auto v = actors::object_or_empty(*text);
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
    const auto lines = actors::object_or_empty(o.failure_detail);
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
  if (o.status == "canceled" && o.failure_code == "canceled") {
    return response::from(problem{409, "order_canceled", "Order canceled",
                                  "the order was canceled while it was being paid; nothing was charged and the "
                                  "stock was released",
                                  {}});
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
  // Reads the order for `ctx`'s caller (support/admin: any) and hands it to `then`; errors answered.
  auto with_order = [c](const std::shared_ptr<request_context>& ctx, const responder& respond,
                        std::function<void(protocol::order_view)> then) {
    const auto* id = ctx->param("id");
    if (!id || !is_uuid(*id)) {
      respond(not_found("no such order"));
      return;
    }
    protocol::order_get get;
    get.meta = command_meta_for(*ctx, "get", *id);
    get.meta.command_id.clear();
    get.meta.admin = ctx->caller->is_admin() || ctx->caller->has_role("support") || ctx->caller->has_role("vendor");
    c->bridge.ask<protocol::order_view>("order", *id, caf::make_message(std::move(get)),
                                        [respond, then, ctx](caf::expected<protocol::order_view> r) {
                                          if (!r) {
                                            respond(response_for(r.error()));
                                            return;
                                          }
                                          // A vendor sees only orders with its products.
                                          const auto& who = *ctx->caller;
                                          if (who.has_role("vendor") && !who.is_admin() && !who.has_role("support") &&
                                              r->customer_id != who.user_id) {
                                            const bool theirs = std::any_of(
                                                r->items.begin(), r->items.end(),
                                                [&](const protocol::order_line& l) { return l.vendor_id == who.vendor_id; });
                                            if (who.vendor_id.empty() || !theirs) {
                                              respond(not_found("no such order"));
                                              return;
                                            }
                                          }
                                          then(std::move(*r));
                                        });
  };
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
          const auto p = actors::object_or_empty(*payment).as_object();
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
        in.country = std::string(actors::object_or_empty(*shipping).at("country").as_string());
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

  routes.add(bhttp::verb::get, "/api/v1/orders/{id}", [with_order](auto ctx, responder respond) {
    with_order(ctx, respond, [respond](protocol::order_view o) { respond(order_response(200, o)); });
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
          auto res = response::json(200, payment_json(*r));
          res.with_header("ETag", etag_for_version(r->version));
          res.with_header("Cache-Control", "no-store");
          respond(std::move(res));
        });
  }, signed_in_route());

  // --- after checkout ----------------------------------------------------------------------------
  auto transition = [c](const std::shared_ptr<request_context>& ctx, const responder& respond, std::string order_id,
                        protocol::order_transition t, unsigned status) {
    t.meta = command_meta_for(*ctx, t.to, order_id);
    t.meta.source = "saga";  // the edge has checked who may do it
    const auto expected = if_match_version(ctx->header(bhttp::field::if_match));
    if (!expected) {
      respond(precondition_failed());
      return;
    }
    t.meta.expected_version = *expected;
    c->bridge.ask<protocol::order_view>("order", order_id, caf::make_message(std::move(t)),
                                        [respond, status](caf::expected<protocol::order_view> r) {
                                          respond(r ? order_response(status, *r) : response_for(r.error()));
                                        });
  };
  const auto staff = [](const principal& p) { return p.is_admin() || p.has_role("support"); };

  // Cancel: the customer (own order, before it ships), support or admin. A paid order is refunded in
  // full and its stock returned; an order pending payment has its authorization voided.
  routes.add(bhttp::verb::post, "/api/v1/orders/{id}/cancel", [c, with_order, staff](auto ctx, responder respond) {
    with_order(ctx, respond, [c, ctx, respond, staff](protocol::order_view o) {
      if (!staff(*ctx->caller) && o.customer_id != ctx->caller->user_id) {
        respond(problem{403, "forbidden", "Forbidden", "only the customer, support or an admin cancels an order", {}});
        return;
      }
      auto meta = command_meta_for(*ctx, "cancel", o.id);
      actors::run_cancel(c->system, c->checkout, o.id, meta, [respond](caf::expected<protocol::order_view> r) {
        respond(r ? order_response(200, *r) : response_for(r.error()));
      });
    });
  }, signed_in_route());

  // Ship: admin, or a vendor with products in the order. The sandbox carrier makes the shipment and
  // its label (served below).
  routes.add(bhttp::verb::post, "/api/v1/orders/{id}/ship", [c, with_order, transition](auto ctx, responder respond) {
    body_reader body(*ctx);
    body.allow_only({"carrier", "tracking_number", "label_url"});
    auto carrier = body.text("carrier", false, 1, 100);
    auto tracking = body.text("tracking_number", false, 1, 100);
    auto label = body.text("label_url", false, 1, 2000);
    if (label && !is_web_link(*label, true)) {
      body.error("label_url", "must be an absolute http or https URL");
    }
    if (!body.ok()) {
      respond(body.to_problem());
      return;
    }
    with_order(ctx, respond, [c, ctx, respond, transition, carrier, tracking, label](protocol::order_view o) {
      // A vendor ships only an order with its products. with_order lets a vendor read its own purchases
      // too (as their customer), so that is checked here again.
      const auto& who = *ctx->caller;
      if (!who.is_admin() &&
          (who.vendor_id.empty() || std::none_of(o.items.begin(), o.items.end(), [&](const protocol::order_line& l) {
             return l.vendor_id == who.vendor_id;
           }))) {
        respond(problem{403, "forbidden", "Forbidden", "only an admin or a vendor with products in the order ships it", {}});
        return;
      }
      if (!o.shipments.empty() || o.status != "paid") {
        // Shipped before (the same answer), or not shippable (the order says invalid_transition).
        protocol::order_transition t;
        t.to = "shipped";
        transition(ctx, respond, o.id, std::move(t), 200);
        return;
      }
      actors::shipment_request req{o.id, o.order_number, o.shipping_address, "/api/v1/orders/" + o.id + "/shipments"};
      c->carrier->create_shipment(req, [ctx, respond, transition, o, carrier, tracking,
                                        label](caf::expected<protocol::order_shipment> made) {
        if (!made) {
          respond(response_for(made.error()));
          return;
        }
        protocol::order_transition t;
        t.to = "shipped";
        t.shipment = std::move(*made);
        // A caller that ships with a carrier of its own names it (and its tracking number and label).
        if (carrier && *carrier != t.shipment.carrier) {
          t.shipment.carrier = *carrier;
          t.shipment.label_url.clear();  // not a label this API serves
        }
        if (tracking) {
          t.shipment.tracking_number = *tracking;
        }
        if (label) {
          t.shipment.label_url = *label;
        }
        transition(ctx, respond, o.id, std::move(t), 200);
      });
    });
  }, role_route({"vendor", "admin"}, true));

  routes.add(bhttp::verb::post, "/api/v1/orders/{id}/deliver", [with_order, transition](auto ctx, responder respond) {
    with_order(ctx, respond, [ctx, respond, transition](protocol::order_view o) {
      protocol::order_transition t;
      t.to = "delivered";
      transition(ctx, respond, o.id, std::move(t), 200);
    });
  }, role_route({"admin"}));

  // The sandbox carrier's shipping label: an SVG document with the order, the address and the tracking number.
  routes.add(bhttp::verb::get, "/api/v1/orders/{id}/shipments/{shipment_id}/label", [c, with_order](auto ctx, responder respond) {
    const std::string shipment_id{*ctx->param("shipment_id")};
    with_order(ctx, respond, [c, respond, shipment_id](protocol::order_view o) {
      for (const auto& x : o.shipments) {
        if (x.id != shipment_id) {
          continue;
        }
        auto doc = x.carrier == c->carrier->name() ? c->carrier->label(o, x) : std::nullopt;
        if (!doc) {
          respond(not_found("this shipment's label is kept by its carrier (see label_url)"));
          return;
        }
        response res = response::json_text(200, std::move(doc->body));
        res.content_type = doc->media_type;
        respond(std::move(res));
        return;
      }
      respond(not_found("no such shipment"));
    });
  }, signed_in_route());

  // A return: the customer, for their delivered order; each line at most what was ordered.
  routes.add(bhttp::verb::post, "/api/v1/orders/{id}/returns", [with_order, transition](auto ctx, responder respond) {
    boost::system::error_code ec;
    const auto body = json::parse(ctx->raw.body(), ec);
    std::vector<field_error> errors;
    protocol::order_return ret;
    if (ec || !body.is_object()) {
      respond(invalid_request("the body must be a JSON object", {{"/", "must be a JSON object"}}));
      return;
    }
    const auto& o = body.as_object();
    for (const auto& [k, val] : o) {
      if (k != "items" && k != "reason") {
        errors.push_back({"/" + std::string(k), "is not a field of this request"});
      }
    }
    auto reason = o.find("reason");
    if (reason == o.end() || !reason->value().is_string() || reason->value().as_string().empty() ||
        reason->value().as_string().size() > 1000) {
      errors.push_back({"/reason", "must be a non-empty string of at most 1000 characters"});
    } else {
      ret.reason = std::string(reason->value().as_string());
    }
    auto items = o.find("items");
    if (items == o.end() || !items->value().is_array() || items->value().as_array().empty() ||
        items->value().as_array().size() > 100) {
      errors.push_back({"/items", "must list 1 to 100 lines"});
    } else {
      std::size_t i = 0;
      for (const auto& it : items->value().as_array()) {
        const auto at = "/items/" + std::to_string(i++);
        if (!it.is_object() || !it.as_object().contains("product_id") || !it.at("product_id").is_string() ||
            !is_uuid(it.at("product_id").as_string())) {
          errors.push_back({at + "/product_id", "must be a product UUID"});
          continue;
        }
        if (!it.as_object().contains("quantity") || !it.at("quantity").is_int64() ||
            it.at("quantity").as_int64() < 1 || it.at("quantity").as_int64() > 999) {
          errors.push_back({at + "/quantity", "must be an integer from 1 to 999"});
          continue;
        }
        ret.items.push_back({std::string(it.at("product_id").as_string()),
                             static_cast<std::int32_t>(it.at("quantity").as_int64())});
      }
    }
    if (!errors.empty()) {
      respond(invalid_request("the return cannot be made as asked", std::move(errors)));
      return;
    }
    with_order(ctx, respond, [ctx, respond, transition, ret](protocol::order_view order) mutable {
      if (order.customer_id != ctx->caller->user_id) {
        respond(problem{403, "forbidden", "Forbidden", "only the customer returns an order", {}});
        return;
      }
      std::vector<field_error> bad;
      for (std::size_t i = 0; i < ret.items.size(); ++i) {
        const auto& r = ret.items[i];
        const auto line = std::find_if(order.items.begin(), order.items.end(),
                                       [&](const protocol::order_line& l) { return l.product_id == r.product_id; });
        if (line == order.items.end()) {
          bad.push_back({"/items/" + std::to_string(i) + "/product_id", "is not a line of this order"});
        } else if (r.quantity > line->quantity) {
          bad.push_back({"/items/" + std::to_string(i) + "/quantity", "is more than was ordered"});
        }
      }
      if (!bad.empty()) {
        respond(invalid_request("the return does not match the order", std::move(bad)));
        return;
      }
      const auto key = ctx->header("Idempotency-Key");
      ret.id = uuid_from_hash(security::sha256_hex("return\n" + order.id + "\n" + std::string(key.empty() ? ctx->request_id : key)));
      protocol::order_transition t;
      t.to = "return_requested";
      t.return_request = std::move(ret);
      transition(ctx, respond, order.id, std::move(t), 201);
    });
  }, signed_in_route(true));

  // Receiving a return: support or admin; stock back, the returned lines refunded.
  routes.add(bhttp::verb::post, "/api/v1/orders/{id}/returns/{return_id}/receive", [c, with_order](auto ctx, responder respond) {
    const std::string return_id{*ctx->param("return_id")};
    if (!is_uuid(return_id)) {
      respond(not_found("no such return"));
      return;
    }
    with_order(ctx, respond, [c, ctx, respond, return_id](protocol::order_view o) {
      actors::run_receive_return(c->system, c->checkout, o.id, return_id, command_meta_for(*ctx, "receive", o.id),
                                 [respond](caf::expected<protocol::order_view> r) {
                                   respond(r ? order_response(200, *r) : response_for(r.error()));
                                 });
    });
  }, role_route({"support", "admin"}));

  // A refund of (part of) a payment: support or admin, Idempotency-Key required.
  routes.add(bhttp::verb::post, "/api/v1/payments/{id}/refunds", [c](auto ctx, responder respond) {
    const auto* id = ctx->param("id");
    if (!id || !is_uuid(*id)) {
      respond(not_found("no such payment"));
      return;
    }
    const auto key = ctx->header("Idempotency-Key");
    if (key.empty()) {
      respond(invalid_request("a refund needs an Idempotency-Key header", {{"Idempotency-Key", "is required for a refund"}}));
      return;
    }
    body_reader body(*ctx);
    body.allow_only({"amount", "reason"});
    auto amount_json = body.object_json("amount", true, 200);
    auto reason = body.text("reason", true, 1, 1000);
    std::int64_t amount = 0;
    if (amount_json) {
      const auto a = actors::object_or_empty(*amount_json);
      if (!a.is_object() || !a.as_object().contains("amount") || !a.at("amount").is_int64() || a.at("amount").as_int64() <= 0) {
        body.error_at("/amount/amount", "must be a positive integer of minor units");
      } else {
        amount = a.at("amount").as_int64();
      }
    }
    if (!body.ok()) {
      respond(body.to_problem());
      return;
    }
    const auto refund_id = uuid_from_hash(security::sha256_hex("refund\n" + *id + "\n" + std::string(key)));
    actors::run_refund(c->system, c->checkout, *id, refund_id, amount, *reason, command_meta_for(*ctx, "refund", *id),
                       [respond, refund_id, amount, reason](caf::expected<protocol::payment_view> r) {
                         if (!r) {
                           respond(response_for(r.error()));
                           return;
                         }
                         const auto& p = *r;
                         auto payment = payment_json(p);
                         auto res = response::json(201, json::object{{"id", refund_id},
                                                                     {"payment_id", p.id},
                                                                     {"amount", money(amount, p.currency)},
                                                                     {"reason", *reason},
                                                                     {"created_at", p.updated_at},
                                                                     {"payment", std::move(payment)}});
                         res.with_header("ETag", etag_for_version(p.version));
                         respond(std::move(res));
                       });
  }, role_route({"support", "admin"}, true));
}

}  // namespace mercato::http
