#include "persistence/catalog_store.hpp"

#include <functional>
#include <map>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <pqxx/pqxx>

#include "persistence/inventory_seed.hpp"

namespace mercato::persistence {
namespace {

constexpr const char* product_columns =
    "p.id::text, p.sku, p.name, p.description, p.category_id::text, p.vendor_id::text,"
    " (p.base_price * 100)::bigint, (p.current_price * 100)::bigint, p.currency,"
    // Stock comes from the committed inventory (the inventory entity's projection).
    " COALESCE(inv.on_hand, 0), COALESCE(inv.reserved, 0), COALESCE(inv.low_stock_threshold, p.low_stock_threshold),"
    " p.weight::text,"
    " p.dimensions::text, p.attributes::text, p.images::text, p.status, p.version,"
    " to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
    " to_char(p.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";
constexpr int product_column_count = 20;
// Joined wherever product_columns are read.
constexpr const char* inventory_join = " LEFT JOIN inventory inv ON inv.product_id = p.id";

template <class T>
std::optional<T> opt(const pqxx::field& f) {
  if (f.is_null()) {
    return std::nullopt;
  }
  return f.as<T>();
}

product_view read_product(const pqxx::row& r) {
  product_view p;
  p.id = r[0].as<std::string>();
  p.sku = r[1].as<std::string>();
  p.name = r[2].as<std::string>();
  p.description = opt<std::string>(r[3]);
  p.category_id = opt<std::string>(r[4]);
  p.vendor_id = opt<std::string>(r[5]);
  p.base_price = r[6].as<std::int64_t>();
  p.current_price = r[7].as<std::int64_t>();
  p.currency = r[8].as<std::string>();
  p.on_hand = r[9].as<std::int64_t>();
  p.reserved = r[10].as<std::int64_t>();
  p.low_stock_threshold = r[11].as<std::int64_t>();
  p.weight = opt<std::string>(r[12]);
  p.dimensions = opt<std::string>(r[13]);
  p.attributes = opt<std::string>(r[14]);
  p.images = opt<std::string>(r[15]);
  p.status = r[16].as<std::string>();
  p.version = r[17].as<std::int64_t>();
  p.created_at = r[18].as<std::string>();
  p.updated_at = r[19].as<std::string>();
  return p;
}

// Builds "$n" placeholders while collecting the values, so optional filters stay parameterised.
class params {
 public:
  std::string add(std::string v) {
    values_.push_back(std::move(v));
    return "$" + std::to_string(values_.size());
  }
  const std::vector<std::string>& values() const { return values_; }

