#include "http/routes/cart_routes.hpp"

#include <memory>
#include <optional>

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <caf/make_message.hpp>
#include <pqxx/pqxx>

#include "actors/protocol/cart_messages.hpp"
#include "actors/protocol/json_writer.hpp"
#include "actors/protocol/type_ids.hpp"
#include "http/body_reader.hpp"
#include "http/codec.hpp"
#include "http/routes/db_call.hpp"
#include "persistence/catalog_store.hpp"
#include "security/jwt.hpp"

namespace mercato::http {
namespace {
using protocol::json_writer;

constexpr const char* kind = "cart";

void money(json_writer& w, std::string_view name, std::int64_t amount, const std::string& currency) {
  w.key(name).begin_object().member("amount", amount).member("currency", currency).end_object();
}

// Writes the cart's members, leaving the object open for what the caller adds (cart_token,
// adjustments). Straight into the answer's string: this runs for every add (issue 14's profile had the
// Boost.JSON tree it replaced, one object per money amount, at 7.6 % of the node at the maximum).
void write_cart(json_writer& w, const protocol::cart_view& v, const actors::pricing_rules& pricing) {
  w.begin_object().member("id", v.id).key("customer_id");
  if (v.owner_user_id.empty()) {
    w.null();
  } else {
    w.value(v.owner_user_id);
  }
  w.member("status", v.status).key("items").begin_array();
  for (const auto& l : v.items) {
    w.begin_object()
        .member("product_id", l.product_id)
        .member("sku", l.sku)
        .member("name", l.name)
        .member("quantity", l.quantity);
    money(w, "unit_price", l.unit_price, v.currency);
    money(w, "line_total", l.unit_price * l.quantity, v.currency);
    if (l.previous_unit_price != 0) {
      // The catalog changed the price since the shopper last changed this line: the cart now charges
      // the new price, and says so (never a silent charge at a price the shopper was not shown).
      w.key("price_changed").begin_object();
      money(w, "old_unit_price", l.previous_unit_price, v.currency);
      money(w, "new_unit_price", l.unit_price, v.currency);
      w.end_object();
    }
    w.end_object();
  }
  w.end_array();
  const auto t = actors::price_cart(v.items, pricing);
  w.key("totals").begin_object();
  money(w, "subtotal", t.subtotal, v.currency);
  money(w, "tax", t.tax, v.currency);
  money(w, "shipping", t.shipping, v.currency);
  money(w, "discount", t.discount, v.currency);
  money(w, "total", t.total, v.currency);
  w.end_object();
  w.member("currency", v.currency).member("version", v.version);
  if (!v.updated_at.empty()) {
    w.member("updated_at", v.updated_at);
  }
  if (!v.merged_into.empty()) {
    w.member("merged_into", v.merged_into);
  }
}

using pricing_ref = std::shared_ptr<const actors::pricing_rules>;

response cart_answer(unsigned status, const protocol::cart_view& v, std::string body) {
  auto r = response::json_text(status, std::move(body));
  r.with_header("ETag", etag_for_version(v.version));
  r.with_header("Cache-Control", "no-store");
  return r;
}

response cart_response(unsigned status, const protocol::cart_view& v, const pricing_ref& pricing,
                       const std::string& cart_token = {}) {
  std::string body;
  body.reserve(512 + 384 * v.items.size());
  json_writer w(body);
  write_cart(w, v, *pricing);
  if (!cart_token.empty()) {
    w.member("cart_token", cart_token);
  }
  w.end_object();
  return cart_answer(status, v, std::move(body));
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

// The product a line is for and how many units are available now (committed inventory), from the
// node's product_lines cache when it has a fresh entry (on the calling io thread, no I/O), else read on
// the pool and kept; nullopt for an unknown or archived product.
using product_for_line = product_line_info;

void with_product(persistence::pg_pool& pool, product_lines& lines, const responder& respond,
                  const std::string& product_id, std::function<void(std::optional<product_for_line>)> then) {
  if (auto known = lines.find(product_id)) {
    then(std::move(*known));
    return;
  }
  const auto generation = lines.generation();
  with_db(pool, respond, [&lines, generation, product_id, then = std::move(then)](pqxx::connection& conn) {
    auto p = persistence::catalog_store::find_product(conn, product_id);
    std::optional<product_for_line> out;
    if (p && p->status == "active") {
      out.emplace();
      out->line.product_id = p->id;
      out->line.sku = p->sku;
      out->line.name = p->name;
      out->line.unit_price = p->current_price;
      const auto available = std::max<std::int64_t>(0, p->on_hand - p->reserved);
      out->available = static_cast<std::int32_t>(std::min<std::int64_t>(available, 1'000'000'000));
    }
    lines.store(product_id, out, generation);
    then(std::move(out));
  });
}

template <class Command>
void ask_cart(const entity_bridge& bridge, const std::string& id, Command cmd, responder respond,
              pricing_ref pricing, unsigned status = 200, std::string token = {}) {
  bridge.ask<protocol::cart_view>(kind, id, caf::make_message(std::move(cmd)),
                                  [respond, pricing, status, token](caf::expected<protocol::cart_view> r) {
                                    if (r) {
                                      respond(cart_response(status, *r, pricing, token));
                                    } else {
                                      respond(response_for(r.error()));
                                    }
                                  });
}


// Brings the view's line prices to the catalog's: when one differs, the cart takes the catalog price
// (cart_reprice, committed) and the line says so. Archived products keep their line and price (they
// cannot be bought; checkout says so). On any failure the view is shown as read.
void with_current_prices(persistence::pg_pool& pool, const entity_bridge& bridge, const responder& respond,
                         protocol::command_meta meta, protocol::cart_view view,
                         std::function<void(protocol::cart_view)> done) {
  if (view.status != "open" || view.items.empty()) {
    done(std::move(view));
    return;
  }
  with_db(pool, respond,
          [&bridge, meta = std::move(meta), view = std::move(view), done = std::move(done)](pqxx::connection& conn) {
            std::vector<std::string> ids;
            for (const auto& l : view.items) {
              ids.push_back(l.product_id);
            }
            protocol::cart_reprice cmd;
            cmd.meta = meta;
            for (const auto& p : persistence::catalog_store::find_products(conn, ids)) {
              for (const auto& l : view.items) {
                if (l.product_id == p.id && p.status == "active" && l.unit_price != p.current_price) {
                  cmd.prices.push_back({p.id, p.sku, p.name, 0, p.current_price, 0});
                }
              }
            }
            if (cmd.prices.empty()) {
              done(view);
              return;
            }
            const auto cart_id = view.id;
            bridge.ask<protocol::cart_view>(kind, cart_id, caf::make_message(std::move(cmd)),
                                            [view, done](caf::expected<protocol::cart_view> r) {
                                              done(r ? std::move(*r) : view);
                                            });
          });
}

// One claim in progress: what its steps share.
struct claim_job {
  persistence::pg_pool& pool;
  const entity_bridge& bridge;
  responder respond;
  pricing_ref pricing;
  std::string guest_id;
  std::string user_id;
  protocol::command_meta guest_meta;  // carries the guest cart token's hash
  protocol::command_meta merge_meta;
  protocol::command_meta close_meta;
};

// The answer to a claim: the user's cart now, and how the merge changed the guest cart's lines.
response claimed(const claim_job& job, const protocol::cart_view& v) {
  std::string body;
  json_writer w(body);
  write_cart(w, v, *job.pricing);
  w.key("adjustments").begin_array();
  for (const auto& a : v.adjustments) {
    w.begin_object()
        .member("product_id", a.product_id)
        .member("requested", a.requested)
        .member("quantity", a.quantity)
        .member("reason", a.reason)
        .end_object();
  }
  w.end_array().end_object();
  return cart_answer(200, v, std::move(body));
}

// Step 3: the guest cart is closed (merged). Its failure leaves it `merging`: a retried claim closes it.
void close_guest(const claim_job& job, protocol::cart_view merged) {
  protocol::cart_close_merged cmd;
  cmd.meta = job.close_meta;
  job.bridge.ask<protocol::cart_view>(kind, job.guest_id, caf::make_message(std::move(cmd)),
                                      [job, merged = std::move(merged)](caf::expected<protocol::cart_view> r) {
                                        if (!r) {
                                          job.respond(response_for(r.error()));
                                          return;
                                        }
                                        job.respond(claimed(job, merged));
                                      });
}

// Step 2: the guest cart's lines (as handed over) go into the user's cart at the catalog's prices.
void merge_lines(const claim_job& job, protocol::cart_view guest) {
  with_db(job.pool, job.respond, [job, guest = std::move(guest)](pqxx::connection& conn) {
    std::vector<std::string> ids;
    for (const auto& l : guest.items) {
      ids.push_back(l.product_id);
    }
    const auto products = persistence::catalog_store::find_products(conn, ids);
    protocol::cart_merge cmd;
    cmd.meta = job.merge_meta;
    cmd.source_cart_id = guest.id;
    for (const auto& l : guest.items) {
      auto line = l;
      std::int32_t available = -1;  // unknown or archived: no longer sold
      for (const auto& p : products) {
        if (p.id == l.product_id && p.status == "active") {
          line.unit_price = p.current_price;
          line.name = p.name;
          line.sku = p.sku;
          available = static_cast<std::int32_t>(
              std::min<std::int64_t>(std::max<std::int64_t>(0, p.on_hand - p.reserved), 1'000'000'000));
        }
      }
      line.previous_unit_price = 0;
      cmd.lines.push_back(std::move(line));
      cmd.available.push_back(available);
    }
    const auto target = guest.merged_into;
    job.bridge.ask<protocol::cart_view>(kind, target, caf::make_message(std::move(cmd)),
                                        [job](caf::expected<protocol::cart_view> r) {
                                          if (!r) {
                                            job.respond(response_for(r.error()));
                                            return;
                                          }
                                          close_guest(job, std::move(*r));
                                        });
  });
}

// Step 1, from the guest cart as read (its token admitted the caller).
void start_claim(const claim_job& job, protocol::cart_view guest) {
  if (guest.owner_user_id == job.user_id) {
    job.respond(claimed(job, guest));  // claimed by this user already
    return;
  }
  if (guest.status == "merging") {
    merge_lines(job, std::move(guest));  // a claim that stopped half-way: finish it
    return;
  }
  if (guest.status != "open" || !guest.owner_user_id.empty()) {
    job.respond(response::from(
        problem{409, "conflict", "Conflict", "the cart is " + guest.status + " and can no longer be claimed", {}}));
    return;
  }
  with_db(job.pool, job.respond, [job](pqxx::connection& conn) {
    std::optional<std::string> target;
    {
      pqxx::nontransaction tx{conn};
      const auto rows = tx.exec_params(
          "SELECT id FROM carts WHERE owner_user_id = $1::uuid AND status = 'open' AND id <> $2 "
          "ORDER BY updated_at DESC LIMIT 1",
          job.user_id, job.guest_id);
      if (!rows.empty()) {
        target = rows[0][0].as<std::string>();
      }
    }
    if (!target) {
      protocol::cart_claim cmd;
      cmd.meta = job.guest_meta;
      cmd.owner_user_id = job.user_id;
      job.bridge.ask<protocol::cart_view>(kind, job.guest_id, caf::make_message(std::move(cmd)),
                                          [job](caf::expected<protocol::cart_view> r) {
                                            if (!r) {
                                              job.respond(response_for(r.error()));
                                              return;
                                            }
                                            job.respond(claimed(job, *r));
                                          });
      return;
    }
    protocol::cart_hand_over cmd;
    cmd.meta = job.guest_meta;
    cmd.into_cart_id = *target;
    job.bridge.ask<protocol::cart_view>(kind, job.guest_id, caf::make_message(std::move(cmd)),
                                        [job](caf::expected<protocol::cart_view> r) {
                                          if (!r) {
                                            job.respond(response_for(r.error()));
                                            return;
                                          }
                                          merge_lines(job, std::move(*r));
                                        });
  });
}

}  // namespace

void add_cart_routes(router& routes, persistence::pg_pool& pool, const entity_bridge& bridge,
                     actors::pricing_rules rules, product_lines& lines) {
  // Shared by every request's callbacks (the per-country map is not copied per request).
  const pricing_ref pricing = std::make_shared<const actors::pricing_rules>(std::move(rules));
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

  routes.add(bhttp::verb::get, "/api/v1/carts/{id}", [&pool, &bridge, pricing](auto ctx, responder respond) {
    const auto* id = cart_id_of(*ctx, respond);
    if (!id) {
      return;
    }
    protocol::cart_get cmd;
    cmd.meta = command_meta_for(*ctx, "get", *id);
    cmd.meta.command_id.clear();  // a read is not deduplicated
    auto reprice_meta = command_meta_for(*ctx, "reprice", *id);
    const std::string if_none_match{ctx->header(bhttp::field::if_none_match)};
    bridge.ask<protocol::cart_view>(
        kind, *id, caf::make_message(std::move(cmd)),
        [&pool, &bridge, respond, pricing, if_none_match, reprice_meta](caf::expected<protocol::cart_view> r) {
          if (!r) {
            respond(response_for(r.error()));
            return;
          }
          with_current_prices(pool, bridge, respond, reprice_meta, std::move(*r),
                              [respond, pricing, if_none_match](protocol::cart_view v) {
                                if (!if_none_match.empty() &&
                                    etag_matches(if_none_match, etag_for_version(v.version))) {
                                  auto res = response::empty(304);
                                  res.with_header("ETag", etag_for_version(v.version));
                                  respond(std::move(res));
                                  return;
                                }
                                respond(cart_response(200, v, pricing));
                              });
        });
  });

  // Claim (API.md): a signed-in user takes over a guest cart by its token. Without an open cart of
  // their own the guest cart becomes theirs; otherwise its lines merge into their open cart
  // (quantities summed, capped at what is available, the answer's `adjustments` saying where) and the
  // guest cart is closed. Steps, each idempotent, so a retry after a failure anywhere finishes the
  // claim: hand over (guest: open -> merging), merge (user's cart, once per source), close (guest: merged).
  routes.add(
      bhttp::verb::post, "/api/v1/carts/{id}/claim",
      [&pool, &bridge, pricing](auto ctx, responder respond) {
        const auto* id = cart_id_of(*ctx, respond);
        if (!id) {
          return;
        }
        if (ctx->header("X-Cart-Token").empty()) {
          respond(not_found("no such cart (a guest cart is claimed with its X-Cart-Token)"));
          return;
        }
        claim_job job{pool, bridge, respond, pricing, *id, ctx->caller->user_id,
                      command_meta_for(*ctx, "claim", *id), command_meta_for(*ctx, "claim-merge", *id),
                      command_meta_for(*ctx, "claim-close", *id)};
        protocol::cart_get get;
        get.meta = job.guest_meta;
        get.meta.command_id.clear();
        bridge.ask<protocol::cart_view>(kind, *id, caf::make_message(std::move(get)),
                                        [job](caf::expected<protocol::cart_view> r) {
                                          if (!r) {
                                            job.respond(response_for(r.error()));
                                            return;
                                          }
                                          start_claim(job, std::move(*r));
                                        });
      },
      signed_in_route());

  routes.add(
      bhttp::verb::post, "/api/v1/carts/{id}/items",
      [&pool, &bridge, &lines, pricing](auto ctx, responder respond) {
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
        with_product(pool, lines, respond, *product_id,
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
      [&pool, &bridge, &lines, pricing](auto ctx, responder respond) {
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
        with_product(pool, lines, respond, *product_id,
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
