#include "http/routes/cart_routes.hpp"

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <caf/make_message.hpp>

#include "actors/protocol/cart_messages.hpp"
#include "actors/protocol/type_ids.hpp"
#include "http/body_reader.hpp"
#include "http/codec.hpp"
#include "http/routes/db_call.hpp"
#include "persistence/catalog_store.hpp"
#include "security/jwt.hpp"

namespace mercato::http {
namespace {

constexpr const char* kind = "cart";

boost::json::object money(std::int64_t amount, const std::string& currency) {
  return {{"amount", amount}, {"currency", currency}};
}

boost::json::object cart_json(const protocol::cart_view& v, const cart_pricing& pricing) {
  boost::json::array items;
  std::int64_t subtotal = 0;
  for (const auto& l : v.items) {
    const std::int64_t line_total = l.unit_price * l.quantity;
    subtotal += line_total;
    items.push_back(boost::json::object{{"product_id", l.product_id},
                                        {"sku", l.sku},
                                        {"name", l.name},
                                        {"quantity", l.quantity},
                                        {"unit_price", money(l.unit_price, v.currency)},
                                        {"line_total", money(line_total, v.currency)}});
  }
  const std::int64_t tax = (subtotal * pricing.tax_rate_bp + 5000) / 10000;  // rounded half up
  const std::int64_t shipping =
      v.items.empty() || subtotal >= pricing.free_shipping_threshold ? 0 : pricing.shipping_flat;
  boost::json::object totals{{"subtotal", money(subtotal, v.currency)},
                             {"tax", money(tax, v.currency)},
                             {"shipping", money(shipping, v.currency)},
                             {"discount", money(0, v.currency)},
                             {"total", money(subtotal + tax + shipping, v.currency)}};
  boost::json::object o{{"id", v.id},
                        {"customer_id", v.owner_user_id.empty() ? boost::json::value(nullptr)
                                                                : boost::json::value(v.owner_user_id)},
                        {"items", std::move(items)},
                        {"totals", std::move(totals)},
                        {"currency", v.currency},
                        {"version", v.version}};
  if (!v.updated_at.empty()) {
    o["updated_at"] = v.updated_at;
  }
  return o;
}

response cart_response(unsigned status, const protocol::cart_view& v, const cart_pricing& pricing,
                       const std::string& cart_token = {}) {
  auto body = cart_json(v, pricing);
  if (!cart_token.empty()) {
    body["cart_token"] = cart_token;
  }
  auto r = response::json(status, body);
  r.with_header("ETag", etag_for_version(v.version));
  r.with_header("Cache-Control", "no-store");
  return r;
}

std::optional<std::int64_t> if_match(const request_context& ctx) {
  return if_match_version(ctx.header(bhttp::field::if_match));
}

// The cart id of the path; an id that cannot exist is simply not found (like a cart the caller may not see).
const std::string* cart_id_of(const request_context& ctx, const responder& respond) {
  const auto* id = ctx.param("id");
  if (!id || !is_uuid(*id)) {
    respond(not_found("no such cart"));
    return nullptr;
  }
  return id;
}

// The product a line is for, and how many units are available now (committed inventory); nullopt for
// an unknown or archived product.
struct product_for_line {
  protocol::cart_line line;
  std::int32_t available = 0;
};

void with_product(persistence::pg_pool& pool, const responder& respond, std::string product_id,
                  std::function<void(std::optional<product_for_line>)> then) {
  with_db(pool, respond, [product_id = std::move(product_id), then = std::move(then)](pqxx::connection& conn) {
    auto p = persistence::catalog_store::find_product(conn, product_id);
    if (!p || p->status != "active") {
      then(std::nullopt);
      return;
    }
    product_for_line out;
    out.line.product_id = p->id;
    out.line.sku = p->sku;
    out.line.name = p->name;
    out.line.unit_price = p->current_price;
    const auto available = std::max<std::int64_t>(0, p->on_hand - p->reserved);
    out.available = static_cast<std::int32_t>(std::min<std::int64_t>(available, 1'000'000'000));
    then(std::move(out));
  });
}

template <class Command>
void ask_cart(const entity_bridge& bridge, const std::string& id, Command cmd, responder respond,
              cart_pricing pricing, unsigned status = 200, std::string token = {}) {
  bridge.ask<protocol::cart_view>(kind, id, caf::make_message(std::move(cmd)),
                                  [respond, pricing, status, token](caf::expected<protocol::cart_view> r) {
                                    if (r) {
                                      respond(cart_response(status, *r, pricing, token));
                                    } else {
                                      respond(response_for(r.error()));
                                    }
                                  });
}

}  // namespace

void add_cart_routes(router& routes, persistence::pg_pool& pool, const entity_bridge& bridge, cart_pricing pricing) {
  // POST /carts: the body is optional ({"currency": "USD"}); JSON when there is one.
  routes.add(bhttp::verb::post, "/api/v1/carts", [&bridge, pricing](auto ctx, responder respond) {
    std::string currency = "USD";
    const auto& body = ctx->raw.body();
    if (!body.empty()) {
      boost::system::error_code ec;
      auto v = boost::json::parse(body, ec);
      if (ec || !v.is_object()) {
        respond(invalid_request("the body must be a JSON object", {{"/", "must be a JSON object"}}));
        return;
      }
      std::vector<field_error> errors;
      for (const auto& [k, val] : v.as_object()) {
        if (k != "currency") {
          errors.push_back({"/" + std::string(k), "is not a field of this request"});
        } else if (!val.is_string() || val.as_string().size() != 3 ||
                   !std::all_of(val.as_string().begin(), val.as_string().end(),
                                [](char c) { return c >= 'A' && c <= 'Z'; })) {
          errors.push_back({"/currency", "must be a three-letter ISO 4217 code"});
        } else {
          currency = std::string(val.as_string());
        }
      }
      if (!errors.empty()) {
        respond(invalid_request("the cart cannot be created as asked", std::move(errors)));
        return;
      }
    }
    const std::string id = new_uuid();
    protocol::cart_open cmd;
    cmd.meta = command_meta_for(*ctx, "open", id);
    cmd.currency = currency;
    std::string token;
    if (ctx->caller) {
      cmd.owner_user_id = ctx->caller->user_id;
    } else {
      token = security::random_token(32);
      cmd.token_hash = security::sha256_hex(token);
    }
    bridge.ask<protocol::cart_view>(
        kind, id, caf::make_message(std::move(cmd)),
        [respond, pricing, token, id](caf::expected<protocol::cart_view> r) {
          if (!r) {
            respond(response_for(r.error()));
            return;
          }
          auto res = cart_response(201, *r, pricing, token);
          res.with_header("Location", "/api/v1/carts/" + id);
          respond(std::move(res));
        });
  });

  routes.add(bhttp::verb::get, "/api/v1/carts/{id}", [&bridge, pricing](auto ctx, responder respond) {
    const auto* id = cart_id_of(*ctx, respond);
    if (!id) {
      return;
    }
    protocol::cart_get cmd;
    cmd.meta = command_meta_for(*ctx, "get", *id);
    cmd.meta.command_id.clear();  // a read is not deduplicated
    const std::string if_none_match{ctx->header(bhttp::field::if_none_match)};
    bridge.ask<protocol::cart_view>(
        kind, *id, caf::make_message(std::move(cmd)),
        [respond, pricing, if_none_match](caf::expected<protocol::cart_view> r) {
          if (!r) {
            respond(response_for(r.error()));
            return;
          }
          if (!if_none_match.empty() && etag_matches(if_none_match, etag_for_version(r->version))) {
            auto res = response::empty(304);
            res.with_header("ETag", etag_for_version(r->version));
            respond(std::move(res));
            return;
          }
          respond(cart_response(200, *r, pricing));
        });
  });

  routes.add(
      bhttp::verb::post, "/api/v1/carts/{id}/items",
      [&pool, &bridge, pricing](auto ctx, responder respond) {
        const auto* id = cart_id_of(*ctx, respond);
        if (!id) {
          return;
        }
        body_reader body(*ctx);
        body.allow_only({"product_id", "quantity"});
        auto product_id = body.text("product_id", true, 36, 36);
        if (product_id && !is_uuid(*product_id)) {
          body.error("product_id", "must be a UUID");
        }
        auto quantity = body.integer("quantity", true, 1, 999);
        if (!body.ok()) {
          respond(body.to_problem());
          return;
        }
        const auto expected = if_match(*ctx);
        if (!expected) {
          respond(precondition_failed());
          return;
        }
        auto meta = command_meta_for(*ctx, "add", *id);
        meta.expected_version = *expected;
        with_product(pool, respond, *product_id,
                     [&bridge, pricing, respond, meta, cart_id = *id, qty = static_cast<std::int32_t>(*quantity)](
                         std::optional<product_for_line> p) {
                       if (!p) {
                         respond(not_found("no such product, or it is no longer sold"));
                         return;
                       }
                       protocol::cart_add_item cmd;
                       cmd.meta = meta;
                       cmd.line = p->line;
                       cmd.line.quantity = qty;
                       cmd.available = p->available;
                       ask_cart(bridge, cart_id, std::move(cmd), respond, pricing);
                     });
      },
      json_route());

  routes.add(
      bhttp::verb::patch, "/api/v1/carts/{id}/items/{product_id}",
      [&pool, &bridge, pricing](auto ctx, responder respond) {
        const auto* id = cart_id_of(*ctx, respond);
        if (!id) {
          return;
        }
        const auto* product_id = ctx->param("product_id");
        body_reader body(*ctx);
        body.allow_only({"quantity"});
        auto quantity = body.integer("quantity", true, 0, 999);
        if (!body.ok()) {
          respond(body.to_problem());
          return;
        }
        if (!is_uuid(*product_id)) {
          respond(not_found("the cart has no line for that product"));
          return;
        }
        const auto expected = if_match(*ctx);
        if (!expected) {
          respond(precondition_failed());
          return;
        }
        auto meta = command_meta_for(*ctx, "set", *id);
        meta.expected_version = *expected;
        protocol::cart_set_quantity cmd;
        cmd.meta = meta;
        cmd.product_id = *product_id;
        cmd.quantity = static_cast<std::int32_t>(*quantity);
        if (cmd.quantity == 0) {
          ask_cart(bridge, *id, std::move(cmd), respond, pricing);
          return;
        }
        with_product(pool, respond, *product_id,
                     [&bridge, pricing, respond, cmd, cart_id = *id](std::optional<product_for_line> p) mutable {
                       cmd.available = p ? p->available : 0;  // no longer sold: nothing more may be added
                       ask_cart(bridge, cart_id, std::move(cmd), respond, pricing);
                     });
      },
      json_route());

  routes.add(bhttp::verb::delete_, "/api/v1/carts/{id}/items/{product_id}",
             [&bridge, pricing](auto ctx, responder respond) {
               const auto* id = cart_id_of(*ctx, respond);
               if (!id) {
                 return;
               }
               const auto* product_id = ctx->param("product_id");
               if (!is_uuid(*product_id)) {
                 respond(not_found("the cart has no line for that product"));
                 return;
               }
               const auto expected = if_match(*ctx);
               if (!expected) {
                 respond(precondition_failed());
                 return;
               }
               protocol::cart_remove_item cmd;
               cmd.meta = command_meta_for(*ctx, "remove", *id);
               cmd.meta.expected_version = *expected;
               cmd.product_id = *product_id;
               ask_cart(bridge, *id, std::move(cmd), respond, pricing);
             });
}

}  // namespace mercato::http