 private:
  std::vector<std::string> values_;
};

std::string tsquery(params& ps, const std::string& q) {
  return "websearch_to_tsquery('english', " + ps.add(q) + ")";
}

}  // namespace

const char* product_view::stock_status() const {
  const auto avail = available();
  if (avail <= 0) {
    return "out_of_stock";
  }
  if (avail <= low_stock_threshold) {
    return "low_stock";
  }
  return "in_stock";
}

std::pair<std::string, std::vector<std::string>> catalog_store::listing_query(
    const product_filter& filter, product_sort sort, const std::optional<product_cursor>& after, int limit) {
  params ps;
  std::string with;
  std::vector<std::string> where{"p.status = 'active'"};
  const std::string doc = "to_tsvector('english', p.name || ' ' || COALESCE(p.description, ''))";
  std::string rank_expr = "0::real";

  if (filter.query) {
    const auto q = tsquery(ps, *filter.query);
    where.push_back(doc + " @@ " + q);
    rank_expr = "ts_rank(" + doc + ", " + q + ")";
  }
  if (filter.category_id) {
    with = "WITH RECURSIVE cat(id) AS (SELECT id FROM categories WHERE id = " + ps.add(*filter.category_id) +
           "::uuid UNION ALL SELECT c.id FROM categories c JOIN cat ON c.parent_id = cat.id) ";
    where.push_back("p.category_id IN (SELECT id FROM cat)");
  }
  if (filter.vendor_id) {
    where.push_back("p.vendor_id = " + ps.add(*filter.vendor_id) + "::uuid");
  }
  if (filter.min_price) {
    where.push_back("p.current_price >= " + ps.add(std::to_string(*filter.min_price)) + "::numeric / 100");
  }
  if (filter.max_price) {
    where.push_back("p.current_price <= " + ps.add(std::to_string(*filter.max_price)) + "::numeric / 100");
  }
  if (filter.in_stock_only) {
    where.push_back("EXISTS (SELECT 1 FROM inventory i WHERE i.product_id = p.id AND i.on_hand > i.reserved)");
  }

  // Keyset paging: the cursor holds the last row's sort key and id; rows strictly after it follow.
  std::string order;
  std::string key_expr;
  switch (sort) {
    case product_sort::newest:
      order = "p.created_at DESC, p.id DESC";
      key_expr = "to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";
      if (after) {
        where.push_back("(p.created_at, p.id) < (" + ps.add(after->key) + "::timestamptz, " + ps.add(after->id) +
                        "::uuid)");
      }
      break;
    case product_sort::name:
      order = "p.name ASC, p.id ASC";
      key_expr = "p.name";
      if (after) {
        where.push_back("(p.name, p.id) > (" + ps.add(after->key) + ", " + ps.add(after->id) + "::uuid)");
      }
      break;
    case product_sort::price_asc:
      order = "p.current_price ASC, p.id ASC";
      key_expr = "((p.current_price * 100)::bigint)::text";
      if (after) {
        where.push_back("(p.current_price, p.id) > (" + ps.add(after->key) + "::numeric / 100, " +
                        ps.add(after->id) + "::uuid)");
      }
      break;
    case product_sort::price_desc:
      order = "p.current_price DESC, p.id DESC";
      key_expr = "((p.current_price * 100)::bigint)::text";
      if (after) {
        where.push_back("(p.current_price, p.id) < (" + ps.add(after->key) + "::numeric / 100, " +
                        ps.add(after->id) + "::uuid)");
      }
      break;
    case product_sort::relevance:
      order = "rank DESC, p.id ASC";
      key_expr = "rank::text";
      if (after) {
        const auto k = ps.add(after->key);
        const auto i = ps.add(after->id);
        where.push_back("(" + rank_expr + " < " + k + "::real OR (" + rank_expr + " = " + k + "::real AND p.id > " +
                        i + "::uuid))");
      }
      break;
  }

  std::string sql = with + "SELECT " + product_columns + ", " + key_expr + " AS sort_key FROM (SELECT p.*, " +
                    rank_expr + " AS rank FROM products p) p" + inventory_join + " WHERE ";
  for (std::size_t i = 0; i < where.size(); ++i) {
    sql += (i == 0 ? "" : " AND ") + where[i];
  }
  sql += " ORDER BY " + order + " LIMIT " + std::to_string(limit + 1);
  return {std::move(sql), ps.values()};
}

product_page catalog_store::list_products(pqxx::connection& conn, const product_filter& filter, product_sort sort,
                                          const std::optional<product_cursor>& after, int limit) {
  const auto [sql, values] = listing_query(filter, sort, after, limit);
  pqxx::nontransaction tx{conn};
  const auto rows = tx.exec_params(sql, pqxx::prepare::make_dynamic_params(values));
  product_page page;
  const auto n = std::min<std::size_t>(rows.size(), static_cast<std::size_t>(limit));
  page.items.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    page.items.push_back(read_product(rows[static_cast<int>(i)]));
  }
  if (rows.size() > n && n > 0) {
    const auto& last = rows[static_cast<int>(n - 1)];
    page.next = product_cursor{last[product_column_count].as<std::string>(), last[0].as<std::string>()};
  }
  return page;
}

// Both product reads are named statements: add-to-cart reads a product every cart.product_info_ttl_ms, and a
// product's page on every cache miss. Planned each time, the join cost PostgreSQL ~0.45 ms of planning per
// read against ~0.12 ms of execution (pg_stat_statements, issue 14). libpqxx registers a statement with the
// server on its first use on each connection; declaring it again with the same text is a lookup.
std::optional<product_view> catalog_store::find_product(pqxx::connection& conn, const std::string& id) {
  static const std::string name = "mercato_product_by_id";
  static const std::string sql =
      std::string("SELECT ") + product_columns + " FROM products p" + inventory_join + " WHERE p.id = $1::uuid";
  conn.prepare(name, sql);
  pqxx::nontransaction tx{conn};
  const auto rows = tx.exec_prepared(name, id);
  if (rows.empty()) {
    return std::nullopt;
  }
  return read_product(rows[0]);
}

