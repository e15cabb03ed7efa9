#include "http/routes/catalog_admin_routes.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <pqxx/pqxx>

#include "http/body_reader.hpp"
#include "http/catalog_cache.hpp"
#include "http/codec.hpp"
#include "http/routes/db_call.hpp"
#include "http/worker_pool.hpp"
#include "telemetry/logging.hpp"

namespace mercato::http {
namespace {

#define MERCATO_TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

problem conflict(std::string code, std::string detail) {
  return problem{409, std::move(code), "Conflict", std::move(detail), {}};
}

boost::json::object vendor_json(const pqxx::row& r) {
  return {{"id", r[0].as<std::string>()},
          {"name", r[1].as<std::string>()},
          {"status", r[2].as<std::string>()},
          {"version", r[3].as<std::int64_t>()},
          {"created_at", r[4].as<std::string>()},
          {"updated_at", r[5].as<std::string>()}};
}

constexpr const char* vendor_columns =
    "id::text, name, status, version, " MERCATO_TS("created_at") ", " MERCATO_TS("updated_at");

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
          pqxx::work tx{conn};
          if (parent && tx.exec_params("SELECT 1 FROM categories WHERE id = $1::uuid", *parent).empty()) {
            respond(invalid_request("unknown parent category", {{"/parent_id", "no category has this id"}}));
            return;
          }
          const auto rows = tx.exec_params(
              "INSERT INTO categories (name, parent_id) VALUES ($1, $2::uuid)"
              " ON CONFLICT DO NOTHING RETURNING id::text, name, parent_id::text",
              name, parent);
          if (rows.empty()) {
            respond(conflict("category_exists", "a category with this name already exists under this parent"));
            return;
          }
          tx.commit();
          boost::json::object out{{"id", rows[0][0].as<std::string>()},
                                   {"name", rows[0][1].as<std::string>()},
                                   {"parent_id", rows[0][2].is_null() ? boost::json::value(nullptr)
                                                                      : boost::json::value(rows[0][2].as<std::string>())},
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
          pqxx::work tx{conn};
          const auto rows = tx.exec_params(std::string("INSERT INTO vendors (name) VALUES ($1) ON CONFLICT DO NOTHING "
                                                       "RETURNING ") +
                                               vendor_columns,
                                           name);
          if (rows.empty()) {
            return response::from(conflict("vendor_exists", "a vendor with this name already exists"));
          }
          tx.commit();
          auto v = vendor_json(rows[0]);
          return response::json(201, v)
              .with_header("Location", "/api/v1/vendors/" + std::string(v.at("id").as_string()))
              .with_header("ETag", etag_for_version(v.at("version").as_int64()));
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
      pqxx::nontransaction tx{conn};
      const auto rows =
          tx.exec_params(std::string("SELECT ") + vendor_columns + " FROM vendors WHERE id = $1::uuid", id);
      if (rows.empty()) {
        return response::from(not_found("no such vendor"));
      }
      auto v = vendor_json(rows[0]);
      return response::json(200, v).with_header("ETag", etag_for_version(v.at("version").as_int64()));
    });
  });
}

}  // namespace mercato::http
