#include "http/routes/catalog_routes.hpp"

#include <charconv>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>

#include "http/codec.hpp"
#include "http/routes/db_call.hpp"
#include "http/routes/query_params.hpp"

namespace mercato::http {
namespace {

using persistence::product_sort;

boost::json::value money(std::int64_t amount, const std::string& currency) {
  return boost::json::object{{"amount", amount}, {"currency", currency}};
}

boost::json::value json_or_null(const std::optional<std::string>& text) {
  if (!text) {
    return nullptr;
  }
  boost::system::error_code ec;
  auto v = boost::json::parse(*text, ec);
  return ec ? boost::json::value(nullptr) : v;
}

template <class T>
boost::json::value or_null(const std::optional<T>& v) {
  return v ? boost::json::value(*v) : boost::json::value(nullptr);
}

boost::json::value category_json(const persistence::category_node& c) {
  boost::json::array children;
  children.reserve(c.children.size());
  for (const auto& child : c.children) {
    children.push_back(category_json(child));
  }
  return boost::json::object{
      {"id", c.id}, {"name", c.name}, {"parent_id", or_null(c.parent_id)}, {"children", std::move(children)}};
}

std::optional<product_sort> parse_sort(std::string_view s) {
  if (s == "-created_at") return product_sort::newest;
  if (s == "name") return product_sort::name;
  if (s == "price") return product_sort::price_asc;
  if (s == "-price") return product_sort::price_desc;
  if (s == "relevance") return product_sort::relevance;
  return std::nullopt;
}

const char* sort_name(product_sort s) {
  switch (s) {
    case product_sort::newest: return "-created_at";
    case product_sort::name: return "name";
    case product_sort::price_asc: return "price";
    case product_sort::price_desc: return "-price";
    case product_sort::relevance: return "relevance";
  }
  return "-created_at";
}

// A cursor is opaque to clients: base64url("p1|<sort>|<key>|<id>"). It is bound to the sort it was
// made for, so a cursor reused with another sort is rejected rather than silently skipping rows.
std::string encode_cursor(product_sort sort, const persistence::product_cursor& c) {
  return base64url_encode(std::string("p1|") + sort_name(sort) + "|" + c.key + "|" + c.id);
}

std::optional<persistence::product_cursor> decode_cursor(std::string_view text, product_sort sort) {
  auto raw = base64url_decode(text);
  if (!raw) {
    return std::nullopt;
  }
  const std::string prefix = std::string("p1|") + sort_name(sort) + "|";
  if (raw->rfind(prefix, 0) != 0) {
    return std::nullopt;
  }
  const auto rest = std::string_view(*raw).substr(prefix.size());
  const auto bar = rest.rfind('|');
  if (bar == std::string_view::npos) {
    return std::nullopt;
  }
  persistence::product_cursor c{std::string(rest.substr(0, bar)), std::string(rest.substr(bar + 1))};
  if (!is_uuid(c.id)) {
    return std::nullopt;
  }
  // The key must parse as what the sort compares, or PostgreSQL would reject it later.
  if (sort == product_sort::price_asc || sort == product_sort::price_desc) {
    std::int64_t v = 0;
    auto [p, ec] = std::from_chars(c.key.data(), c.key.data() + c.key.size(), v);
    if (ec != std::errc{} || p != c.key.data() + c.key.size()) {
      return std::nullopt;
    }
  } else if (sort == product_sort::relevance) {
    char* end = nullptr;
    std::strtod(c.key.c_str(), &end);
    if (c.key.empty() || end != c.key.c_str() + c.key.size()) {
      return std::nullopt;
    }
  } else if (sort == product_sort::newest) {
    // 2026-11-25T20:17:25.123456Z
    if (c.key.size() != 27 || c.key[4] != '-' || c.key[10] != 'T' || c.key[26] != 'Z') {
      return std::nullopt;
    }
  }
  return c;
}

void list_products(persistence::pg_pool& pool, std::shared_ptr<request_context> ctx, responder respond) {
  query_reader q{*ctx};
  const int limit = static_cast<int>(q.integer("limit", 20, 1, 100));
  auto filter = persistence::product_filter{};
  filter.query = q.text("q", 1, 200);
  filter.category_id = q.uuid("category");
  filter.vendor_id = q.uuid("vendor");
  filter.min_price = q.optional_integer("min_price", 0, 1'000'000'000'000);
  filter.max_price = q.optional_integer("max_price", 0, 1'000'000'000'000);
  filter.in_stock_only = q.boolean("in_stock", false);
  product_sort sort = filter.query ? product_sort::relevance : product_sort::newest;
  if (auto s = q.text("sort", 1, 20)) {
    if (auto parsed = parse_sort(*s)) {
      sort = *parsed;
      if (sort == product_sort::relevance && !filter.query) {
        q.fail("sort", "relevance needs a search query q");
      }
    } else {
      q.fail("sort", "must be one of relevance, price, -price, name, -created_at");
    }
  }
  std::optional<persistence::product_cursor> after;
  if (auto c = q.text("cursor", 1, 4096)) {
    after = decode_cursor(*c, sort);
    if (!after) {
      q.fail("cursor", "is not a cursor returned by this listing with the same sort");
    }
  }
  if (!q.ok()) {
    respond(q.to_problem());
    return;
  }
  run_db(pool, respond, [filter, sort, after, limit](pqxx::connection& conn) {
    auto page = persistence::catalog_store::list_products(conn, filter, sort, after, limit);
    boost::json::array data;
    data.reserve(page.items.size());
    for (const auto& p : page.items) {
      data.push_back(product_json(p));
    }
    boost::json::object meta{{"next_cursor", page.next ? boost::json::value(encode_cursor(sort, *page.next))
                                                       : boost::json::value(nullptr)},
                             {"has_more", page.next.has_value()}};
    return response::json(200, boost::json::object{{"data", std::move(data)}, {"meta", std::move(meta)}});
  });
}

void get_product(persistence::pg_pool& pool, std::shared_ptr<request_context> ctx, responder respond) {
  const std::string id = *ctx->param("id");
  if (!is_uuid(id)) {
    respond(invalid_request("the product id is not a UUID", {{"/path/id", "must be a UUID"}}));
    return;
  }
  const std::string if_none_match{ctx->header(bhttp::field::if_none_match)};
  run_db(pool, respond, [id, if_none_match](pqxx::connection& conn) {
    auto p = persistence::catalog_store::find_product(conn, id);
    if (!p) {
      return response::from(not_found("no product " + id));
    }
    const auto etag = etag_for_version(p->version);
    if (!if_none_match.empty() && etag_matches(if_none_match, etag)) {
      return response::empty(304).with_header("ETag", etag);
    }
    return response::json(200, product_json(*p)).with_header("ETag", etag);
  });
}

void list_categories(persistence::pg_pool& pool, std::shared_ptr<request_context>, responder respond) {
  run_db(pool, respond, [](pqxx::connection& conn) {
    boost::json::array tree;
    for (const auto& c : persistence::catalog_store::category_tree(conn)) {
      tree.push_back(category_json(c));
    }
    return response::json(200, tree);
  });
}

}  // namespace

boost::json::object product_json(const persistence::product_view& p) {
  return boost::json::object{
      {"id", p.id},
      {"sku", p.sku},
      {"name", p.name},
      {"description", or_null(p.description)},
      {"category_id", or_null(p.category_id)},
      {"vendor_id", or_null(p.vendor_id)},
      {"base_price", money(p.base_price, p.currency)},
      {"current_price", money(p.current_price, p.currency)},
      {"stock", boost::json::object{{"available", p.available()}, {"status", p.stock_status()}}},
      {"attributes", json_or_null(p.attributes)},
      {"images", json_or_null(p.images)},
      {"weight", json_or_null(p.weight)},
      {"dimensions", json_or_null(p.dimensions)},
      {"status", p.status},
      {"version", p.version},
      {"created_at", p.created_at},
      {"updated_at", p.updated_at},
  };
}

void add_catalog_routes(router& routes, persistence::pg_pool& pool) {
  routes.add(bhttp::verb::get, "/api/v1/products",
             [&pool](auto ctx, responder r) { list_products(pool, std::move(ctx), std::move(r)); });
  routes.add(bhttp::verb::get, "/api/v1/products/{id}",
             [&pool](auto ctx, responder r) { get_product(pool, std::move(ctx), std::move(r)); });
  routes.add(bhttp::verb::get, "/api/v1/categories",
             [&pool](auto ctx, responder r) { list_categories(pool, std::move(ctx), std::move(r)); });
}

}  // namespace mercato::http
