#include "http/routes/product_routes.hpp"

#include <algorithm>
#include <cstdio>
#include <set>
#include <stdexcept>

#include <boost/json/object.hpp>
#include <pqxx/connection>
#include <simdjson.h>

#include "http/body_reader.hpp"
#include "http/catalog_cache.hpp"
#include "http/codec.hpp"
#include "http/routes/catalog_routes.hpp"
#include "http/routes/db_call.hpp"
#include "http/worker_pool.hpp"
#include "persistence/catalog_store.hpp"
#include "telemetry/logging.hpp"

namespace mercato::http {
namespace {

using persistence::product_fields;
using persistence::product_write_outcome;

constexpr std::int64_t max_minor_units = 9'999'999'999;  // DECIMAL(10,2)
constexpr std::int64_t max_stock = 1'000'000'000;        // INTEGER columns of the inventory

// Reads the product fields of a POST or PATCH body. body_reader covers the plain strings; the rest
// (money, integers, arrays, numbers, and null as "clear this field") is read here, and every problem
// lands in the same body_reader so one 400 lists them all.
class product_body {
 public:
  product_body(const request_context& ctx, body_reader& body) : body_(body) {
    if (ctx.has_json_body()) {
      is_object_ = ctx.json().get_object().get(object_) == simdjson::SUCCESS;
    }
  }

  // Present in the body (null included).
  bool present(std::string_view name) const {
    simdjson::dom::element e;
    return is_object_ && object_.at_key(name).get(e) == simdjson::SUCCESS;
  }
  bool is_null(std::string_view name) const {
    simdjson::dom::element e;
    return is_object_ && object_.at_key(name).get(e) == simdjson::SUCCESS && e.is_null();
  }
  std::optional<simdjson::dom::element> get(std::string_view name) const {
    simdjson::dom::element e;
    if (!is_object_ || object_.at_key(name).get(e) != simdjson::SUCCESS || e.is_null()) {
      return std::nullopt;
    }
    return e;
  }

  std::optional<std::int64_t> integer(std::string_view name, bool required, std::int64_t min, std::int64_t max) {
    auto e = get(name);
    if (!e) {
      if (is_null(name)) {
        body_.error(name, "must be an integer, not null");
      } else if (required && is_object_) {
        body_.error(name, "is required");
      }
      return std::nullopt;
    }
    std::int64_t v = 0;
    if (e->get_int64().get(v) != simdjson::SUCCESS || v < min || v > max) {
      body_.error(name, "must be an integer from " + std::to_string(min) + " to " + std::to_string(max));
      return std::nullopt;
    }
    return v;
  }

  // {"amount": <integer minor units>, "currency": "USD"}, as GET renders prices.
  std::optional<std::int64_t> money(std::string_view name, bool required) {
    auto e = get(name);
    const std::string at = "/" + std::string(name);
    if (!e) {
      if (is_null(name)) {
        body_.error(name, "must be {\"amount\": <integer minor units>, \"currency\": \"USD\"}");
      } else if (required && is_object_) {
        body_.error(name, "is required");
      }
      return std::nullopt;
    }
    simdjson::dom::object o;
    if (e->get_object().get(o) != simdjson::SUCCESS) {
      body_.error(name, "must be {\"amount\": <integer minor units>, \"currency\": \"USD\"}");
      return std::nullopt;
    }
    bool ok = true;
    for (auto field : o) {
      if (field.key != "amount" && field.key != "currency") {
        body_.error_at(at + "/" + std::string(field.key), "is not a field of a price");
        ok = false;
      }
    }
    std::int64_t amount = 0;
    simdjson::dom::element a;
    if (o.at_key("amount").get(a) != simdjson::SUCCESS || a.get_int64().get(amount) != simdjson::SUCCESS ||
        amount < 1 || amount > max_minor_units) {
      body_.error_at(at + "/amount", "must be an integer number of cents from 1 to " + std::to_string(max_minor_units));
      ok = false;
    }
    simdjson::dom::element c;
    std::string_view currency;
    if (o.at_key("currency").get(c) != simdjson::SUCCESS || c.get_string().get(currency) != simdjson::SUCCESS ||
        currency != "USD") {
      body_.error_at(at + "/currency", "must be \"USD\"");
      ok = false;
    }
    return ok ? std::optional<std::int64_t>(amount) : std::nullopt;
  }

