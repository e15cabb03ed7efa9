#include "http/routes/catalog_routes.hpp"

// Caching (issue 5, seed "Caching Strategy"): every read goes through the two-level catalog_cache.
//
//   GET /products/{id}   key product:{id}              value "p1 <version>\n<body>"
//   GET /categories      key category:root:children    value the body (the whole tree)
//   GET /products        key search:{sha256(canonical)} value the body (one page)
//
// The seed keys a category's children as category:{id}:children; the tree is the children of the
// virtual root, hence category:root:children (invalidate_categories drops every category:* key).
// The canonical listing query is a JSON array in a fixed order: a format tag, the normalised search
// terms (websearch_to_tsquery ignores case and runs of whitespace, so "Red  SHOES" and "red shoes"
// are one query), category, vendor, min and max price, in_stock, the effective sort, the page size
// and the decoded cursor (key, id); absent filters are null. Cached values are the exact bytes the
// uncached code answers, and the product's version travels with its body so the ETag, and a 304 for
// a matching If-None-Match, come from a cached entry as well.
//
// Not found is not cached: product ids are chosen by clients, so caching 404s would let anyone fill
// L1 (evicting real entries) and Redis with junk keys, and a product created after a cached 404 would
// stay invisible until the entry expired; a 404 costs one primary-key lookup.
//
// Threading: the handler runs on the Asio io thread and only peeks at L1 (no Redis, no I/O); a hit
// is answered at once. On a miss the read moves to a PostgreSQL pool thread (run_db), where
// get_or_load asks L2 (Redis; bounded by its command timeout, fail-fast while it is down) and then
// loads through that thread's connection. A PostgreSQL failure in the loader is the usual 503, and
// nothing is cached then.

#include <charconv>
#include <functional>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "http/codec.hpp"
#include "http/routes/db_call.hpp"
#include "http/routes/query_params.hpp"

