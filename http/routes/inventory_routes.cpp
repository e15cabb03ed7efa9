#include "http/routes/inventory_routes.hpp"

#include <boost/json/object.hpp>
#include <caf/make_message.hpp>

#include "actors/protocol/errors.hpp"
#include "actors/protocol/inventory_messages.hpp"
#include "actors/protocol/type_ids.hpp"
#include "http/body_reader.hpp"
#include "http/codec.hpp"
#include "http/routes/db_call.hpp"
#include "persistence/catalog_store.hpp"

namespace mercato::http {
namespace {

constexpr const char* kind = "inventory";

const char* status_of(const protocol::inventory_view& v) {
  if (v.available <= 0) {
    return "out_of_stock";
  }
  return v.available <= v.low_stock_threshold ? "low_stock" : "in_stock";
}

response inventory_response(const protocol::inventory_view& v) {
  auto r = response::json(200, boost::json::object{{"product_id", v.product_id},
                                                   {"on_hand", v.on_hand},
                                                   {"reserved", v.reserved},
                                                   {"available", v.available},
                                                   {"low_stock_threshold", v.low_stock_threshold},
                                                   {"status", status_of(v)},
                                                   {"version", v.version}});
  r.with_header("ETag", etag_for_version(v.version));
  return r;
}

std::optional<std::int64_t> if_match(const request_context& ctx) {
  return if_match_version(ctx.header(bhttp::field::if_match));
}

}  // namespace

void add_inventory_routes(router& routes, persistence::pg_pool& pool, const entity_bridge& bridge,
                          product_lines& lines) {
  routes.add(bhttp::verb::get, "/api/v1/inventory/{product_id}", [&bridge](auto ctx, responder respond) {
    const auto* id = ctx->param("product_id");
    if (!is_uuid(*id)) {
      respond(not_found("no such product"));
      return;
    }
    protocol::inventory_get cmd;
    cmd.meta = command_meta_for(*ctx, "get", *id);
    cmd.meta.command_id.clear();  // a read is not deduplicated
    const std::string if_none_match{ctx->header(bhttp::field::if_none_match)};
    bridge.ask<protocol::inventory_view>(
        kind, *id, caf::make_message(std::move(cmd)),
        [respond, if_none_match](caf::expected<protocol::inventory_view> r) {
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
          respond(inventory_response(*r));
        });
  });

  routes.add(
      bhttp::verb::post, "/api/v1/inventory/{product_id}/adjustments",
      [&pool, &bridge, &lines](auto ctx, responder respond) {
        const auto* id = ctx->param("product_id");
        body_reader body(*ctx);
        body.allow_only({"delta", "reason"});
        auto delta = body.integer("delta", true, -1'000'000, 1'000'000);
        if (delta && *delta == 0) {
          body.error("delta", "must not be 0");
        }
        auto reason = body.text("reason", true, 1, 500);
        if (!body.ok()) {
          respond(body.to_problem());
          return;
        }
        if (!is_uuid(*id)) {
          respond(not_found("no such product"));
          return;
        }
        const auto expected = if_match(*ctx);
        if (!expected) {
          respond(precondition_failed());
          return;
        }
        protocol::inventory_adjust cmd;
        cmd.meta = command_meta_for(*ctx, "adjust", *id);
        cmd.meta.expected_version = *expected;
        cmd.delta = static_cast<std::int32_t>(*delta);
        cmd.reason = *reason;
        // Only the product's own vendor (or an admin) adjusts its stock: decided from the catalog.
        with_db(pool, respond,
                [&bridge, &lines, respond, cmd = std::move(cmd), product_id = *id,
                 caller = *ctx->caller](pqxx::connection& conn) mutable {
                  auto p = persistence::catalog_store::find_product(conn, product_id);
                  if (!p || p->status != "active") {
                    respond(not_found("no such product"));
                    return;
                  }
                  if (!caller.is_admin() && (caller.vendor_id.empty() || p->vendor_id != caller.vendor_id)) {
                    respond(problem{403, "forbidden", "Forbidden", "only the product's vendor may adjust its stock", {}});
                    return;
                  }
                  bridge.ask<protocol::inventory_view>(
                      kind, product_id, caf::make_message(std::move(cmd)),
                      [&lines, respond, product_id](caf::expected<protocol::inventory_view> r) {
                        if (r) {
                          lines.invalidate(product_id);  // this node's next add-to-cart sees the new stock
                          respond(inventory_response(*r));
                          return;
                        }
                        respond(response_for(r.error()));
                      });
                });
      },
      role_route({"vendor", "admin"}, true));
}

}  // namespace mercato::http