  // A string (null clears it): newlines and tabs are fine, other control characters are not.
  persistence::nullable_change<std::string> long_text(std::string_view name, std::size_t max_chars) {
    if (!present(name)) return std::nullopt;
    auto e = get(name);
    if (!e) return std::optional<std::string>{};
    std::string_view v;
    if (e->get_string().get(v) != simdjson::SUCCESS) {
      body_.error(name, "must be a string or null");
      return std::nullopt;
    }
    if (utf8_length(v) > max_chars) {
      body_.error(name, "must be at most " + std::to_string(max_chars) + " characters long");
      return std::nullopt;
    }
    if (std::any_of(v.begin(), v.end(), [](char ch) {
          const auto u = static_cast<unsigned char>(ch);
          return (u < 0x20 && ch != '\n' && ch != '\r' && ch != '\t') || u == 0x7f;
        })) {
      body_.error(name, "must not contain control characters other than newlines and tabs");
      return std::nullopt;
    }
    return std::optional<std::string>(std::string(v));
  }

  persistence::nullable_change<std::string> uuid_or_null(std::string_view name) {
    if (!present(name)) return std::nullopt;
    auto e = get(name);
    if (!e) return std::optional<std::string>{};
    std::string_view v;
    if (e->get_string().get(v) != simdjson::SUCCESS || !is_uuid(v)) {
      body_.error(name, "must be a UUID or null");
      return std::nullopt;
    }
    return std::optional<std::string>(std::string(v));
  }

  // A JSON object (null clears it), stored minified.
  persistence::nullable_change<std::string> object_or_null(std::string_view name, std::size_t max_bytes) {
    if (!present(name)) return std::nullopt;
    auto e = get(name);
    if (!e) return std::optional<std::string>{};
    if (!e->is_object()) {
      body_.error(name, "must be a JSON object or null");
      return std::nullopt;
    }
    auto text = simdjson::minify(*e);
    if (text.size() > max_bytes) {
      body_.error(name, "must be at most " + std::to_string(max_bytes) + " bytes of JSON");
      return std::nullopt;
    }
    return std::optional<std::string>(std::move(text));
  }

  // An array of image URLs (null clears it).
  persistence::nullable_change<std::string> images(std::string_view name) {
    if (!present(name)) return std::nullopt;
    auto e = get(name);
    if (!e) return std::optional<std::string>{};
    simdjson::dom::array a;
    if (e->get_array().get(a) != simdjson::SUCCESS || a.size() > 20) {
      body_.error(name, "must be an array of at most 20 URL strings, or null");
      return std::nullopt;
    }
    bool ok = true;
    std::size_t i = 0;
    for (auto item : a) {
      std::string_view v;
      if (item.get_string().get(v) != simdjson::SUCCESS || v.empty() || utf8_length(v) > 2048 ||
          std::any_of(v.begin(), v.end(), [](char ch) { return static_cast<unsigned char>(ch) <= 0x20; })) {
        body_.error_at("/" + std::string(name) + "/" + std::to_string(i), "must be a URL of 1 to 2048 characters");
        ok = false;
      } else if (!is_web_link(v, false)) {
        body_.error_at("/" + std::string(name) + "/" + std::to_string(i),
                       "must be an http or https URL, or a path (RFC 3986: percent-encode other characters)");
        ok = false;
      }
      ++i;
    }
    return ok ? persistence::nullable_change<std::string>(simdjson::minify(*e)) : std::nullopt;
  }