std::vector<product_view> catalog_store::find_products(pqxx::connection& conn, const std::vector<std::string>& ids) {
  std::vector<product_view> out;
  if (ids.empty()) {
    return out;
  }
  std::string list = "{";
  for (const auto& id : ids) {
    if (list.size() > 1) {
      list += ',';
    }
    list += id;  // UUIDs: the cast below refuses anything else
  }
  list += '}';
  static const std::string name = "mercato_products_by_ids";
  static const std::string sql = std::string("SELECT ") + product_columns + " FROM products p" + inventory_join +
                                 " WHERE p.id = ANY($1::uuid[])";
  conn.prepare(name, sql);
  pqxx::nontransaction tx{conn};
  const auto rows = tx.exec_prepared(name, list);
  out.reserve(rows.size());
  for (const auto& r : rows) {
    out.push_back(read_product(r));
  }
  return out;
}

std::vector<category_node> catalog_store::category_tree(pqxx::connection& conn) {
  pqxx::nontransaction tx{conn};
  const auto rows = tx.exec("SELECT id::text, name, parent_id::text FROM categories ORDER BY name, id");
  // Index the flat rows, then attach children to parents from the leaves up.
  std::map<std::string, category_node> by_id;
  std::vector<std::string> order;
  for (const auto& r : rows) {
    category_node n{r[0].as<std::string>(), r[1].as<std::string>(), opt<std::string>(r[2]), {}};
    order.push_back(n.id);
    by_id.emplace(n.id, std::move(n));
  }
  std::map<std::string, std::vector<std::string>> children;
  std::vector<std::string> roots;
  for (const auto& id : order) {
    const auto& n = by_id.at(id);
    if (n.parent_id && by_id.count(*n.parent_id) != 0) {
      children[*n.parent_id].push_back(id);
    } else {
      roots.push_back(id);
    }
  }
  std::function<category_node(const std::string&)> build = [&](const std::string& id) {
    category_node n = by_id.at(id);
    for (const auto& c : children[id]) {
      n.children.push_back(build(c));
    }
    return n;
  };
  std::vector<category_node> tree;
  for (const auto& r : roots) {
    tree.push_back(build(r));
  }
  return tree;
}

namespace {

constexpr const char* vendor_columns =
    "id::text, name, status, version,"
    " to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
    " to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";

vendor_view read_vendor(const pqxx::row& r) {
  return {r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::string>(), r[3].as<std::int64_t>(),
          r[4].as<std::string>(), r[5].as<std::string>()};
}

}  // namespace

std::pair<create_outcome, std::optional<category_node>> catalog_store::create_category(
    pqxx::connection& conn, const std::string& name, const std::optional<std::string>& parent_id) {
  pqxx::work tx{conn};
  if (parent_id && tx.exec_params("SELECT 1 FROM categories WHERE id = $1::uuid", *parent_id).empty()) {
    return {create_outcome::unknown_parent, std::nullopt};
  }
  const auto rows = tx.exec_params(
      "INSERT INTO categories (name, parent_id) VALUES ($1, $2::uuid)"
      " ON CONFLICT DO NOTHING RETURNING id::text, name, parent_id::text",
      name, parent_id);
  if (rows.empty()) {
    return {create_outcome::duplicate, std::nullopt};
  }
  tx.commit();
  return {create_outcome::created,
          category_node{rows[0][0].as<std::string>(), rows[0][1].as<std::string>(), opt<std::string>(rows[0][2]), {}}};
}

std::optional<vendor_view> catalog_store::create_vendor(pqxx::connection& conn, const std::string& name) {
  pqxx::work tx{conn};
  const auto rows = tx.exec_params(
      std::string("INSERT INTO vendors (name) VALUES ($1) ON CONFLICT DO NOTHING RETURNING ") + vendor_columns, name);
  if (rows.empty()) {
    return std::nullopt;
  }
  tx.commit();
  return read_vendor(rows[0]);
}