namespace mercato::http {
namespace {

using persistence::product_sort;

// One cached read: what to load on a miss and how to answer from a value.
struct cached_read {
  std::string key;
  // On a pool thread: the value to cache, or nullopt when there is nothing (not cached).
  std::function<std::optional<std::string>(pqxx::connection&)> load;
  // The response for a value; nullopt when the value cannot be read (not a format this code writes).
  std::function<std::optional<response>(const std::string&)> answer;
  // The response when the loader found nothing.
  std::function<response()> absent;
};

// See the top of the file: peek on the io thread, get_or_load on a pool thread.
void serve(persistence::pg_pool& pool, const std::shared_ptr<catalog_cache>& cache, const responder& respond,
           std::shared_ptr<const cached_read> rd) {
  if (cache) {
    if (auto v = cache->peek(rd->key)) {
      if (auto r = rd->answer(*v)) {
        respond(std::move(*r));
        return;
      }
    }
  }
  run_db(pool, respond, [cache, rd](pqxx::connection& conn) -> response {
    catalog_cache::value_ptr v;
    if (cache) {
      v = cache->get_or_load(rd->key, [&] { return rd->load(conn); });
    } else if (auto loaded = rd->load(conn)) {
      v = std::make_shared<const std::string>(std::move(*loaded));
    }
    if (!v) {
      return rd->absent();
    }
    if (auto r = rd->answer(*v)) {
      return std::move(*r);
    }
    // An entry this code cannot read (another format in Redis): answer from PostgreSQL instead.
    auto fresh = rd->load(conn);
    if (!fresh) {
      return rd->absent();
    }
    if (auto r = rd->answer(*fresh)) {
      return std::move(*r);
    }
    return response::from(internal_error("the catalog entry could not be encoded"));
  });
}

// "p1 <version>\n<body>": the product's representation and the version its ETag comes from.
std::string encode_product_entry(std::int64_t version, const std::string& body) {
  return "p1 " + std::to_string(version) + "\n" + body;
}

std::optional<std::pair<std::int64_t, std::string_view>> decode_product_entry(std::string_view entry) {
  if (entry.substr(0, 3) != "p1 ") {
    return std::nullopt;
  }
  const auto nl = entry.find('\n');
  if (nl == std::string_view::npos) {
    return std::nullopt;
  }
  std::int64_t version = 0;
  const char* first = entry.data() + 3;
  const char* last = entry.data() + nl;
  auto [p, ec] = std::from_chars(first, last, version);
  if (ec != std::errc{} || p != last || first == last) {
    return std::nullopt;
  }
  return std::make_pair(version, entry.substr(nl + 1));
}

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

// The listing's cache key input: every parameter that shapes the page, in a fixed order (see the top).
std::string search_canonical(const persistence::product_filter& f, product_sort sort,
                             const std::optional<persistence::product_cursor>& after, int limit) {
  auto text = [](const std::optional<std::string>& v) { return v ? boost::json::value(*v) : boost::json::value(nullptr); };
  auto number = [](const std::optional<std::int64_t>& v) {
    return v ? boost::json::value(*v) : boost::json::value(nullptr);
  };
  const boost::json::array canonical{
      "products/1",
      f.query ? boost::json::value(catalog_cache::normalize_search_terms(*f.query)) : boost::json::value(nullptr),
      text(f.category_id),
      text(f.vendor_id),
      number(f.min_price),
      number(f.max_price),
      f.in_stock_only,
      sort_name(sort),
      limit,
      after ? boost::json::value(after->key) : boost::json::value(nullptr),
      after ? boost::json::value(after->id) : boost::json::value(nullptr)};
  return boost::json::serialize(canonical);
}

void list_products(persistence::pg_pool& pool, const std::shared_ptr<catalog_cache>& cache,
                   std::shared_ptr<request_context> ctx, responder respond) {
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
  auto rd = std::make_shared<cached_read>();
  rd->key = catalog_cache::search_key(search_canonical(filter, sort, after, limit));
  rd->load = [filter, sort, after, limit](pqxx::connection& conn) -> std::optional<std::string> {
    auto page = persistence::catalog_store::list_products(conn, filter, sort, after, limit);
    boost::json::array data;
    data.reserve(page.items.size());
    for (const auto& p : page.items) {
      data.push_back(product_json(p));
    }
    boost::json::object meta{{"next_cursor", page.next ? boost::json::value(encode_cursor(sort, *page.next))
                                                       : boost::json::value(nullptr)},
                             {"has_more", page.next.has_value()}};
    return boost::json::serialize(boost::json::object{{"data", std::move(data)}, {"meta", std::move(meta)}});
  };
  rd->answer = [](const std::string& body) -> std::optional<response> { return response::json_text(200, body); };
  rd->absent = [] { return response::from(internal_error("the product listing could not be read")); };
  serve(pool, cache, respond, std::move(rd));
}

void get_product(persistence::pg_pool& pool, const std::shared_ptr<catalog_cache>& cache,
                 std::shared_ptr<request_context> ctx, responder respond) {
  const std::string id = *ctx->param("id");
  if (!is_uuid(id)) {
    respond(invalid_request("the product id is not a UUID", {{"/path/id", "must be a UUID"}}));
    return;
  }
  const std::string if_none_match{ctx->header(bhttp::field::if_none_match)};
  auto rd = std::make_shared<cached_read>();
  rd->key = catalog_cache::product_key(id);
  rd->load = [id](pqxx::connection& conn) -> std::optional<std::string> {
    auto p = persistence::catalog_store::find_product(conn, id);
    if (!p || p->status != "active") {
      return std::nullopt;  // not cached: see the top of the file; archived products are gone for clients
    }
    return encode_product_entry(p->version, boost::json::serialize(product_json(*p)));
  };
  rd->answer = [if_none_match](const std::string& entry) -> std::optional<response> {
    const auto decoded = decode_product_entry(entry);
    if (!decoded) {
      return std::nullopt;
    }
    const auto etag = etag_for_version(decoded->first);
    if (!if_none_match.empty() && etag_matches(if_none_match, etag)) {
      return response::empty(304).with_header("ETag", etag);
    }
    return response::json_text(200, std::string(decoded->second)).with_header("ETag", etag);
  };
  rd->absent = [id] { return response::from(not_found("no product " + id)); };
  serve(pool, cache, respond, std::move(rd));
}

void list_categories(persistence::pg_pool& pool, const std::shared_ptr<catalog_cache>& cache,
                     std::shared_ptr<request_context>, responder respond) {
  auto rd = std::make_shared<cached_read>();
  rd->key = catalog_cache::category_children_key("root");
  rd->load = [](pqxx::connection& conn) -> std::optional<std::string> {
    boost::json::array tree;
    for (const auto& c : persistence::catalog_store::category_tree(conn)) {
      tree.push_back(category_json(c));
    }
    return boost::json::serialize(tree);
  };
  rd->answer = [](const std::string& body) -> std::optional<response> { return response::json_text(200, body); };
  rd->absent = [] { return response::from(internal_error("the category tree could not be read")); };
  serve(pool, cache, respond, std::move(rd));
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

void add_catalog_routes(router& routes, persistence::pg_pool& pool, std::shared_ptr<catalog_cache> cache) {
  routes.add(bhttp::verb::get, "/api/v1/products",
             [&pool, cache](auto ctx, responder r) { list_products(pool, cache, std::move(ctx), std::move(r)); });
  routes.add(bhttp::verb::get, "/api/v1/products/{id}",
             [&pool, cache](auto ctx, responder r) { get_product(pool, cache, std::move(ctx), std::move(r)); });
  routes.add(bhttp::verb::get, "/api/v1/categories",
             [&pool, cache](auto ctx, responder r) { list_categories(pool, cache, std::move(ctx), std::move(r)); });
}

}  // namespace mercato::http