  // Kilograms, 0 < weight < 100000, kept to grams (DECIMAL(8,3)); null clears it.
  persistence::nullable_change<std::string> weight(std::string_view name) {
    if (!present(name)) return std::nullopt;
    auto e = get(name);
    if (!e) return std::optional<std::string>{};
    double w = 0;
    if (e->get_double().get(w) != simdjson::SUCCESS || !(w > 0) || !(w < 99'999.9995)) {
      body_.error(name, "must be a number of kilograms greater than 0 and below 100000, or null");
      return std::nullopt;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f", w);
    return std::optional<std::string>(std::string(buf));
  }

 private:
  body_reader& body_;
  simdjson::dom::object object_;
  bool is_object_ = false;
};

bool valid_sku(const std::string& s) {
  return !s.empty() && std::isalnum(static_cast<unsigned char>(s[0])) &&
         std::all_of(s.begin(), s.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
         });
}

// The fields both POST and PATCH take.
void read_common(body_reader& body, product_body& pb, product_fields& f, bool create) {
  f.name = body.text("name", create, 1, 500);
  if (f.name && f.name->find_first_not_of(' ') == std::string::npos) {
    body.error("name", "must not be blank");
  }
  if (!create && pb.is_null("name")) {
    body.error("name", "cannot be null");
  }
  f.description = pb.long_text("description", 10'000);
  f.category_id = pb.uuid_or_null("category_id");
  f.base_price = pb.money("base_price", create);
  f.current_price = pb.money("current_price", false);
  f.weight = pb.weight("weight");
  f.dimensions = pb.object_or_null("dimensions", 4096);
  f.attributes = pb.object_or_null("attributes", 16384);
  f.images = pb.images("images");
}

persistence::change_meta meta_of(const request_context& ctx) {
  return {ctx.request_id, ctx.trace_id, ctx.caller ? ctx.caller->user_id : std::string{}};
}

// The vendor whose products the caller may change; nullopt for admins (any product).
std::optional<std::string> owner_of(const request_context& ctx) {
  if (ctx.caller->is_admin()) {
    return std::nullopt;
  }
  return ctx.caller->vendor_id;  // "" (a vendor account not linked to a vendor) matches no product
}

persistence::version_precondition if_match_of(const request_context& ctx) {
  const std::string header{ctx.header(bhttp::field::if_match)};
  if (header.empty()) {
    return {};
  }
  return [header](std::int64_t version) { return etag_matches(header, etag_for_version(version)); };
}

problem stale_product() {
  return precondition_failed("the product changed since the version in If-Match; read it again");
}

// The problem for an outcome other than done.
problem problem_for(product_write_outcome outcome) {
  switch (outcome) {
    case product_write_outcome::not_found: return not_found("no such product");
    case product_write_outcome::stale: return stale_product();
    case product_write_outcome::duplicate_sku:
      return problem{409, "sku_taken", "Conflict", "a product with this sku exists already", {}};
    case product_write_outcome::unknown_category:
      return invalid_request("unknown category", {{"/category_id", "no category has this id"}});
    case product_write_outcome::unknown_vendor:
      return invalid_request("unknown vendor", {{"/vendor_id", "no vendor has this id"}});
    case product_write_outcome::price_out_of_range:
      return invalid_request("prices must be positive", {{"/current_price/amount", "must be at least 1"}});
    case product_write_outcome::done: break;
  }
  return internal_error("unexpected product write outcome");
}

// Drops this product's cached page and the cached listings (Redis: on the workers), then answers, so
// the caller's next read already sees the change. The outbox subscriber does the same for every node
// from the committed event; this only makes the writer's own next read fresh without waiting for it.
void invalidate_then_answer(worker_pool& workers, const std::shared_ptr<catalog_cache>& cache,
                            const responder& respond, const std::string& id, response answer) {
  auto shared = std::make_shared<response>(std::move(answer));
  if (!cache || !workers.submit([cache, respond, shared, id] {
        cache->invalidate_product(id);
        respond(std::move(*shared));
      })) {
    if (cache) {
      cache->clear_local();
    }
    respond(std::move(*shared));
  }
}

void answer_write(worker_pool& workers, const std::shared_ptr<catalog_cache>& cache, const responder& respond,
                  persistence::product_write w, unsigned status, bool location) {
  if (w.outcome != product_write_outcome::done) {
    respond(problem_for(w.outcome));
    return;
  }
  const auto& p = *w.product;
  auto r = response::json(status, product_json(p)).with_header("ETag", etag_for_version(p.version));
  if (location) {
    r.with_header("Location", "/api/v1/products/" + p.id);
  }
  invalidate_then_answer(workers, cache, respond, p.id, std::move(r));
}

}  // namespace

void add_product_routes(router& routes, persistence::pg_pool& pool, worker_pool& workers,
                        std::shared_ptr<catalog_cache> cache) {
  using bhttp::verb;

  routes.add(
      verb::post, "/api/v1/products",
      [&pool, &workers, cache](std::shared_ptr<request_context> ctx, responder respond) {
        body_reader body(*ctx);
        body.allow_only({"sku", "name", "description", "category_id", "vendor_id", "base_price", "current_price",
                         "initial_stock", "low_stock_threshold", "attributes", "images", "weight", "dimensions"});
        product_body pb(*ctx, body);
        product_fields f;
        f.sku = body.text("sku", true, 1, 100);
        if (f.sku && !valid_sku(*f.sku)) {
          body.error("sku", "must be letters, digits, '-', '_' or '.', starting with a letter or digit");
        }
        auto vendor = body.text("vendor_id", false, 36, 36);
        if (vendor && !is_uuid(*vendor)) {
          body.error("vendor_id", "must be a UUID");
        }
        read_common(body, pb, f, true);
        const auto stock = pb.integer("initial_stock", false, 0, max_stock);
        const auto threshold = pb.integer("low_stock_threshold", false, 0, max_stock);
        if (!body.ok()) {
          respond(body.to_problem());
          return;
        }
        if (const auto owner = owner_of(*ctx)) {
          if (owner->empty()) {
            respond(problem{403, "forbidden", "Forbidden", "this vendor account is not linked to a vendor", {}});
            return;
          }
          if (vendor && *vendor != *owner) {
            respond(problem{403, "forbidden", "Forbidden", "a vendor creates products for its own vendor only", {}});
            return;
          }
          vendor = *owner;
        }
        f.vendor_id = vendor;
        with_db(pool, respond,
                [&workers, cache, respond, f = std::move(f), stock = stock.value_or(0),
                 threshold = threshold.value_or(10), meta = meta_of(*ctx)](pqxx::connection& conn) {
                  auto w = persistence::catalog_store::create_product(conn, f, stock, threshold, meta);
                  if (w.product) {
                    telemetry::log_info("product created", {{"product_id", w.product->id}, {"sku", w.product->sku}});
                  }
                  answer_write(workers, cache, respond, std::move(w), 201, true);
                });
      },
      role_route({"vendor"}, true));

  routes.add(
      verb::patch, "/api/v1/products/{id}",
      [&pool, &workers, cache](std::shared_ptr<request_context> ctx, responder respond) {
        const std::string id = *ctx->param("id");
        if (!is_uuid(id)) {
          respond(invalid_request("the product id is not a UUID", {{"/path/id", "must be a UUID"}}));
          return;
        }
        body_reader body(*ctx);
        body.allow_only({"name", "description", "category_id", "base_price", "current_price", "attributes", "images",
                         "weight", "dimensions"},
                        "cannot be changed (sku and vendor are fixed; stock changes through /inventory; "
                        "DELETE archives)");
        product_body pb(*ctx, body);
        product_fields f;
        read_common(body, pb, f, false);
        if (body.ok() && !f.name && !f.description && !f.category_id && !f.base_price && !f.current_price &&
            !f.weight && !f.dimensions && !f.attributes && !f.images) {
          body.error_at("", "names no field to change");
        }
        if (!body.ok()) {
          respond(body.to_problem());
          return;
        }
        with_db(pool, respond,
                [&workers, cache, respond, id, f = std::move(f), owner = owner_of(*ctx), pre = if_match_of(*ctx),
                 meta = meta_of(*ctx)](pqxx::connection& conn) {
                  auto w = persistence::catalog_store::update_product(conn, id, f, owner, pre, meta);
                  answer_write(workers, cache, respond, std::move(w), 200, false);
                });
      },
      role_route({"vendor"}, true));

  routes.add(
      verb::delete_, "/api/v1/products/{id}",
      [&pool, &workers, cache](std::shared_ptr<request_context> ctx, responder respond) {
        const std::string id = *ctx->param("id");
        if (!is_uuid(id)) {
          respond(invalid_request("the product id is not a UUID", {{"/path/id", "must be a UUID"}}));
          return;
        }
        with_db(pool, respond,
                [&workers, cache, respond, id, owner = owner_of(*ctx), pre = if_match_of(*ctx),
                 meta = meta_of(*ctx)](pqxx::connection& conn) {
                  auto w = persistence::catalog_store::archive_product(conn, id, owner, pre, meta);
                  answer_write(workers, cache, respond, std::move(w), 200, false);
                });
      },
      role_route({"vendor"}));
}

persistence::outbox_filter catalog_invalidation_filter() {
  return {{"product", "inventory"}, {"ProductCreated", "ProductUpdated", "ProductArchived", "StockChanged"}};
}

persistence::outbox_dispatcher::handler catalog_invalidation_handler(worker_pool& workers,
                                                                    std::shared_ptr<catalog_cache> cache) {
  return [&workers, cache](const std::vector<persistence::outbox_event>& events) {
    // Both kinds use the product id as the aggregate id; the filter may let through a product event
    // type of another kind, so check the pair.
    std::set<std::string> ids;
    for (const auto& e : events) {
      const bool product_event = e.aggregate_kind == "product" && e.event_type != "StockChanged";
      const bool stock_event = e.aggregate_kind == "inventory" && e.event_type == "StockChanged";
      if ((product_event || stock_event) && is_uuid(e.aggregate_id)) {
        ids.insert(e.aggregate_id);
      }
    }
    if (ids.empty() || !cache) {
      return;
    }
    // On the workers: invalidation talks to Redis, and this runs on the dispatcher thread. Refused
    // (queue full, stopping): throw, so the batch is delivered again instead of being marked.
    if (!workers.submit([cache, ids = std::move(ids)] {
          for (const auto& id : ids) {
            cache->invalidate_product(id);
          }
        })) {
      throw std::runtime_error("catalog cache invalidation could not be queued");
    }
  };
}

}  // namespace mercato::http