std::optional<vendor_view> catalog_store::find_vendor(pqxx::connection& conn, const std::string& id) {
  pqxx::nontransaction tx{conn};
  const auto rows =
      tx.exec_params(std::string("SELECT ") + vendor_columns + " FROM vendors WHERE id = $1::uuid", id);
  if (rows.empty()) {
    return std::nullopt;
  }
  return read_vendor(rows[0]);
}

// --- product writes ------------------------------------------------------------------------------

namespace {

std::optional<product_view> load_product(pqxx::transaction_base& tx, const std::string& id, bool lock) {
  const auto rows = tx.exec_params(std::string("SELECT ") + product_columns + " FROM products p" + inventory_join +
                                       " WHERE p.id = $1::uuid" + (lock ? " FOR UPDATE OF p" : ""),
                                   id);
  if (rows.empty()) {
    return std::nullopt;
  }
  return read_product(rows[0]);
}

boost::json::value json_or_null(const std::optional<std::string>& v) {
  if (!v) {
    return nullptr;
  }
  return boost::json::value(*v);
}

void append_event(pqxx::work& tx, const std::string& product_id, const char* type, boost::json::object data,
                  const change_meta& meta) {
  data["product_id"] = product_id;
  const boost::json::object metadata{{"correlation_id", meta.request_id},
                                     {"causation_id", meta.request_id},
                                     {"trace_id", meta.trace_id},
                                     {"user_id", meta.user_id},
                                     {"source", "http"}};
  tx.exec_params(
      "INSERT INTO outbox (id, aggregate_kind, aggregate_id, event_type, event_version, data, metadata)"
      " VALUES (gen_random_uuid(), 'product', $1, $2, '1', $3::json, $4::json)",
      product_id, std::string(type), boost::json::serialize(data), boost::json::serialize(metadata));
}

boost::json::object prices_json(std::int64_t base, std::int64_t current, const std::string& currency) {
  return {{"base_price", base}, {"current_price", current}, {"currency", currency}};
}

bool exists(pqxx::work& tx, const char* table, const std::string& id) {
  return !tx.exec_params(std::string("SELECT 1 FROM ") + table + " WHERE id = $1::uuid", id).empty();
}

std::optional<std::string> minor_to_decimal(const std::optional<std::int64_t>& v) {
  if (!v) {
    return std::nullopt;
  }
  return std::to_string(*v);
}

}  // namespace

product_write catalog_store::create_product(pqxx::connection& conn, const product_fields& f,
                                            std::int64_t initial_stock, std::int64_t low_stock_threshold,
                                            const change_meta& meta) {
  pqxx::work tx{conn};
  const auto category = f.category_id.value_or(std::nullopt);
  if (category && !exists(tx, "categories", *category)) {
    return {product_write_outcome::unknown_category, std::nullopt};
  }
  if (f.vendor_id && !exists(tx, "vendors", *f.vendor_id)) {
    return {product_write_outcome::unknown_vendor, std::nullopt};
  }
  const auto base = f.base_price.value_or(0);
  const auto current = f.current_price.value_or(base);
  if (base <= 0 || current <= 0) {
    return {product_write_outcome::price_out_of_range, std::nullopt};
  }
  // ON CONFLICT: a concurrent create of the same sku loses here instead of failing with an error.
  const auto rows = tx.exec_params(
      "INSERT INTO products (sku, name, description, category_id, vendor_id, base_price, current_price,"
      " stock_quantity, low_stock_threshold, weight, dimensions, attributes, images)"
      " VALUES ($1, $2, $3, $4::uuid, $5::uuid, $6::numeric / 100, $7::numeric / 100, 0, $8, $9::numeric,"
      " $10::jsonb, $11::jsonb, $12::jsonb)"
      " ON CONFLICT (sku) DO NOTHING RETURNING id::text",
      *f.sku, *f.name, f.description.value_or(std::nullopt), category, f.vendor_id, std::to_string(base),
      std::to_string(current), low_stock_threshold, f.weight.value_or(std::nullopt),
      f.dimensions.value_or(std::nullopt), f.attributes.value_or(std::nullopt), f.images.value_or(std::nullopt));
  if (rows.empty()) {
    return {product_write_outcome::duplicate_sku, std::nullopt};
  }
  const auto id = rows[0][0].as<std::string>();
  seed_inventory(tx, id, initial_stock, low_stock_threshold);
  auto p = load_product(tx, id, false);
  append_event(tx, id, "ProductCreated",
               {{"version", p->version},
                {"sku", p->sku},
                {"name", p->name},
                {"category_id", json_or_null(p->category_id)},
                {"vendor_id", json_or_null(p->vendor_id)},
                {"prices", prices_json(p->base_price, p->current_price, p->currency)},
                {"stock", initial_stock}},
               meta);
  tx.commit();
  return {product_write_outcome::done, std::move(p)};
}

