#include "persistence/catalog_store.hpp"

#include <functional>
#include <map>

#include <pqxx/pqxx>

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

product_page catalog_store::list_products(pqxx::connection& conn, const product_filter& filter, product_sort sort,
                                          const std::optional<product_cursor>& after, int limit) {
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

  pqxx::nontransaction tx{conn};
  const auto rows = tx.exec_params(sql, pqxx::prepare::make_dynamic_params(ps.values()));
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

std::optional<product_view> catalog_store::find_product(pqxx::connection& conn, const std::string& id) {
  pqxx::nontransaction tx{conn};
  const auto rows =
      tx.exec_params(std::string("SELECT ") + product_columns + " FROM products p" + inventory_join +
                     " WHERE p.id = $1::uuid",
                     id);
  if (rows.empty()) {
    return std::nullopt;
  }
  return read_product(rows[0]);
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

}  // namespace mercato::persistence
