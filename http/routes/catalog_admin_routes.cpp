#include "http/routes/catalog_admin_routes.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <pqxx/connection>

#include "http/body_reader.hpp"
#include "http/catalog_cache.hpp"
#include "http/codec.hpp"
#include "http/routes/db_call.hpp"
#include "http/worker_pool.hpp"
#include "persistence/catalog_store.hpp"
#include "telemetry/logging.hpp"

namespace mercato::http {
namespace {

problem conflict(std::string code, std::string detail) {
  return problem{409, std::move(code), "Conflict", std::move(detail), {}};
}

boost::json::object vendor_json(const persistence::vendor_view& v) {
  return {{"id", v.id},           {"name", v.name},         {"status", v.status},
          {"version", v.version}, {"created_at", v.created_at}, {"updated_at", v.updated_at}};
}

}  // namespace

void add_catalog_admin_routes(router& routes, persistence::pg_pool& pool, worker_pool& workers,
                              std::shared_ptr<catalog_cache> cache) {
  using bhttp::verb;

  routes.add(
      verb::post, "/api/v1/categories",
      [&pool, &workers, cache](std::shared_ptr<request_context> ctx, responder respond) {
        body_reader body(*ctx);
        body.allow_only({"name", "parent_id"});
        auto name = body.text("name", true, 1, 200);
        auto parent = body.text("parent_id", false, 36, 36);
        if (parent && !is_uuid(*parent)) {
          body.error("parent_id", "must be a UUID");
        }
        if (name && name->find_first_not_of(' ') == std::string::npos) {
          body.error("name", "must not be blank");
        }
        if (!body.ok()) {
          respond(body.to_problem());
          return;
        }
        with_db(pool, respond, [&workers, cache, respond, name = *name, parent](pqxx::connection& conn) {
          auto [outcome, created] = persistence::catalog_store::create_category(conn, name, parent);
          if (outcome == persistence::create_outcome::unknown_parent) {
            respond(invalid_request("unknown parent category", {{"/parent_id", "no category has this id"}}));
            return;
          }
          if (outcome == persistence::create_outcome::duplicate) {
            respond(conflict("category_exists", "a category with this name already exists under this parent"));
            return;
          }
          boost::json::object out{{"id", created->id},
                                  {"name", created->name},
                                  {"parent_id", created->parent_id ? boost::json::value(*created->parent_id)
                                                                   : boost::json::value(nullptr)},
                                  {"children", boost::json::array{}}};
          auto answer = std::make_shared<response>(
              response::json(201, out).with_header("Location", "/api/v1/categories"));
          telemetry::log_info("category created", {{"category_id", out.at("id").as_string()}});
          // Invalidation talks to Redis (blocking): on the workers, then answer, so this client's next
          // GET /categories already sees the new tree.
          if (!cache || !workers.submit([cache, respond, answer] {
                cache->invalidate_categories();
                respond(std::move(*answer));
              })) {
            if (cache) {
              cache->clear_local();
            }
            respond(std::move(*answer));
          }
        });
      },
      role_route({"admin"}, true));

  routes.add(
      verb::post, "/api/v1/vendors",
      [&pool](std::shared_ptr<request_context> ctx, responder respond) {
        body_reader body(*ctx);
        body.allow_only({"name"});
        auto name = body.text("name", true, 1, 200);
        if (name && name->find_first_not_of(' ') == std::string::npos) {
          body.error("name", "must not be blank");
        }
        if (!body.ok()) {
          respond(body.to_problem());
          return;
        }
        run_db(pool, respond, [name = *name](pqxx::connection& conn) {
          auto created = persistence::catalog_store::create_vendor(conn, name);
          if (!created) {
            return response::from(conflict("vendor_exists", "a vendor with this name already exists"));
          }
          return response::json(201, vendor_json(*created))
              .with_header("Location", "/api/v1/vendors/" + created->id)
              .with_header("ETag", etag_for_version(created->version));
        });
      },
      role_route({"admin"}, true));

  routes.add(verb::get, "/api/v1/vendors/{id}", [&pool](std::shared_ptr<request_context> ctx, responder respond) {
    const auto* id = ctx->param("id");
    if (id == nullptr || !is_uuid(*id)) {
      respond(invalid_request("the vendor id is not a UUID", {{"/path/id", "must be a UUID"}}));
      return;
    }
    run_db(pool, respond, [id = *id](pqxx::connection& conn) {
      auto v = persistence::catalog_store::find_vendor(conn, id);
      if (!v) {
        return response::from(not_found("no such vendor"));
      }
      return response::json(200, vendor_json(*v)).with_header("ETag", etag_for_version(v->version));
    });
  });
}

}  // namespace mercato::http