product_write catalog_store::update_product(pqxx::connection& conn, const std::string& id,
                                            const product_fields& c, const std::optional<std::string>& owner_vendor,
                                            const version_precondition& precondition, const change_meta& meta) {
  pqxx::work tx{conn};
  auto before = load_product(tx, id, true);
  if (!before || before->status != "active" || (owner_vendor && before->vendor_id != owner_vendor)) {
    return {product_write_outcome::not_found, std::nullopt};
  }
  if (precondition && !precondition(before->version)) {
    return {product_write_outcome::stale, std::nullopt};
  }
  if (c.category_id && *c.category_id && !exists(tx, "categories", **c.category_id)) {
    return {product_write_outcome::unknown_category, std::nullopt};
  }
  const auto base = c.base_price.value_or(before->base_price);
  const auto current = c.current_price.value_or(before->current_price);
  if (base <= 0 || current <= 0) {
    return {product_write_outcome::price_out_of_range, std::nullopt};
  }
  boost::json::array changed;
  auto pick = [&changed](const char* name, const auto& change, const auto& old) {
    if (change) {
      changed.emplace_back(name);
      return *change;
    }
    return old;
  };
  const auto name = pick("name", c.name, before->name);
  const auto description = pick("description", c.description, before->description);
  const auto category = pick("category_id", c.category_id, before->category_id);
  const auto base_price = pick("base_price", minor_to_decimal(c.base_price), std::to_string(before->base_price));
  const auto current_price =
      pick("current_price", minor_to_decimal(c.current_price), std::to_string(before->current_price));
  const auto weight = pick("weight", c.weight, before->weight);
  const auto dimensions = pick("dimensions", c.dimensions, before->dimensions);
  const auto attributes = pick("attributes", c.attributes, before->attributes);
  const auto images = pick("images", c.images, before->images);
  tx.exec_params(
      "UPDATE products SET name = $2, description = $3, category_id = $4::uuid, base_price = $5::numeric / 100,"
      " current_price = $6::numeric / 100, weight = $7::numeric, dimensions = $8::jsonb, attributes = $9::jsonb,"
      " images = $10::jsonb, version = version + 1, updated_at = NOW() WHERE id = $1::uuid",
      id, name, description, category, base_price, current_price, weight, dimensions, attributes, images);
  auto after = load_product(tx, id, false);
  const bool price_changed = after->base_price != before->base_price || after->current_price != before->current_price;
  append_event(tx, id, "ProductUpdated",
               {{"version", after->version},
                {"changed", std::move(changed)},
                {"price_changed", price_changed},
                {"old_prices", prices_json(before->base_price, before->current_price, before->currency)},
                {"new_prices", prices_json(after->base_price, after->current_price, after->currency)}},
               meta);
  tx.commit();
  return {product_write_outcome::done, std::move(after)};
}

product_write catalog_store::archive_product(pqxx::connection& conn, const std::string& id,
                                             const std::optional<std::string>& owner_vendor,
                                             const version_precondition& precondition, const change_meta& meta) {
  pqxx::work tx{conn};
  auto before = load_product(tx, id, true);
  if (!before || before->status != "active" || (owner_vendor && before->vendor_id != owner_vendor)) {
    return {product_write_outcome::not_found, std::nullopt};
  }
  if (precondition && !precondition(before->version)) {
    return {product_write_outcome::stale, std::nullopt};
  }
  tx.exec_params(
      "UPDATE products SET status = 'archived', version = version + 1, updated_at = NOW() WHERE id = $1::uuid", id);
  auto after = load_product(tx, id, false);
  append_event(tx, id, "ProductArchived", {{"version", after->version}, {"sku", after->sku}}, meta);
  tx.commit();
  return {product_write_outcome::done, std::move(after)};
}

}  // namespace mercato::persistence
